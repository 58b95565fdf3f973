//! Property tests over the parsers that read untrusted input (issue 18's fuzzing, bounded in time
//! with a fixed case count and no persistence): request bodies, prompts in both syntaxes,
//! infotexts, PNG text chunks, ComfyUI graphs and workflows, imported files, and the hub's name
//! and path validators. None may panic; the validators must never accept a traversal.
#![cfg(feature = "ssr")]

use easel::api::comfy::{graph, nodes, workflow};
use easel::api::networks::extra_network_tags;
use easel::api::GenerateRequest;
use easel::engine::infotext::parse_infotext;
use easel::engine::png_meta::{encode_png, read_text_chunks};
use easel::engine::prompt::{a1111, comfyui};
use easel::hub::cache::{check_file_path, check_repo_id, check_revision};
use easel::hub::pull::PullRequest;
use easel::service::import::read_settings;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A fixed seed, so a run is repeatable and CI does not flicker; change it to explore further.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_ea5e),
        ..ProptestConfig::default()
    }
}

/// Text rich in the characters the prompt and infotext grammars care about.
fn syntax_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[a-z0-9 ()\\[\\]{}:|<>,.\\\\\"=-]{0,200}",
        proptest::collection::vec(
            prop_oneof![
                Just("AND".to_string()),
                Just("BREAK".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(":".to_string()),
                Just("|".to_string()),
                Just("<lora:".to_string()),
                Just(">".to_string()),
                Just("\n".to_string()),
                Just("Steps: ".to_string()),
                Just(", ".to_string()),
                "[a-z]{1,6}",
                "-?[0-9]{1,4}(\\.[0-9]{0,3})?",
            ],
            0..60
        )
        .prop_map(|parts| parts.join(" ")),
    ]
}

/// JSON values a few levels deep, with the keys requests and graphs use.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("prompt".to_string()),
        Just("width".to_string()),
        Just("steps".to_string()),
        Just("hires".to_string()),
        Just("loras".to_string()),
        Just("class_type".to_string()),
        Just("inputs".to_string()),
        Just("nodes".to_string()),
        Just("links".to_string()),
        Just("png_text".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn lists() -> nodes::Lists {
    nodes::Lists { checkpoints: vec!["tiny-sd".into()], loras: vec!["style".into()], vaes: vec!["vae".into()] }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_bodies_never_panic(body in json_value()) {
        if let Ok(request) = GenerateRequest::from_json(&body) {
            let _ = request.resolve(|| 1);
        }
    }

    #[test]
    fn prompt_parsers_never_panic(text in syntax_text()) {
        let _ = a1111::and_parts(&text);
        let _ = a1111::schedule(&text, 20, Some(10));
        let _ = a1111::attention(&text);
        let _ = comfyui::token_weights(&text);
        let _ = extra_network_tags(&text);
        let request = GenerateRequest { prompt: text.clone(), negative_prompt: Some(text), ..Default::default() };
        let _ = request.resolve(|| 1);
    }

    #[test]
    fn infotexts_and_imports_never_panic(text in syntax_text()) {
        let _ = parse_infotext(&text);
        let _ = read_settings(text.as_bytes(), &lists());
    }

    #[test]
    fn png_text_chunks_of_damaged_pngs_never_panic(flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..8), cut in 0usize..400) {
        let mut png = encode_png(&[7u8; 4 * 4 * 3], 4, 4, "a cat\nSteps: 2, Seed: 1", "{}", &[("prompt", "{\"3\": {}}")]).unwrap();
        for (at, byte) in flips {
            if let Some(b) = png.get_mut(at) {
                *b = byte;
            }
        }
        png.truncate(cut.max(8));
        let _ = read_text_chunks(&png);
        let _ = read_settings(&png, &lists());
    }

    #[test]
    fn comfyui_graphs_and_workflows_never_panic(value in json_value()) {
        let specs = nodes::specs(&lists());
        if let Ok(parsed) = graph::parse(&value) {
            let _ = graph::compile(&parsed, &specs);
        }
        let _ = workflow::to_api_format(&value, &specs);
        let _ = read_settings(value.to_string().as_bytes(), &lists());
    }

    #[test]
    fn hub_names_and_paths_never_let_a_traversal_through(text in prop_oneof!["\\PC{0,60}", "[a-z./\\\\-]{0,30}"]) {
        if check_repo_id(&text).is_ok() {
            prop_assert!(!text.contains("..") && !text.starts_with('/') && !text.contains('\\') && text.split('/').count() <= 2);
        }
        if check_revision(&text).is_ok() {
            prop_assert!(!text.split('/').any(|s| s == ".." || s.is_empty()) && !text.contains('\\'));
        }
        if check_file_path(&text).is_ok() {
            prop_assert!(!text.starts_with('/') && !text.split('/').any(|s| s == ".." || s == ".") && !text.contains('\\'));
        }
        let _ = PullRequest::parse(&text);
    }
}

#[test]
fn a_deep_graph_and_a_long_reroute_chain_are_refused_not_overflowed() {
    // A chain of 4,000 nodes each feeding the next (fewer than the node limit): validation walks
    // chains recursively, so the depth is refused up front instead of overflowing the stack.
    let mut graph = serde_json::Map::new();
    for i in 0..4_000 {
        let inputs = if i == 0 {
            json!({"ckpt_name": "tiny-sd"})
        } else {
            json!({"model": [(i - 1).to_string(), 0], "lora_name": "style", "strength_model": 1.0})
        };
        let class = if i == 0 { "CheckpointLoaderSimple" } else { "LoraLoaderModelOnly" };
        graph.insert(i.to_string(), json!({"class_type": class, "inputs": inputs}));
    }
    let specs = nodes::specs(&lists());
    let refused = graph::parse(&Value::Object(graph.clone())).unwrap_err();
    assert!(refused.error["details"].as_str().unwrap().contains("a chain of 4000 linked nodes"), "{:?}", refused.error);
    // Within the limit the same chain is checked (and refused for its many LoRAs only when run).
    let short: serde_json::Map<String, Value> = graph.into_iter().filter(|(k, _)| k.parse::<usize>().unwrap() < 200).collect();
    let parsed = graph::parse(&Value::Object(short)).unwrap();
    let _ = graph::compile(&parsed, &specs);
    let nodes: Vec<Value> =
        (0..3000).map(|i| json!({"id": i, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "link": i}]})).collect();
    let links: Vec<Value> = (0..3000).map(|i| json!([i, i + 1, 0, i, 0, "*"])).collect();
    let _ = workflow::to_api_format(&json!({"nodes": nodes, "links": links}), &specs);
}
