//! The OpenAPI document matches the running server: every documented path answers (no 404 from
//! routing), and the documented request schema lists exactly the fields the parser accepts.
#![cfg(feature = "ssr")]

mod common;

use common::{models_dir, start, temp_dir};

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_path_is_served() {
    let server = start(models_dir(), temp_dir("openapi")).await;
    let client = reqwest::Client::new();
    let doc: serde_json::Value = client.get(server.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = server
                .url(&path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("{path}", "none.png").replace("{name}", "none"));
            let resp = client.request(method.to_uppercase().parse().unwrap(), &url).send().await.unwrap();
            let body = resp.text().await.unwrap_or_default();
            // A documented 404 (unknown id/file) is fine; a routing 404 says "no API endpoint".
            assert!(!body.contains("no API endpoint"), "{method} {path}: {body}");
        }
    }
    let mut documented: Vec<&str> =
        doc["components"]["schemas"]["GenerateRequest"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut accepted = easel::api::request::REQUEST_FIELDS.to_vec();
    documented.sort();
    accepted.sort();
    assert_eq!(documented, accepted);
}

/// `docs/openapi.json` is the served document, kept in the repository for readers without a
/// running server. `EASEL_UPDATE_DOCS=1 cargo test --features ssr --test openapi` rewrites it.
#[test]
fn the_committed_openapi_file_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let current = serde_json::to_string_pretty(&easel::server::openapi_document()).unwrap() + "\n";
    if std::env::var_os("EASEL_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == current, "docs/openapi.json is stale: run EASEL_UPDATE_DOCS=1 cargo test --features ssr --test openapi");
}
