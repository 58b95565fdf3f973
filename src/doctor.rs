//! `easel doctor`: a plain-text report of what this machine gives Easel, for bug reports and setup.

use std::path::Path;

use crate::config::Settings;
use crate::engine::runtime;

pub fn print_report(settings: &Settings) {
    println!("easel {}", env!("CARGO_PKG_VERSION"));
    match runtime::runtime() {
        Ok(rt) => println!("onnxruntime   {} ({})", rt.version, rt.library.display()),
        Err(e) => println!("onnxruntime   MISSING: {e}"),
    }
    println!("config file   {}", settings.config_file.as_ref().map_or("(none)".into(), |p| p.display().to_string()));
    println!("models dir    {}", settings.models_dir.display());
    for line in model_lines(&settings.models_dir) {
        println!("  {line}");
    }
    println!("data dir      {}", settings.data_dir.display());
    println!("outputs dir   {}", settings.outputs_dir.display());
    println!("free disk     {}", free_disk(&settings.data_dir));
    println!("threads       {}", settings.threads);
}

/// One line per sub-folder that looks like a diffusers ONNX model (has `model_index.json`).
fn model_lines(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![format!("(cannot read {})", dir.display())];
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("model_index.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        names.push("(no models found)".into());
    }
    names
}

/// Free space on the file system holding `dir` (or its nearest existing parent).
fn free_disk(dir: &Path) -> String {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    match fs4::available_space(existing) {
        Ok(bytes) => format!("{:.1} GB at {}", bytes as f64 / 1e9, existing.display()),
        Err(e) => format!("unknown ({e})"),
    }
}
