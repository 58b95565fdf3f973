//! Reading generation settings back out of a file a user drops on the form: an Easel PNG (its
//! own record, exact), an AUTOMATIC1111 PNG or infotext (the a1111 mode, so A1111's picture
//! comes out), a ComfyUI PNG or workflow JSON in the API or the UI format (the comfyui mode).
//! Untrusted input: sizes are bounded, nothing is run, and every refusal says why.

use serde_json::Value;

use crate::api::comfy::{graph, nodes, workflow};
use crate::api::import::{ImportSource, ImportedSettings};
use crate::api::{FieldError, GenerateRequest, HiresRequest, Upscaler};
use crate::engine::infotext::parse_infotext;
use crate::engine::png_meta::{read_text_chunks, recorded_settings};

/// Largest file accepted (a PNG with its chunks, or a workflow).
pub const MAX_IMPORT_BYTES: usize = 32 << 20;

/// Why a file gave no settings, for the form's `file` field.
fn refuse(message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError::new("file", message)]
}

/// The settings `bytes` holds. `lists` names the models, LoRAs and VAEs a ComfyUI graph may use.
pub fn read_settings(bytes: &[u8], lists: &nodes::Lists) -> Result<ImportedSettings, Vec<FieldError>> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(refuse(format!("the file has {} bytes; at most {MAX_IMPORT_BYTES}", bytes.len())));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let chunks = read_text_chunks(bytes).map_err(|e| refuse(format!("the PNG cannot be read: {e}")))?;
        let chunk = |key: &str| chunks.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if let Some(record) = chunk("easel") {
            if let Some(settings) = recorded_settings(record) {
                return Ok(ImportedSettings { source: ImportSource::Easel, settings, notes: Vec::new() });
            }
        }
        if let Some(text) = chunk("parameters").filter(|t| !t.trim().is_empty()) {
            return from_infotext(text);
        }
        for key in ["prompt", "workflow"] {
            if let Some(json) = chunk(key).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
                return from_comfy(&json, lists);
            }
        }
        return Err(refuse("this PNG carries no settings (no A1111 parameters, Easel record or ComfyUI workflow)"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| refuse("not a PNG, a workflow JSON or an infotext"))?;
    match serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) {
        Ok(json) if json.is_object() => from_comfy(&json, lists),
        _ => from_infotext(text),
    }
}

/// A1111's `Key: value` pairs into a request in the a1111 mode.
fn from_infotext(text: &str) -> Result<ImportedSettings, Vec<FieldError>> {
    let (prompt, negative, pairs) = parse_infotext(text);
    if pairs.is_empty() {
        return Err(refuse("no A1111 parameters found (a line such as \"Steps: 20, Sampler: Euler a, Seed: 1\")"));
    }
    let mut request = GenerateRequest {
        prompt,
        negative_prompt: Some(negative),
        compat: Some("a1111".into()),
        prompt_syntax: Some("a1111".into()),
        // A1111's default noise source unless the text says otherwise.
        randn_source: Some("nv".into()),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let mut hires = HiresRequest::default();
    let mut has_hires = false;
    let number = |v: &str| v.trim().parse::<f64>().ok();
    let whole = |v: &str| v.trim().parse::<u64>().ok();
    let size = |v: &str| v.split_once('x').and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    for (key, value) in &pairs {
        let v = value.as_str();
        match key.as_str() {
            "Steps" => request.steps = whole(v).map(|n| n.min(u64::from(u32::MAX)) as u32),
            "Sampler" => {
                // Before A1111 1.9 the schedule was part of the name ("DPM++ 2M Karras").
                let (name, schedule) = match v.strip_suffix(" Karras").or_else(|| v.strip_suffix(" Exponential")) {
                    Some(name) => (name, Some(v[name.len() + 1..].to_string())),
                    None => (v, None),
                };
                request.sampler = Some(name.to_string());
                if schedule.is_some() && request.schedule.is_none() {
                    request.schedule = schedule;
                }
            }
            "Schedule type" => request.schedule = Some(v.to_string()),
            "CFG scale" => request.cfg_scale = number(v).map(|x| x as f32),
            "Seed" => request.seed = whole(v),
            "Size" => {
                if let Some((w, h)) = size(v) {
                    (request.width, request.height) = (Some(w), Some(h));
                }
            }
            "Model" => request.model = Some(v.to_string()),
            "VAE" => request.vae = Some(v.trim_end_matches(".safetensors").to_string()),
            "Clip skip" => request.clip_skip = whole(v).map(|n| n.min(100) as u32),
            "Variation seed" => request.subseed = whole(v),
            "Variation seed strength" => request.subseed_strength = number(v),
            "Seed resize from" => {
                if let Some((w, h)) = size(v) {
                    (request.seed_resize_from_w, request.seed_resize_from_h) = (Some(w), Some(h));
                }
            }
            "ENSD" | "Eta noise seed delta" => request.eta_noise_seed_delta = whole(v).filter(|n| *n != 0),
            "RNG" => request.randn_source = Some(if v.eq_ignore_ascii_case("cpu") { "cpu" } else { "nv" }.into()),
            "Hires upscale" => (hires.scale, has_hires) = (number(v), true),
            "Hires steps" => hires.steps = whole(v).map(|n| n.min(u64::from(u32::MAX)) as u32),
            // A1111's "None" resizes the picture with Lanczos, as its Lanczos upscaler does.
            "Hires upscaler" => hires.upscaler = Some(if v == "None" { "lanczos" } else { v }.to_string()),
            "Denoising strength" => hires.strength = number(v),
            "Mask blur" | "Inpaint area" | "Masked area padding" | "Masked content" | "Mask mode" => {
                notes.push(format!("{key}: {v} (an inpainting setting; pick the init image and mask to use it)"))
            }
            // The weight Easel always conditions an inpainting model with.
            "Conditional mask weight" if number(v) == Some(1.0) => {}
            "Conditional mask weight" => notes.push(format!("{key}: {v} (Easel conditions inpainting models at 1.0; left out)")),
            "Model hash" | "VAE hash" | "Version" | "Lora hashes" | "TI hashes" | "Schedule max sigma" | "Schedule min sigma" => {}
            other => notes.push(format!("{other}: {v} (not an Easel setting; left out)")),
        }
    }
    if has_hires {
        // Easel's a1111 mode runs A1111's hires fix with its latent upscalers (its default is
        // Latent) and Lanczos; Lanczos stands in for an upscaler Easel does not have (ESRGAN's).
        if let Some(name) = hires.upscaler.clone().filter(|u| !Upscaler::parse(u).is_some_and(Upscaler::in_a1111)) {
            hires.upscaler = Some(Upscaler::Lanczos.name().into());
            notes.push(format!("Hires upscaler: {name} is not in Easel; Lanczos stands in, so the picture will differ from A1111's"));
        }
        request.hires = Some(hires);
    } else if hires.strength.is_some() {
        notes.push("Denoising strength: an image-to-image setting; pick the init image to use it".into());
    }
    let settings = request.resolve(|| 0).map_err(|mut errors| {
        for e in &mut errors {
            e.message = format!("the infotext's {}: {}", e.field, e.message);
            e.field = "file".into();
        }
        errors
    })?;
    Ok(ImportedSettings { source: ImportSource::A1111, settings, notes })
}

/// A ComfyUI graph (API format, or UI format converted) into its first output's request.
fn from_comfy(json: &Value, lists: &nodes::Lists) -> Result<ImportedSettings, Vec<FieldError>> {
    let specs = nodes::specs(lists);
    let mut notes = Vec::new();
    let api_graph = if workflow::is_ui_format(json) {
        let converted = workflow::to_api_format(json, &specs).map_err(|e| refuse(format!("the ComfyUI workflow: {e}")))?;
        if !converted.unknown_classes.is_empty() {
            return Err(refuse(format!(
                "the workflow uses nodes Easel does not run: {}. Easel runs: {}",
                converted.unknown_classes.join(", "),
                specs.iter().map(|s| s.class).collect::<Vec<_>>().join(", ")
            )));
        }
        converted.graph
    } else {
        json.clone()
    };
    let parsed = graph::parse(&api_graph).map_err(|r| refuse(refusal_message(&r)))?;
    let compiled = graph::compile(&parsed, &specs).map_err(|r| refuse(refusal_message(&r)))?;
    let mut outputs = compiled.outputs.into_iter();
    let first = outputs.next().ok_or_else(|| refuse("the graph has no output Easel can run"))?;
    let others = outputs.count();
    if others > 0 {
        notes.push(format!("the graph has {} outputs; the form takes the first (node {})", others + 1, first.node));
    }
    let settings = first.request.resolve(|| 0).map_err(|mut errors| {
        for e in &mut errors {
            e.message = format!("the graph's {}: {}", e.field, e.message);
            e.field = "file".into();
        }
        errors
    })?;
    // What the graph says that the form has no field for.
    let form_lacks = [
        ("a KSamplerAdvanced window", settings.sampling_range.is_some()),
        ("a KSamplerAdvanced chain", !settings.stages.is_empty()),
        ("combined prompts", !settings.combined_prompts.is_empty()),
        ("conditioning nodes", settings.conditioning.is_some()),
        ("a LatentFromBatch", settings.batch_index.is_some()),
    ];
    for (what, present) in form_lacks {
        if present {
            notes.push(format!("the graph has {what}, which the form has no field for; send the graph to the ComfyUI API to run it whole"));
        }
    }
    Ok(ImportedSettings { source: ImportSource::ComfyUi, settings, notes })
}

/// ComfyUI's refusal in one line: its message and each node error.
fn refusal_message(r: &graph::Refusal) -> String {
    let mut parts = vec![r.error["message"].as_str().unwrap_or("the graph was refused").to_string()];
    if let Some(errors) = r.node_errors.as_object() {
        for (node, e) in errors {
            for item in e["errors"].as_array().into_iter().flatten() {
                let class = e["class_type"].as_str().unwrap_or("");
                parts.push(format!("node {node} ({class}): {}", item["details"].as_str().or(item["message"].as_str()).unwrap_or("")));
            }
        }
    }
    if let Some(details) = r.error["details"].as_str().filter(|d| !d.is_empty()) {
        parts.push(details.to_string());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Compat, Sampler, Schedule};

    fn lists() -> nodes::Lists {
        nodes::Lists { checkpoints: vec!["tiny-sd".into()], loras: vec!["style".into()], vaes: vec![] }
    }

    #[test]
    fn an_a1111_infotext_fills_every_setting_in_the_a1111_mode() {
        let text = "a fox in the snow, (watercolor:1.2)\nNegative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M, \
                    Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, Model hash: 6ce0161689, \
                    Model: tiny-sd, Conditional mask weight: 1.0, Clip skip: 2, Variation seed: 99, Variation seed strength: 0.3, RNG: CPU, \
                    ENSD: 31337, Face restoration: CodeFormer, Version: v1.10.1";
        let imported = read_settings(text.as_bytes(), &lists()).unwrap();
        let s = &imported.settings;
        assert_eq!(imported.source, ImportSource::A1111);
        assert_eq!((s.prompt.as_str(), s.negative_prompt.as_str()), ("a fox in the snow, (watercolor:1.2)", "blurry"));
        assert_eq!((s.steps, s.cfg_scale, s.seed, s.width, s.height, s.clip_skip), (25, 6.5, 1234, 512, 768, 2));
        assert_eq!((s.sampler, s.schedule), (Sampler::Dpmpp2m, Schedule::Karras));
        assert_eq!(s.model.as_deref(), Some("tiny-sd"));
        assert_eq!(s.noise.compat, Compat::A1111);
        assert_eq!((s.noise.subseed, s.noise.subseed_strength, s.noise.eta_noise_seed_delta), (Some(99), 0.3, 31337));
        assert_eq!(imported.notes, ["Face restoration: CodeFormer (not an Easel setting; left out)"]);
        // An inpainting model's conditioning weight: 1 is what Easel runs; another is noted.
        let weighted = read_settings(b"cat\nSteps: 20, Seed: 1, Conditional mask weight: 0.5", &lists()).unwrap();
        assert_eq!(weighted.notes, ["Conditional mask weight: 0.5 (Easel conditions inpainting models at 1.0; left out)"]);
        // Before 1.9 the schedule was part of the sampler's name.
        let old = read_settings(b"cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512", &lists()).unwrap();
        assert_eq!((old.settings.sampler, old.settings.schedule), (Sampler::Dpmpp2m, Schedule::Karras));
        assert!(read_settings(b"just a prompt", &lists()).unwrap_err()[0].message.contains("no A1111 parameters"));
    }

    #[test]
    fn an_a1111_hires_fix_stays_in_the_a1111_mode() {
        let text = |upscaler: &str| {
            format!(
                "cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.5, \
                 Hires upscale: 2, Hires steps: 10{upscaler}"
            )
        };
        for (upscaler, compat, kind) in [
            ("", Compat::A1111, Upscaler::Latent),
            (", Hires upscaler: Latent (nearest-exact)", Compat::A1111, Upscaler::LatentNearestExact),
            (", Hires upscaler: Lanczos", Compat::A1111, Upscaler::Lanczos),
            (", Hires upscaler: None", Compat::A1111, Upscaler::Lanczos),
            (", Hires upscaler: R-ESRGAN 4x+", Compat::A1111, Upscaler::Lanczos),
        ] {
            let imported = read_settings(text(upscaler).as_bytes(), &lists()).unwrap();
            let s = &imported.settings;
            assert_eq!(s.noise.compat, compat, "{upscaler}");
            let h = s.hires.unwrap();
            assert_eq!((h.scale, h.strength, h.steps, h.upscaler), (2.0, 0.5, 10, kind));
            assert_eq!(imported.notes.is_empty(), !upscaler.contains("ESRGAN"), "{:?}", imported.notes);
        }
    }

    #[test]
    fn pngs_give_easels_record_first_then_the_infotext_then_a_comfyui_graph() {
        let settings = GenerateRequest { prompt: "exact".into(), seed: Some(5), width: Some(64), height: Some(64), ..Default::default() }
            .resolve(|| 0)
            .unwrap();
        let record = serde_json::json!({"settings": settings}).to_string();
        let rgb = vec![0u8; 8 * 8 * 3];
        let png = |params: &str, easel: &str, extra: &[(&str, &str)]| {
            crate::engine::png_meta::encode_png(&rgb, 8, 8, params, easel, extra).unwrap()
        };
        let both = png("other\nSteps: 3, Sampler: Euler, Seed: 9, Size: 64x64", &record, &[]);
        let imported = read_settings(&both, &lists()).unwrap();
        assert_eq!((imported.source, imported.settings), (ImportSource::Easel, settings));
        let a1111 = png("other\nSteps: 3, Sampler: Euler, Seed: 9, Size: 64x64", "", &[]);
        assert_eq!(read_settings(&a1111, &lists()).unwrap().settings.seed, 9);
        let graph = serde_json::json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 8, "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "karras",
                  "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        })
        .to_string();
        // As ComfyUI writes it: the graph in `prompt`, no parameters.
        let comfy = png("", "", &[("prompt", &graph)]);
        for imported in [read_settings(&comfy, &lists()).unwrap(), read_settings(graph.as_bytes(), &lists()).unwrap()] {
            assert_eq!(imported.source, ImportSource::ComfyUi);
            let s = imported.settings;
            assert_eq!((s.seed, s.steps, s.sampler, s.schedule, s.noise.compat), (8, 4, Sampler::Euler, Schedule::Karras, Compat::ComfyUi));
            assert_eq!(s.prompt, "a fox");
        }
    }

    #[test]
    fn a_workflow_with_nodes_easel_lacks_names_them() {
        let workflow =
            serde_json::json!({"nodes": [{"id": 1, "type": "UpscaleModelLoader", "mode": 0, "widgets_values": ["x4"]}], "links": []});
        let errors = read_settings(workflow.to_string().as_bytes(), &lists()).unwrap_err();
        assert!(errors[0].message.contains("nodes Easel does not run: UpscaleModelLoader"), "{}", errors[0].message);
    }
}
