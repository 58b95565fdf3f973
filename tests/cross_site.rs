//! A web page on another site, or a DNS-rebinding name, cannot change anything on a loopback
//! server without a token (`server::origin_guard`), while browsers on the server's own pages and
//! clients that are not browsers (curl, scripts) work as before.
#![cfg(feature = "ssr")]

mod common;

use common::{models_dir, settings, start_with, temp_dir};
use reqwest::header::{CONTENT_TYPE, HOST, ORIGIN};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_writes_and_foreign_hosts_are_refused() {
    let data = temp_dir("cross-site");
    let mut s = settings(models_dir(), data.clone());
    s.allowed_hosts = vec!["easel.lan".into()];
    let server = start_with(s).await;
    let client = reqwest::Client::new();
    let job = json!({"prompt": "x", "seed": 1, "width": 64, "height": 64, "steps": 1});
    let generate = || client.post(server.url("/api/v1/generate")).json(&job);

    // A page elsewhere: its fetch says so in Sec-Fetch-Site or Origin.
    for (header, value) in [("sec-fetch-site", "cross-site"), ("sec-fetch-site", "same-site"), ("origin", "https://evil.example")] {
        let resp = generate().header(header, value).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{header}: {value}");
        assert!(resp.text().await.unwrap().contains("cross-site"));
    }
    let delete = client.delete(server.url("/api/v1/models/tiny-sd")).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(delete.status(), 403);
    // The A1111 API's writes too: a page elsewhere cannot queue work or change its options.
    for path in ["/sdapi/v1/txt2img", "/sdapi/v1/options", "/sdapi/v1/interrupt"] {
        let resp = client.post(server.url(path)).header(ORIGIN, "https://evil.example").json(&json!({"prompt": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
    let rebound = client.get(server.url("/sdapi/v1/options")).header(HOST, "evil.example:3000").send().await.unwrap();
    assert_eq!(rebound.status(), 421, "a rebound name reads no A1111 options");
    // A form or text/plain POST to a server function (no preflight needed) is refused outright.
    let plain = client.post(server.url("/api/ui/cancel")).header(CONTENT_TYPE, "text/plain").body(r#"{"id":"x"}"#).send().await.unwrap();
    assert_eq!(plain.status(), 415);
    // A name the attacker controls, resolving to 127.0.0.1 (DNS rebinding).
    let rebound = client.get(server.url("/")).header(HOST, "evil.example:3000").send().await.unwrap();
    assert_eq!(rebound.status(), 421);
    assert!(rebound.text().await.unwrap().contains("--allowed-hosts"));

    // The server's own pages, configured names and non-browser clients pass.
    let own = format!("http://{}", server.addr);
    assert_eq!(generate().header(ORIGIN, &own).header("sec-fetch-site", "same-origin").send().await.unwrap().status(), 202);
    assert_eq!(generate().send().await.unwrap().status(), 202, "curl and scripts send neither header");
    for host in ["localhost:3000", "easel.lan", "127.0.0.1"] {
        assert_eq!(client.get(server.url("/api/v1/health")).header(HOST, host).send().await.unwrap().status(), 200, "{host}");
    }
    let models: serde_json::Value = client.get(server.url("/api/v1/models")).send().await.unwrap().json().await.unwrap();
    assert!(models.as_array().unwrap().iter().any(|m| m["name"] == "tiny-sd"), "the refused delete deleted nothing");
}
