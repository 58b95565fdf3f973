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

/// A LoRA or VAE file as the lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsFileView {
    /// What `loras[].name` / `vae` take: the path in its folder (`style/ink.safetensors`).
    pub name: String,
    pub size_bytes: u64,
    /// In an extra models dir (another tool's folder, never changed by Easel).
    pub read_only: bool,
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
