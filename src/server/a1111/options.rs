//! Owns the A1111 options the door keeps (`GET/POST /sdapi/v1/options`, `override_settings`)
//! and A1111's names for checkpoints and VAEs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::lenient;
use super::wire::*;
use crate::api::{FieldError, ModelEntry};

// ---------------------------------------------------------------------------------------------
// Options (spec 2.7, 3)
// ---------------------------------------------------------------------------------------------

/// One key of `GET /options` with A1111's default; `fixed` keys change the picture in ways Easel
/// cannot follow, so a different value is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionDefault {
    pub key: &'static str,
    pub value: Value,
    pub fixed: bool,
}

/// The option keys clients read, with A1111's defaults (`modules/shared_options.py`).
pub fn option_defaults() -> Vec<OptionDefault> {
    let echo = |key, value| OptionDefault { key, value, fixed: false };
    let fixed = |key, value| OptionDefault { key, value, fixed: true };
    vec![
        echo("samples_save", json!(true)),
        echo("samples_format", json!("png")),
        echo("grid_save", json!(true)),
        echo("grid_format", json!("png")),
        echo("grid_only_if_multiple", json!(true)),
        echo("return_grid", json!(true)),
        echo("enable_pnginfo", json!(true)),
        echo("jpeg_quality", json!(80)),
        echo("sd_checkpoints_limit", json!(1)),
        echo("sd_vae_overrides_per_model_preferences", json!(true)),
        echo("sd_unet", json!("Automatic")),
        echo("sd_hypernetwork", json!("None")),
        echo("sd_lora", json!("None")),
        echo("lora_preferred_name", json!("Alias from file")),
        echo("face_restoration_model", json!("CodeFormer")),
        echo("img2img_background_color", json!("#ffffff")),
        echo("live_previews_enable", json!(true)),
        echo("show_progress_every_n_steps", json!(10)),
        echo("show_progress_type", json!("Approx NN")),
        echo("add_model_hash_to_info", json!(true)),
        echo("add_model_name_to_info", json!(true)),
        echo("add_vae_hash_to_info", json!(true)),
        echo("add_vae_name_to_info", json!(true)),
        echo("add_version_to_infotext", json!(true)),
        echo("quicksettings_list", json!(["sd_model_checkpoint"])),
        echo("hide_samplers", json!([])),
        echo("api_enable_requests", json!(true)),
        echo("api_forbid_local_requests", json!(true)),
        fixed("face_restoration", json!(false)),
        fixed("tiling", json!(false)),
        fixed("eta_ancestral", json!(1.0)),
        fixed("eta_ddim", json!(0.0)),
        fixed("s_churn", json!(0.0)),
        fixed("s_tmin", json!(0.0)),
        fixed("s_tmax", json!(0.0)),
        fixed("s_noise", json!(1.0)),
        fixed("s_min_uncond", json!(0.0)),
        fixed("sigma_min", json!(0.0)),
        fixed("sigma_max", json!(0.0)),
        fixed("rho", json!(0.0)),
        fixed("always_discard_next_to_last_sigma", json!(false)),
        fixed("emphasis", json!("Original")),
        fixed("token_merging_ratio", json!(0.0)),
        fixed("img2img_fix_steps", json!(false)),
        fixed("initial_noise_multiplier", json!(1.0)),
        fixed("inpainting_mask_weight", json!(1.0)),
        fixed("img2img_color_correction", json!(false)),
        fixed("img2img_extra_noise", json!(0.0)),
        fixed("sd_vae_encode_method", json!("Full")),
        fixed("sd_vae_decode_method", json!("Full")),
        fixed("use_old_hires_fix_width_height", json!(false)),
    ]
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The A1111 options the door keeps (in memory, or persisted beside the job database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct A1111Options {
    /// What a client chose (a title, name or hash; matched by [`find_checkpoint`]); `None` = Easel's
    /// default model.
    pub sd_model_checkpoint: Option<String>,
    /// `Automatic`, `None` or a VAE name.
    pub sd_vae: String,
    #[serde(rename = "CLIP_stop_at_last_layers")]
    pub clip_stop_at_last_layers: i64,
    /// `GPU` (A1111's default, Easel's NV noise), `NV` or `CPU`.
    pub randn_source: String,
    pub eta_noise_seed_delta: i64,
    /// Every other key a client set, echoed back by `GET /options`.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Default for A1111Options {
    fn default() -> Self {
        Self {
            sd_model_checkpoint: None,
            sd_vae: "Automatic".into(),
            clip_stop_at_last_layers: 1,
            randn_source: "GPU".into(),
            eta_noise_seed_delta: 0,
            other: Map::new(),
        }
    }
}

impl A1111Options {
    /// These options with `changes` applied (a `POST /options` body, or `override_settings` with
    /// `prefix` `"override_settings."`), all or nothing. Checkpoint and VAE names are only stored
    /// here; the handler matches them against Easel's lists.
    pub fn with(&self, changes: &Map<String, Value>, prefix: &str) -> Result<A1111Options, Vec<FieldError>> {
        let mut next = self.clone();
        let mut errors = Vec::new();
        let defaults = option_defaults();
        for (key, value) in changes {
            let field = format!("{prefix}{key}");
            match key.as_str() {
                "sd_model_checkpoint" => match lenient::as_string(value) {
                    Some(name) => next.sd_model_checkpoint = Some(name),
                    None if value.is_null() => {}
                    None => errors.push(FieldError::new(&field, lenient::NOT_STR)),
                },
                "sd_vae" => match lenient::as_string(value) {
                    Some(name) => next.sd_vae = name,
                    None => errors.push(FieldError::new(&field, lenient::NOT_STR)),
                },
                "CLIP_stop_at_last_layers" => match lenient::as_int(value) {
                    Some(n) if (1..=12).contains(&n) => next.clip_stop_at_last_layers = n,
                    _ => errors.push(FieldError::new(&field, format!("{key} must be a whole number from 1 to 12, got {value}"))),
                },
                "randn_source" => {
                    match lenient::as_string(value).filter(|v| ["GPU", "CPU", "NV"].contains(&v.to_ascii_uppercase().as_str())) {
                        Some(source) => next.randn_source = source.to_ascii_uppercase(),
                        None => errors.push(FieldError::new(&field, format!("randn_source must be GPU, CPU or NV, got {value}"))),
                    }
                }
                "eta_noise_seed_delta" => match lenient::as_int(value) {
                    Some(n) if n >= 0 => next.eta_noise_seed_delta = n,
                    _ => errors.push(FieldError::new(&field, format!("eta_noise_seed_delta must be a whole number >= 0, got {value}"))),
                },
                // Derived from the checkpoint; a client echoing GET's value back changes nothing.
                "sd_checkpoint_hash" => {}
                _ => match defaults.iter().find(|d| d.key == key) {
                    Some(d) if d.fixed && !same_value(&d.value, value) => errors
                        .push(FieldError::new(&field, format!("Easel cannot run {key} = {value}; it runs A1111's default {}", d.value))),
                    _ => {
                        next.other.insert(key.clone(), value.clone());
                    }
                },
            }
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }

    /// The `GET /options` body: defaults, what clients set, then the keys the door owns.
    pub fn to_json(&self, checkpoint_title: Option<&str>, checkpoint_sha256: Option<&str>) -> Map<String, Value> {
        let mut out: Map<String, Value> = option_defaults().into_iter().map(|d| (d.key.to_string(), d.value)).collect();
        out.extend(self.other.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.insert("sd_model_checkpoint".into(), checkpoint_title.map_or(Value::Null, |t| json!(t)));
        out.insert("sd_checkpoint_hash".into(), json!(checkpoint_sha256.unwrap_or("")));
        out.insert("sd_vae".into(), json!(self.sd_vae));
        out.insert("CLIP_stop_at_last_layers".into(), json!(self.clip_stop_at_last_layers));
        out.insert("randn_source".into(), json!(self.randn_source));
        out.insert("eta_noise_seed_delta".into(), json!(self.eta_noise_seed_delta));
        out
    }
}

/// What one call runs with, after `override_settings` and name resolution by the handler.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveOptions {
    /// Easel's model name (`ModelEntry::name`); `None` = Easel's default model.
    pub model: Option<String>,
    /// Easel's VAE name; `None` = the model's own choice (A1111 `Automatic`, and `None` for now).
    pub vae: Option<String>,
    pub clip_skip: u32,
    pub randn_source: String,
    pub eta_noise_seed_delta: u64,
}

impl EffectiveOptions {
    pub fn new(options: &A1111Options, model: Option<String>, vae: Option<String>) -> Self {
        Self {
            model,
            vae,
            clip_skip: options.clip_stop_at_last_layers.clamp(1, 12) as u32,
            randn_source: options.randn_source.clone(),
            eta_noise_seed_delta: options.eta_noise_seed_delta.max(0) as u64,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoint names (spec 3.1, 4.1)
// ---------------------------------------------------------------------------------------------

fn strip_ext(name: &str) -> &str {
    name.strip_suffix(".safetensors").unwrap_or(name)
}

fn last_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A1111's `title`: `"<name> [<short hash>]"`, or the bare name before the hash is known.
pub fn checkpoint_title(entry: &ModelEntry) -> String {
    match &entry.hash {
        Some(hash) => format!("{} [{hash}]", entry.name),
        None => entry.name.clone(),
    }
}

/// A1111's `model_name`: the name without its extension, folders joined with `_`.
pub fn checkpoint_model_name(entry: &ModelEntry) -> String {
    strip_ext(&entry.name).replace('/', "_")
}

/// The model a client's checkpoint string names, matched like A1111's `CheckpointInfo.ids`: the
/// title (a stale hash is ignored), the name, the name without extension or folders,
/// `model_name`, an alias, or the short hash.
pub fn find_checkpoint<'a>(models: &'a [ModelEntry], wanted: &str) -> Option<&'a ModelEntry> {
    let wanted = wanted.trim();
    let base = match wanted.rsplit_once(" [") {
        Some((base, hash)) if hash.ends_with(']') => base,
        _ => wanted,
    };
    let by_name = |e: &&ModelEntry| {
        e.name == base
            || strip_ext(&e.name) == base
            || last_component(&e.name) == base
            || strip_ext(last_component(&e.name)) == base
            || checkpoint_model_name(e) == base
            || e.aliases.iter().any(|a| a == base)
    };
    models.iter().find(by_name).or_else(|| models.iter().find(|e| e.hash.as_deref() == Some(wanted)))
}

/// A `/sd-models` entry (`sha256`: the full hash when the handler knows it).
pub fn sd_model_item(entry: &ModelEntry, sha256: Option<String>) -> SdModelItem {
    SdModelItem {
        title: checkpoint_title(entry),
        model_name: checkpoint_model_name(entry),
        hash: entry.hash.clone(),
        sha256,
        filename: entry.path.display().to_string(),
        config: None,
    }
}

/// Whether an A1111 VAE name (a file basename) names the Easel VAE `easel_name` (a relative path).
pub fn vae_matches(easel_name: &str, wanted: &str) -> bool {
    let wanted = wanted.trim();
    easel_name == wanted || last_component(easel_name) == wanted || strip_ext(last_component(easel_name)) == strip_ext(wanted)
}
