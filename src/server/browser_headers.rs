//! Owns the response headers every answer carries for browsers: no `Referer` leaves the app (URLs
//! may carry image ids), no other site may frame it (clickjacking), no response is content-sniffed
//! into a script, and a Content-Security-Policy the hydrated app satisfies (it sets no limits on
//! the app's own scripts and styles, only on framing, plugins and `<base>`).

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

const HEADERS: [(HeaderName, &str); 4] = [
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"),
];

pub async fn add(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in HEADERS {
        response.headers_mut().entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}
