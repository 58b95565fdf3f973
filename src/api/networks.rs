//! Owns the add-on networks a request names: LoRAs (the `loras` field, and A1111's
//! `<lora:NAME:WEIGHT>` prompt tags, read here so every door reads them alike) and the VAE choice,
//! with their limits. Plain data, compiled for the server and for wasm.

use serde::{Deserialize, Serialize};

/// Most LoRAs one request may apply.
pub const MAX_LORAS: usize = 16;
/// LoRA weights are accepted within ±this (A1111 and ComfyUI allow about ±10 in their UIs).
pub const MAX_LORA_WEIGHT: f32 = 10.0;
/// What `vae` may say to mean the model's own VAE (A1111's `sd_vae` values).
pub const MODEL_OWN_VAE: [&str; 3] = ["automatic", "none", ""];

/// One LoRA applied to a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraRef {
    /// The LoRA's name from the LoRA list: its file name without `.safetensors` (a subfolder
    /// included, `style/ink`).
    pub name: String,
    /// Its weight on the UNet (and on the text encoder unless `text_encoder_weight` is given).
    #[serde(default = "one")]
    pub weight: f32,
    /// Its weight on the text encoder, when different (ComfyUI's `strength_clip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder_weight: Option<f32>,
}

fn one() -> f32 {
    1.0
}

impl LoraRef {
    /// The weights on (UNet, text encoder).
    pub fn weights(&self) -> (f32, f32) {
        (self.weight, self.text_encoder_weight.unwrap_or(self.weight))
    }

    /// Why this reference is refused, if it is.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() || self.name.len() > 255 {
            return Some(format!("LoRA name {:?} must be 1 to 255 characters", self.name));
        }
        for w in [Some(self.weight), self.text_encoder_weight].into_iter().flatten() {
            if !w.is_finite() || w.abs() > MAX_LORA_WEIGHT {
                return Some(format!("LoRA {} weight {w} is outside -{MAX_LORA_WEIGHT}..{MAX_LORA_WEIGHT}", self.name));
            }
        }
        None
    }
}

/// A1111's extra-network tags in `prompt`: the prompt without any `<kind:...>` tag (A1111 removes
/// every one before encoding) and the LoRAs its `<lora:...>` and `<lyco:...>` tags name, in order.
/// A tag reads `<lora:NAME>`, `<lora:NAME:W>` (both weights), `<lora:NAME:TE:UNET>`, or with
/// `te=`/`unet=` named values. LoRA tags whose weights are not numbers are returned in the third
/// place (the request is refused with them).
pub fn extra_network_tags(prompt: &str) -> (String, Vec<LoraRef>, Vec<String>) {
    let mut text = String::with_capacity(prompt.len());
    let (mut loras, mut bad) = (Vec::new(), Vec::new());
    let mut rest = prompt;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let tag = after.find('>').map(|close| &after[..close]).and_then(|body| {
            let (kind, params) = body.split_once(':')?;
            let word = !kind.is_empty() && kind.chars().all(|c| c.is_alphanumeric() || c == '_');
            (word && !params.is_empty()).then_some((kind, params, body.len()))
        });
        let Some((kind, params, len)) = tag else {
            text.push('<');
            rest = after;
            continue;
        };
        if kind == "lora" || kind == "lyco" {
            match lora_tag(params) {
                Some(lora) => loras.push(lora),
                None => bad.push(format!("<{kind}:{params}>")),
            }
        }
        rest = &after[len + 1..];
    }
    text.push_str(rest);
    (text, loras, bad)
}

/// `NAME[:TE[:UNET]]` with optional `te=`/`unet=` items, as A1111's LoRA network reads it.
fn lora_tag(params: &str) -> Option<LoraRef> {
    let mut items = params.split(':');
    let name = items.next()?.trim().to_string();
    let (mut positional, mut te_named, mut unet_named) = (Vec::new(), None, None);
    for item in items {
        match item.split_once('=') {
            Some((key, value)) => {
                let value: f32 = value.trim().parse().ok()?;
                match key.trim() {
                    "te" => te_named = Some(value),
                    "unet" => unet_named = Some(value),
                    _ => {}
                }
            }
            None => positional.push(item.trim().parse::<f32>().ok()?),
        }
    }
    let te = te_named.or(positional.first().copied()).unwrap_or(1.0);
    let unet = unet_named.or(positional.get(1).copied()).unwrap_or(te);
    Some(LoraRef { name, weight: unet, text_encoder_weight: (te != unet).then_some(te) })
}

/// The kinds of weight files the lists show (the server's folders for each: `checkpoints/`,
/// `loras/`, `vae/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsKind {
    Checkpoint,
    Lora,
    Vae,
}

/// Longest name of a merged checkpoint.
pub const MAX_MERGE_NAME: usize = 100;

/// A checkpoint merge as the Models page and `POST /api/v1/models/merge` ask for it (A1111's
/// checkpoint merger; `easel models merge` on the command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeSpec {
    /// A, the primary model: a checkpoint file name from the checkpoint list.
    pub a: String,
    /// B, the secondary model.
    pub b: String,
    /// C, the base B was trained from (`add-difference` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// `weighted-sum` ((1 - alpha)·A + alpha·B) or `add-difference` (A + alpha·(B - C)).
    #[serde(default = "weighted_sum")]
    pub mode: String,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The new file's name, written as `checkpoints/NAME.safetensors`.
    pub name: String,
    #[serde(default)]
    pub overwrite: bool,
}

/// The merge modes, as `MergeSpec::mode` spells them.
pub const MERGE_MODES: [&str; 2] = ["weighted-sum", "add-difference"];

fn weighted_sum() -> String {
    MERGE_MODES[0].to_string()
}

fn default_alpha() -> f64 {
    0.3
}

impl MergeSpec {
    /// Every field that breaks a rule, before any file is looked up.
    pub fn problems(&self) -> Vec<super::FieldError> {
        let mut out = Vec::new();
        let name = self.name.trim();
        let name_ok = !name.is_empty()
            && name.len() <= MAX_MERGE_NAME
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
        if !name_ok {
            out.push(super::FieldError::new(
                "name",
                format!("name {name:?} must be 1 to {MAX_MERGE_NAME} letters, digits, spaces, '-', '_' or '.', not starting with '.'"),
            ));
        }
        if !MERGE_MODES.contains(&self.mode.as_str()) {
            out.push(super::FieldError::new("mode", format!("mode {:?} is not one of {}", self.mode, MERGE_MODES.join(", "))));
        }
        if !self.alpha.is_finite() || !(-1.0..=2.0).contains(&self.alpha) {
            out.push(super::FieldError::new("alpha", format!("alpha {} must be within -1..2 (0 keeps A, 1 gives B)", self.alpha)));
        }
        match (self.mode == MERGE_MODES[1], self.base.as_deref().is_some_and(|b| !b.trim().is_empty())) {
            (true, false) => out.push(super::FieldError::new("base", "add-difference needs the base model C")),
            (false, true) => out.push(super::FieldError::new("base", "a weighted sum takes no base model; choose add-difference")),
            _ => {}
        }
        for (field, value) in [("a", &self.a), ("b", &self.b)] {
            if value.trim().is_empty() {
                out.push(super::FieldError::new(field, format!("choose checkpoint {}", field.to_uppercase())));
            }
        }
        out
    }

    /// The output file name.
    pub fn file_name(&self) -> String {
        format!("{}.safetensors", self.name.trim())
    }
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeOutcome {
    /// The new checkpoint's name (what `model` takes).
    pub name: String,
    pub size_bytes: u64,
    pub tensors: usize,
    pub merged: usize,
    pub seconds: f64,
}

/// A LoRA or VAE file as the lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsFileView {
    /// What `loras[].name` / `vae` take: the path in its folder (`style/ink.safetensors`).
    pub name: String,
    pub size_bytes: u64,
    /// In an extra models dir (another tool's folder, never changed by Easel).
    pub read_only: bool,
    /// The hash A1111 shows, once known (computed at first use): a LoRA's 12-digit `Lora hashes`
    /// hash, a VAE's 10-digit short hash.
    #[serde(default)]
    pub hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(name: &str, weight: f32, te: Option<f32>) -> LoraRef {
        LoraRef { name: name.into(), weight, text_encoder_weight: te }
    }

    #[test]
    fn tags_are_removed_and_loras_read_as_a1111_reads_them() {
        let (text, loras, bad) =
            extra_network_tags("a cat <lora:ink:0.8>, <lora:style/soft>, <lora:x:0.5:1.5> <hypernet:h:1> <lyco:y:te=0.2>");
        assert_eq!(text, "a cat , ,   ");
        assert_eq!(loras, vec![lora("ink", 0.8, None), lora("style/soft", 1.0, None), lora("x", 1.5, Some(0.5)), lora("y", 0.2, None)]);
        assert!(bad.is_empty());
        let (text, loras, bad) = extra_network_tags("a < b and <notatag> and <lora:bad:abc> and <lora:>");
        assert_eq!(text, "a < b and <notatag> and  and <lora:>");
        assert!(loras.is_empty());
        assert_eq!(bad, vec!["<lora:bad:abc>".to_string()]);
    }

    #[test]
    fn refs_outside_the_limits_are_refused() {
        assert!(lora("ink", 0.8, None).problem().is_none());
        assert!(lora("", 0.8, None).problem().is_some());
        assert!(lora("ink", 11.0, None).problem().is_some());
        assert!(lora("ink", 1.0, Some(f32::NAN)).problem().is_some());
    }
}
