//! Prompts as A1111 and ComfyUI read them, against those tools' own functions: the fixtures in
//! `tests/fixtures/prompts/` were recorded by `models/tooling/ref_prompts.py`, which runs
//! A1111's `prompt_parser` and `sd_hijack_clip` chunking and ComfyUI's `sd1_clip` tokenizer from
//! their sources, and computes the conditioning with transformers' `CLIPTextModel` (the tiny
//! model) following each tool's weighting.
#![cfg(feature = "ssr")]

use std::path::{Path, PathBuf};

use easel::api::PromptSyntax;
use easel::engine::model::{Residency, SdModel};
use easel::engine::npy;
use easel::engine::prompt::chunks::{a1111_chunks, comfy_windows, Chunk, Token, Vocabulary};
use easel::engine::prompt::embeddings::{self, Embedding, EmbeddingFile, EmbeddingSet, Vectors};
use easel::engine::prompt::{a1111, comfyui, encode, PromptRequest};
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/prompts")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn tokenizer() -> easel::engine::clip_tokenizer::ClipTokenizer {
    easel::engine::clip_tokenizer::ClipTokenizer::load(&root().join("models/tiny-sd/tokenizer")).unwrap()
}

fn runs_of(value: &Value) -> Vec<(String, f64)> {
    value.as_array().unwrap().iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap())).collect()
}

fn same_runs(got: &[(String, f64)], want: &[(String, f64)]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() < 1e-6)
}

#[test]
fn a1111_parser_matches_a1111_on_every_fixture_prompt() {
    let fixture = read_json(&fixtures().join("parser_a1111.json"));
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut problems = Vec::new();
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let hires = case["hires_steps"].as_u64().map(|h| h as usize);
        let parts = a1111::and_parts(prompt);
        let want_parts: Vec<(String, f64)> = case["and_parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["text"].as_str().unwrap().into(), p["weight"].as_f64().unwrap()))
            .collect();
        let got_parts: Vec<(String, f64)> = parts.iter().map(|p| (p.text.clone(), p.weight)).collect();
        if !same_runs(&got_parts, &want_parts) {
            problems.push(format!("{prompt:?}: AND parts {got_parts:?}, A1111 {want_parts:?}"));
            continue;
        }
        for (part, want) in parts.iter().zip(case["schedules"].as_array().unwrap()) {
            let got = a1111::schedule(&part.text, steps, hires);
            let want: Vec<(usize, String)> =
                want.as_array().unwrap().iter().map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_str().unwrap().to_string())).collect();
            if got != want {
                problems.push(format!("{prompt:?} (steps {steps}, hires {hires:?}): schedule {got:?}, A1111 {want:?}"));
            }
        }
        for (text, want) in case["attention"].as_object().unwrap() {
            if want.get("error").is_some() {
                // A1111 raises on this text (e.g. `(x:1.2.3)`) and cannot generate; Easel
                // reads it (the weight as text, ×1.1) rather than fail the job.
                assert!(!a1111::attention(text).is_empty());
                continue;
            }
            let got: Vec<(String, f64)> = a1111::attention(text).into_iter().map(|w| (w.text, w.weight)).collect();
            if !same_runs(&got, &runs_of(want)) {
                problems.push(format!("{text:?}: attention {got:?}, A1111 {:?}", runs_of(want)));
            }
        }
    }
    assert!(problems.is_empty(), "{} of {} prompts differ:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

/// Embeddings with `rows` vectors named as the fixture names them (the values do not matter here).
fn fake_embeddings(names: &Value, vocab: &dyn Vocabulary) -> EmbeddingSet {
    let list = names
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, rows)| {
                    let rows = rows.as_u64().unwrap() as usize;
                    Embedding {
                        name: name.clone(),
                        short_hash: String::new(),
                        name_ids: vocab.ids(name),
                        vectors: Vectors { rows, dim: 1, data: vec![0.0; rows] },
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    EmbeddingSet::new(list)
}

fn token_name(token: &Token, set: &EmbeddingSet) -> String {
    match *token {
        Token::Id(id) => id.to_string(),
        Token::Vector { embedding, row } => format!("emb:{}:{row}", set.embeddings[embedding].name),
    }
}

#[test]
fn a1111_chunks_match_a1111_tokenize_line() {
    let tok = tokenizer();
    let fixture = read_json(&fixtures().join("chunks_a1111.json"));
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 12, "{} cases", cases.len());
    let mut problems = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let set = fake_embeddings(&case["embeddings"], &tok);
        let (chunks, count) = a1111_chunks(&a1111::attention(text), &tok, &set);
        let want_chunks = case["chunks"].as_array().unwrap();
        if count != case["token_count"].as_u64().unwrap() as usize || chunks.len() != want_chunks.len() {
            problems.push(format!(
                "{text:?}: {} chunks, {count} tokens; A1111 {} chunks, {} tokens",
                chunks.len(),
                want_chunks.len(),
                case["token_count"]
            ));
            continue;
        }
        for (i, (got, want)) in chunks.iter().zip(want_chunks).enumerate() {
            // A1111 writes 0 at an embedding's positions and lists (offset, name) fixes; the
            // vectors go to offset + 1 (after <start>).
            let mut want_tokens: Vec<String> = want["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap().to_string()).collect();
            for fix in want["fixes"].as_array().unwrap() {
                let (offset, name) = (fix[0].as_u64().unwrap() as usize, fix[1].as_str().unwrap());
                let rows = case["embeddings"][name].as_u64().unwrap() as usize;
                for row in 0..rows {
                    want_tokens[offset + 1 + row] = format!("emb:{name}:{row}");
                }
            }
            let got_tokens: Vec<String> = got.tokens.iter().map(|t| token_name(t, &set)).collect();
            let want_weights: Vec<f64> = want["multipliers"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
            let weights_ok =
                got.weights.len() == want_weights.len() && got.weights.iter().zip(&want_weights).all(|(g, w)| (g - w).abs() < 1e-6);
            if got_tokens != want_tokens || !weights_ok {
                problems
                    .push(format!("{text:?} chunk {i}:\n  got  {got_tokens:?} {:?}\n  want {want_tokens:?} {want_weights:?}", got.weights));
            }
        }
    }
    assert!(problems.is_empty(), "{} of {} texts differ:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

#[test]
fn comfyui_parser_and_windows_match_comfyui() {
    let tok = tokenizer();
    let fixture = read_json(&fixtures().join("parser_comfyui.json"));
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let set = comfy_fixture_embeddings(&tok);
    let mut problems = Vec::new();
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let runs = comfyui::token_weights(prompt);
        if !same_runs(&runs, &runs_of(&case["token_weights"])) {
            problems.push(format!("{prompt:?}: token weights {runs:?}, ComfyUI {:?}", runs_of(&case["token_weights"])));
            continue;
        }
        let windows: Vec<Chunk> = comfy_windows(&comfyui::words(&runs, &tok, &set), &tok);
        let got: Vec<Vec<(String, f64)>> =
            windows.iter().map(|w| w.tokens.iter().zip(&w.weights).map(|(t, &x)| (token_name(t, &set), x)).collect()).collect();
        let want: Vec<Vec<(String, f64)>> = case["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                w.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (p[0].as_u64().map(|i| i.to_string()).unwrap_or_else(|| p[0].as_str().unwrap().to_string()), p[1].as_f64().unwrap())
                    })
                    .collect()
            })
            .collect();
        let same = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| same_runs(g, w));
        if !same {
            problems.push(format!("{prompt:?}: windows\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(problems.is_empty(), "{} of {} prompts differ:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

/// The fixture embeddings ComfyUI's cases use, read from their files.
fn comfy_fixture_embeddings(vocab: &dyn Vocabulary) -> EmbeddingSet {
    let files = embeddings::scan_dir(&fixtures().join("embeddings"));
    let files: Vec<EmbeddingFile> = files.into_iter().filter(|f| f.name != "evil").collect();
    let every_name = files.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(" ");
    EmbeddingSet::for_texts(&files, &[&every_name], 32, vocab)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn conditioning_matches_a1111_and_comfyui_computed_with_transformers() {
    let rt = runtime().expect("ONNX Runtime (scripts/setup.sh installs it)");
    let mut model = SdModel::load(&root().join("models/tiny-sd"), rt, 2, Residency::Warm).unwrap();
    model.embedding_sources.dirs = vec![fixtures().join("embeddings")];
    let dir = fixtures().join("conditioning");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 10, "{} conditioning cases", cases.len());
    let mut problems = Vec::new();
    for case in &cases {
        let s = read_json(&case.join("settings.json"));
        let syntax = PromptSyntax::parse(s["syntax"].as_str().unwrap()).unwrap();
        let request = PromptRequest {
            prompt: s["prompt"].as_str().unwrap(),
            negative_prompt: s["negative_prompt"].as_str().unwrap_or(""),
            syntax,
            clip_skip: s["clip_skip"].as_u64().unwrap_or(1) as usize,
            steps: s["steps"].as_u64().unwrap_or(20) as usize,
            hires_steps: None,
            guided: true,
            combined: &[],
            conditioning: None,
        };
        let got = encode(&mut model, &request, &CancelToken::new()).unwrap();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let compare = |what: &str, got: &[f32], file: &str| -> Option<String> {
            let (shape, want) = npy::read_f32(case.join(file)).unwrap();
            if got.len() != want.len() {
                return Some(format!("{name} {what}: {} tokens, reference {shape:?}", got.len() / 32));
            }
            let d = max_abs_diff(got, &want);
            (d > 1e-4).then(|| format!("{name} {what}: max difference {d:e}"))
        };
        let mut files: Vec<String> =
            std::fs::read_dir(case).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        let mut compared = 0;
        for file in files.iter().filter(|f| f.ends_with(".npy")) {
            let stem = file.trim_end_matches(".npy");
            let (branch, end) = match stem.split_once("_e") {
                Some((b, e)) => (b, e.parse::<usize>().unwrap()),
                None => (stem, 0),
            };
            let encoding = match branch {
                "uncond" => got.uncond.as_ref().unwrap().at(end),
                "cond" => got.parts[0].1.at(end),
                p => {
                    let j: usize = p.trim_start_matches("cond_p").parse().unwrap();
                    match got.parts.get(j) {
                        Some(part) => part.1.at(end),
                        None => {
                            problems.push(format!("{name}: no AND part {j}"));
                            continue;
                        }
                    }
                }
            };
            problems.extend(compare(stem, encoding, file));
            compared += 1;
        }
        assert!(compared >= 2, "{name}: nothing compared");
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn embedding_files_are_read_without_unpickling_and_evil_ones_refused() {
    let dir = fixtures().join("embeddings");
    let neg = embeddings::read_vectors(&dir.join("tinyneg.pt")).unwrap();
    assert_eq!((neg.rows, neg.dim), (3, 32));
    let style = embeddings::read_vectors(&dir.join("tinystyle.safetensors")).unwrap();
    assert_eq!((style.rows, style.dim), (2, 32));
    let clip = embeddings::read_vectors(&dir.join("tinyclip.safetensors")).unwrap();
    assert_eq!((clip.rows, clip.dim), (1, 32));
    let bf16 = embeddings::read_vectors(&dir.join("tinybf16.pt")).unwrap();
    assert_eq!((bf16.rows, bf16.dim), (2, 32));
    let dict = embeddings::read_vectors(&dir.join("tinyparamdict.pt")).unwrap();
    assert_eq!(dict.dim, 32);
    let evil = embeddings::read_vectors(&dir.join("evil.pt")).unwrap_err().to_string();
    assert!(evil.contains("evil.pt") && evil.contains("system"), "{evil}");
}
