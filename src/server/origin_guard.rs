//! Owns which browser requests the server trusts, against cross-site request forgery and DNS
//! rebinding (a loopback server without a token is otherwise open to any web page the user visits):
//!
//! - **Host**: a request must name this server: an IP address (a rebinding attack needs a name the
//!   attacker controls), `localhost` (or a name under `.localhost`), or a name given with
//!   `--allowed-hosts` / `EASEL_ALLOWED_HOSTS` / `allowed_hosts` (a reverse proxy's name). Else 421.
//! - **Where a state-changing request comes from** (POST, PUT, PATCH, DELETE): a browser says it in
//!   `Sec-Fetch-Site` (only `same-origin` and `none`, a typed URL, pass) or, in older browsers,
//!   `Origin`, which must be this server's own. Else 403. Clients that are not browsers (curl,
//!   Python, other servers) send neither and pass: they are not forged by a web page.
//! - **Server functions** (`/api/ui/*`) take JSON only (415 otherwise): a page on another site can
//!   POST `text/plain` or a form without asking, but not `application/json`.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Where the UI's server functions live (their JSON-only rule).
const SERVER_FN_PREFIX: &str = "/api/ui/";

/// The host name of a `Host` header value (`name`, `name:port`, `[v6]:port`), lower-cased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(name, _)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a `Host` value names this server (see the module doc).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    !name.is_empty()
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || allowed.iter().any(|a| host_name(a) == name))
}

/// Why a state-changing request is refused as cross-site, if it is.
pub fn cross_site(method: &Method, host: Option<&str>, fetch_site: Option<&str>, origin: Option<&str>) -> Option<String> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return None;
    }
    if let Some(site) = fetch_site {
        return (!matches!(site.trim(), "same-origin" | "none")).then(|| format!("Sec-Fetch-Site is {site:?}"));
    }
    let origin = origin?;
    // `scheme://host[:port]`: this server's own origin names the same host and port as `Host`.
    let own = host.map(|h| h.trim().to_ascii_lowercase());
    let theirs = origin.trim().split_once("://").map(|(_, rest)| rest.trim_end_matches('/').to_ascii_lowercase());
    match (own, theirs) {
        (Some(own), Some(theirs)) if own == theirs => None,
        _ => Some(format!("Origin {origin:?} is not this server")),
    }
}

/// Whether a content type is JSON (`application/json`, with or without parameters).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.and_then(|c| c.split(';').next()).is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"))
}

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match refusal(&request, &state.easel.settings().allowed_hosts) {
        Some(refused) => refused.into_response(),
        None => next.run(request).await,
    }
}

/// The error a request gets, if it is refused (see the module doc).
fn refusal(request: &Request, allowed: &[String]) -> Option<ApiError> {
    let text = |name: header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).map(str::to_string).or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = host.as_deref().filter(|h| !host_allowed(h, allowed)) {
        let message = format!(
            "Host {host:?} is not this server; open it as localhost or by IP address, or start Easel with --allowed-hosts {}",
            host_name(host)
        );
        return Some(ApiError::new(StatusCode::MISDIRECTED_REQUEST, message));
    }
    let fetch_site = text(header::HeaderName::from_static("sec-fetch-site"));
    if let Some(why) = cross_site(request.method(), host.as_deref(), fetch_site, text(header::ORIGIN)) {
        let message = format!("cross-site {} refused ({why}): only pages of this server may change it", request.method());
        return Some(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    if request.method() == Method::POST && request.uri().path().starts_with(SERVER_FN_PREFIX) && !is_json(text(header::CONTENT_TYPE)) {
        return Some(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "server functions take application/json only"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_address_localhost_or_allowed_name_only() {
        let allowed = vec!["easel.lan".to_string()];
        for ok in ["127.0.0.1:3000", "localhost:3000", "LOCALHOST", "[::1]:3000", "192.168.1.20:3000", "app.localhost", "easel.lan:443"] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in ["evil.example:3000", "localhost.evil.example", "127.0.0.1.evil.example", "", "easel.lan.evil.example"] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn only_state_changes_from_other_sites_are_refused() {
        let host = Some("127.0.0.1:3000");
        assert!(cross_site(&Method::GET, host, Some("cross-site"), Some("https://evil.example")).is_none());
        assert!(cross_site(&Method::POST, host, Some("cross-site"), None).is_some());
        assert!(cross_site(&Method::DELETE, host, Some("same-site"), None).is_some());
        assert!(cross_site(&Method::POST, host, Some("same-origin"), Some("http://127.0.0.1:3000")).is_none());
        assert!(cross_site(&Method::POST, host, None, Some("http://127.0.0.1:3000")).is_none());
        assert!(cross_site(&Method::POST, host, None, Some("http://127.0.0.1:8080")).is_some());
        assert!(cross_site(&Method::PUT, host, None, Some("null")).is_some());
        assert!(cross_site(&Method::POST, host, None, None).is_none(), "curl and scripts send neither header");
        assert!(is_json(Some("application/json; charset=utf-8")) && !is_json(Some("text/plain")) && !is_json(None));
    }
}
