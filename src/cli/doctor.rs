//! `easel doctor`: a plain-text report of what this machine gives Easel, for bug reports and setup.

use std::path::Path;

use crate::config::Settings;
use crate::engine::runtime;

pub fn print_report(settings: &Settings) {
    println!("easel {}", env!("CARGO_PKG_VERSION"));
    match runtime::runtime_for(settings.device) {
        Ok(rt) => {
            println!("onnxruntime   {} ({})", rt.version, rt.library.display());
            println!("devices       (chosen: --device {}, --precision {})", settings.device, settings.precision);
            for (device, available) in crate::engine::execution::devices(rt) {
                match available {
                    Ok(()) => println!("  {:<10} available ({})", device.kind(), crate::engine::execution::provider_name(device)),
                    Err(e) => println!("  {:<10} not available: {}", device.kind(), reason(&e)),
                }
            }
        }
        Err(e) => println!("onnxruntime   MISSING: {e}"),
    }
    println!("web UI        {}", crate::server::site_root().describe());
    println!("config file   {}", settings.config_file.as_ref().map_or("(none)".into(), |p| p.display().to_string()));
    println!("models dir    {}", settings.models_dir.display());
    println!("hub cache     {}", settings.hub_cache.display());
    let registry = crate::model_registry::ModelRegistry::from_settings(settings);
    let models = registry.list();
    if models.is_empty() {
        println!("  (no models found; pull one with `easel pull sd15`)");
    }
    for m in models {
        println!(
            "  {}{} ({}, {})",
            m.name,
            if m.is_default { " [default]" } else { "" },
            m.precision,
            crate::api::pull::human_bytes(m.size_bytes)
        );
    }
    if let Some(problem) = registry.default_problem() {
        println!("  warning: {problem}");
    }
    println!("data dir      {}", settings.data_dir.display());
    println!("outputs dir   {}", settings.outputs_dir.display());
    println!("free disk     {}", free_disk(&settings.data_dir));
    println!("threads       {}", settings.threads);
}

/// The reason without the `--device X:` prefix the error carries for the command line.
fn reason(e: &crate::engine::execution::ExecutionError) -> String {
    match e {
        crate::engine::execution::ExecutionError::DeviceUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Free space on the file system holding `dir` (or its nearest existing parent).
fn free_disk(dir: &Path) -> String {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    match fs4::available_space(existing) {
        Ok(bytes) => format!("{:.1} GB at {}", bytes as f64 / 1e9, existing.display()),
        Err(e) => format!("unknown ({e})"),
    }
}
