//! Issue 18's auth matrix: one request of every route family (each documented REST route, every
//! server function, the pages, `/outputs`, `/metrics`, `/pkg`, the A1111 API and the ComfyUI API on
//! its own listener) x {no credentials, a wrong token, the right bearer token, the right cookie} x
//! {the loopback no-token mode, the token mode}. With a token only `/api/v1/health` answers
//! without it; without one nothing asks for credentials. Bodies are empty or invalid, so a request
//! that gets through answers with its own status (a 4xx or 200), never 401.
#![cfg(feature = "ssr")]

mod common;

use common::{models_dir, settings, start_with, temp_dir};
use reqwest::Method;
use serde_json::{json, Value};

const TOKEN: &str = "m4trix-s3cret";

/// Every server function of the UI (`app/rpc.rs`).
const SERVER_FUNCTIONS: [&str; 17] = [
    "submit",
    "history",
    "active_jobs",
    "cancel",
    "delete_image",
    "models",
    "prompt_tokens",
    "embeddings",
    "set_model_vae",
    "weight_files",
    "merge_checkpoints",
    "model_aliases",
    "pull_model",
    "cancel_pull",
    "model_pulls",
    "set_default_model",
    "delete_model",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Credential {
    None,
    Wrong,
    Bearer,
    Cookie,
}

/// One request of every route family on the main listener, the REST routes read from the OpenAPI
/// document (path parameters filled with a name that exists nowhere).
fn main_routes(openapi: &Value) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for (path, methods) in openapi["paths"].as_object().unwrap() {
        let path = path.split('/').map(|part| if part.starts_with('{') { "nope" } else { part }).collect::<Vec<_>>().join("/");
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, format!("/api/v1{path}")));
        }
    }
    assert!(routes.len() >= 15, "the OpenAPI document lists {} routes", routes.len());
    routes.extend(SERVER_FUNCTIONS.iter().map(|f| (Method::POST, format!("/api/ui/{f}"))));
    for path in ["/", "/gallery", "/models", "/outputs/nope.png", "/metrics", "/pkg/easel.js", "/favicon.svg"] {
        routes.push((Method::GET, path.to_string()));
    }
    for path in ["/sdapi/v1/options", "/sdapi/v1/samplers", "/sdapi/v1/sd-models", "/sdapi/v1/progress", "/sdapi/v1/cmd-flags"] {
        routes.push((Method::GET, path.to_string()));
    }
    for path in ["/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/png-info", "/sdapi/v1/interrupt"] {
        routes.push((Method::POST, path.to_string()));
    }
    routes
}

/// ComfyUI's routes on its listener.
fn comfyui_routes() -> Vec<(Method, String)> {
    let gets = ["/object_info", "/queue", "/history", "/system_stats", "/embeddings", "/prompt", "/view?filename=nope.png", "/ws"];
    let mut routes: Vec<(Method, String)> = gets.iter().map(|p| (Method::GET, p.to_string())).collect();
    for path in ["/prompt", "/interrupt", "/free", "/queue", "/history", "/upload/image", "/upload/mask"] {
        routes.push((Method::POST, path.to_string()));
    }
    routes
}

async fn send(client: &reqwest::Client, base: &str, (method, path): &(Method, String), credential: Credential) -> reqwest::Response {
    let mut request = client.request(method.clone(), format!("{base}{path}"));
    if *method != Method::GET && *method != Method::DELETE {
        // A body every route refuses or ignores: nothing runs.
        request = request.json(&json!({"prompt": {}}));
    }
    request = match credential {
        Credential::None => request,
        Credential::Wrong => request.bearer_auth("not-the-token"),
        Credential::Bearer => request.bearer_auth(TOKEN),
        Credential::Cookie => request.header("cookie", format!("easel_token={TOKEN}")),
    };
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_asks_for_the_token_exactly_when_one_is_configured() {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut checked = 0;
    for token_mode in [false, true] {
        let mut s = settings(models_dir(), temp_dir(if token_mode { "auth-matrix-token" } else { "auth-matrix-open" }));
        s.api_token = token_mode.then(|| TOKEN.to_string());
        let server = start_with(s).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let comfy_addr = listener.local_addr().unwrap();
        let comfy = easel::server::comfyui_app(server.state.clone());
        tokio::spawn(async move { axum::serve(listener, comfy.into_make_service()).await });

        let openapi: Value = client.get(server.url("/api/v1/openapi.json")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        let main = server.url("");
        let comfy_base = format!("http://{comfy_addr}");
        let families = [(main.as_str(), main_routes(&openapi)), (comfy_base.as_str(), comfyui_routes())];
        for (base, routes) in &families {
            for route in routes {
                for credential in [Credential::None, Credential::Wrong, Credential::Bearer, Credential::Cookie] {
                    let resp = send(&client, base, route, credential).await;
                    let status = resp.status().as_u16();
                    let public = route.1 == "/api/v1/health";
                    let refused = token_mode && !public && matches!(credential, Credential::None | Credential::Wrong);
                    let what = format!("{} {}{} with {credential:?}, token mode {token_mode}", route.0, base, route.1);
                    if refused {
                        assert_eq!(status, 401, "{what}");
                        assert!(resp.headers().contains_key("www-authenticate"), "{what}: no challenge");
                    } else {
                        assert_ne!(status, 401, "{what}");
                        assert!(status < 500 || route.1.starts_with("/api/ui/"), "{what}: {status}");
                    }
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} requests checked");
    assert!(checked >= 400, "only {checked} requests");
}
