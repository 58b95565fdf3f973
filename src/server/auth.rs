//! Optional bearer-token authentication. With `EASEL_API_TOKEN` set, every request except the
//! health check must carry `Authorization: Bearer <token>`, HTTP Basic credentials with the token
//! as password (what A1111 clients send for `--api-auth`), or the `easel_token` cookie. A browser
//! gets the cookie by opening any page once with `?token=<token>`. Without a token configured
//! (the loopback default) this layer lets everything through.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

const COOKIE: &str = "easel_token";

/// Compares in time independent of where the strings first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The password of HTTP Basic credentials (`user:password`, any user): how A1111 clients, made
/// for A1111's `--api-auth`, send a secret.
fn basic_password(value: &str) -> Option<String> {
    let decoded = crate::jobs::base64::base64_decode(value.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_string())
}

fn presented(request: &Request) -> (Option<String>, bool) {
    let headers = request.headers();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(bearer) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return (Some(bearer.trim().to_string()), false);
    }
    if let Some(password) = authorization.and_then(|v| v.strip_prefix("Basic ")).and_then(basic_password) {
        return (Some(password), false);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string));
    if cookie.is_some() {
        return (cookie, false);
    }
    let query = request.uri().query().unwrap_or("");
    let from_query = query.split('&').find_map(|p| p.strip_prefix("token=")).map(str::to_string);
    let set_cookie = from_query.is_some();
    (from_query, set_cookie)
}

/// `uri`'s path and query without its `token` parameter.
fn without_token(uri: &axum::http::Uri) -> String {
    let rest: Vec<&str> = uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("token=")).collect();
    if rest.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

/// Undoes `%XX` escapes (as a browser writes them in a URL); anything malformed stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.easel.settings().api_token.clone() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/api/v1/health" {
        return next.run(request).await;
    }
    match presented(&request) {
        // Query and cookie values arrive percent-encoded (a header value is taken as it is, and
        // has no `%` escapes to undo unless the token itself holds one).
        (Some(token), set_cookie) if same(&token, &expected) || same(&percent_decode(&token), &expected) => {
            let mut response = if set_cookie && request.method() == axum::http::Method::GET {
                // The token leaves the URL (history, logs, bookmarks): the cookie carries it now.
                let location = HeaderValue::from_str(&without_token(request.uri())).unwrap_or(HeaderValue::from_static("/"));
                (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
            } else {
                next.run(request).await
            };
            if set_cookie {
                let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        _ => {
            // A1111 clients are told in A1111's shape, and asked for Basic credentials.
            if request.uri().path().starts_with(super::a1111::PREFIX) {
                let body = serde_json::json!({"error": "HTTPException", "detail": "Incorrect username or password", "body": "", "errors": "401: Incorrect username or password"});
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                return response;
            }
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server requires a token: send Authorization: Bearer <EASEL_API_TOKEN> (or Basic credentials with the token as password), or open the UI once with ?token=<EASEL_API_TOKEN>",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_url_and_the_rest_kept() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(without_token(&uri("/?token=abc")), "/");
        assert_eq!(without_token(&uri("/gallery?x=1&token=abc&y=2")), "/gallery?x=1&y=2");
    }

    #[test]
    fn basic_credentials_give_their_password() {
        assert_eq!(basic_password("dXNlcjpzM2NyZXQ=").as_deref(), Some("s3cret")); // user:s3cret
        assert_eq!(basic_password("OnMzY3JldA==").as_deref(), Some("s3cret")); // :s3cret
        assert_eq!(basic_password("bm9jb2xvbg=="), None); // nocolon
        assert_eq!(basic_password("!!"), None);
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%3D%3D"), "a/b==");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
