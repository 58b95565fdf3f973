//! Owns the weight-free template graphs compiled into the binary (`models/templates/<arch>/<graph>/`,
//! made by `sdtool template`), which architecture a checkpoint needs, and the parts every SD 1.x
//! checkpoint shares but does not carry: the CLIP tokenizer and the scheduler config.
//!
//! Compiled in (about 8 MB) so a checkpoint runs with the `easel` binary alone: no Python, no
//! templates folder to install.

use super::checkpoint::{CheckpointError, CheckpointKind, TemplateWeights};

/// One graph of a template: the ONNX bytes (initializers declared external) and its `weights.json`.
pub struct TemplateGraph {
    pub arch: &'static str,
    pub graph: &'static str,
    pub onnx: &'static [u8],
    weights_json: &'static str,
}

impl TemplateGraph {
    /// The initializer map (parsed on each call: a few hundred KB, once per session created).
    pub fn weights(&self) -> Result<TemplateWeights, CheckpointError> {
        serde_json::from_str(self.weights_json).map_err(|e| CheckpointError::Template { path: self.label().into(), message: e.to_string() })
    }

    /// `templates/sd15/unet`, how messages name it.
    pub fn label(&self) -> String {
        format!("templates/{}/{}", self.arch, self.graph)
    }
}

macro_rules! graph {
    ($arch:literal, $graph:literal) => {
        TemplateGraph {
            arch: $arch,
            graph: $graph,
            onnx: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/templates/", $arch, "/", $graph, "/model.onnx")),
            weights_json: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/templates/", $arch, "/", $graph, "/weights.json")),
        }
    };
}

/// Every graph of one architecture.
pub struct Template {
    pub arch: &'static str,
    /// The UNet's cross-attention width, which tells the architectures apart.
    pub context_dim: usize,
    pub text_encoder: TemplateGraph,
    pub unet: TemplateGraph,
    pub unet_inpaint: TemplateGraph,
    pub vae_encoder: TemplateGraph,
    pub vae_decoder: TemplateGraph,
}

impl Template {
    /// The UNet graph for a UNet with `in_channels` inputs (9: inpainting).
    pub fn unet_for(&self, in_channels: usize) -> &TemplateGraph {
        if in_channels == 9 {
            &self.unet_inpaint
        } else {
            &self.unet
        }
    }

    /// The text encoder's hidden size (the template's own record).
    pub fn text_hidden(&self) -> usize {
        self.text_encoder.weights().ok().and_then(|w| w.architecture["hidden_size"].as_u64()).map_or(768, |h| h as usize)
    }
}

/// SD 1.5 (full size) and the tiny test architecture (same graph, small widths).
pub static TEMPLATES: [Template; 2] = [
    Template {
        arch: "sd15",
        context_dim: 768,
        text_encoder: graph!("sd15", "text_encoder"),
        unet: graph!("sd15", "unet"),
        unet_inpaint: graph!("sd15", "unet_inpaint"),
        vae_encoder: graph!("sd15", "vae_encoder"),
        vae_decoder: graph!("sd15", "vae_decoder"),
    },
    Template {
        arch: "tiny",
        context_dim: 32,
        text_encoder: graph!("tiny", "text_encoder"),
        unet: graph!("tiny", "unet"),
        unet_inpaint: graph!("tiny", "unet_inpaint"),
        vae_encoder: graph!("tiny", "vae_encoder"),
        vae_decoder: graph!("tiny", "vae_decoder"),
    },
];

/// The template a checkpoint of this kind fills; `None` for kinds Easel cannot run.
pub fn for_kind(kind: &CheckpointKind) -> Option<&'static Template> {
    match kind {
        CheckpointKind::Sd1 { in_channels: 4 | 9, context_dim } => TEMPLATES.iter().find(|t| t.context_dim == *context_dim),
        _ => None,
    }
}

/// SD 1.x's CLIP tokenizer (the bundled tiny model's, which is SD 1.5's: `models/tooling/clip_vocab.py`
/// derives it and its tests check it against open_clip's).
pub const CLIP_TOKENIZER_JSON: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-sd/tokenizer/tokenizer.json"));

/// SD 1.x's CLIP tokenizer, for models that bring none (checkpoint files, weights-only folders).
pub fn sd1_tokenizer() -> Result<super::clip_tokenizer::ClipTokenizer, super::EngineError> {
    super::clip_tokenizer::ClipTokenizer::from_json_bytes(CLIP_TOKENIZER_JSON, std::path::Path::new("templates/tokenizer.json"))
}

/// The scheduler config of SD 1.x checkpoints: the noise schedule of `v1-inference.yaml`
/// (`linear_start` 0.00085, `linear_end` 0.012, 1000 steps, scaled-linear), with PNDM as the
/// default sampler as in the diffusers SD 1.5 repositories.
pub const SD1_SCHEDULER_CONFIG: &str = r#"{
  "_class_name": "PNDMScheduler",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null,
  "clip_sample": false
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_template_parses_and_matches_its_architecture() {
        for t in &TEMPLATES {
            for g in [&t.text_encoder, &t.unet, &t.unet_inpaint, &t.vae_encoder, &t.vae_decoder] {
                let w = g.weights().unwrap();
                assert!(g.graph.starts_with(&w.graph), "{}", g.label());
                assert!(!w.initializers.is_empty() && g.onnx.len() > 10_000, "{}", g.label());
            }
            assert_eq!(t.unet_inpaint.weights().unwrap().architecture["in_channels"], 9);
        }
        assert_eq!(for_kind(&CheckpointKind::Sd1 { in_channels: 9, context_dim: 768 }).unwrap().arch, "sd15");
        assert_eq!(for_kind(&CheckpointKind::Sd1 { in_channels: 4, context_dim: 32 }).unwrap().text_hidden(), 32);
        assert!(for_kind(&CheckpointKind::Sd2).is_none());
        assert!(for_kind(&CheckpointKind::Sd1 { in_channels: 4, context_dim: 1280 }).is_none());
    }
}
