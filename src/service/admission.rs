//! What the server admits before a job is queued: the largest image a generation may make on
//! this machine with this model (by memory), and how many jobs may wait.
//!
//! The memory model is calibrated on SD 1.5 in fp32 on ONNX Runtime's CPU provider (numbers in
//! docs/benchmarks.md): peak = the model's weights + the larger of two stages, both per image
//! because the UNet runs big batches in slices and the VAE decodes one image at a time:
//! - the UNet's self-attention, whose score matrices hold positions² floats per head (8 heads,
//!   scores and softmax): [`ATTENTION_BYTES`] per position², positions = pixels / 64;
//! - everything that grows with the pixels (the VAE decoder's full-size activations dominate):
//!   [`PIXEL_BYTES`] per pixel.
//!
//! Measured peaks against this estimate: 256² 5.0 GB (6.2), 512² 10.3 GB (11.0), hires to 768²
//! 18.9 GB (19.1), 1024² killed above 24.3 GB (30.4). Smaller models are over-estimated, which
//! only refuses sizes they might have run; `--max-pixels` replaces the estimate.

use crate::api::{FieldError, GenerationSettings};

/// Bytes per output pixel held by the pixel-sized stage (VAE decode at full size).
pub const PIXEL_BYTES: f64 = 24.0 * 1024.0;
/// Bytes per latent position² held by the UNet's naive self-attention (8 heads, f32, x2).
pub const ATTENTION_BYTES: f64 = 64.0;
/// Share of the machine's memory a generation may plan to use (the rest: the OS, the server).
pub const MEMORY_SHARE: f64 = 0.9;
/// Seconds a client told "queue full" is asked to wait before trying again.
pub const QUEUE_FULL_RETRY_AFTER_S: u64 = 30;
/// Seconds a client told "too many pulls" is asked to wait.
pub const PULLS_BUSY_RETRY_AFTER_S: u64 = 60;

/// Peak bytes a generation of `pixels`-pixel images needs beyond the model's weights.
pub fn working_bytes(pixels: u64) -> f64 {
    let positions = pixels as f64 / 64.0;
    (PIXEL_BYTES * pixels as f64).max(ATTENTION_BYTES * positions * positions)
}

/// The largest image (in pixels) whose [`working_bytes`] fit in `total_memory` with a model of
/// `model_bytes` loaded; 0 when the model alone does not fit.
pub fn derived_max_pixels(total_memory: u64, model_bytes: u64) -> u64 {
    let room = total_memory as f64 * MEMORY_SHARE - model_bytes as f64;
    if room <= 0.0 {
        return 0;
    }
    // Both terms grow with the pixels, so the bound is the smaller of the two solutions.
    let by_pixels = room / PIXEL_BYTES;
    let by_attention = 64.0 * (room / ATTENTION_BYTES).sqrt();
    by_pixels.min(by_attention) as u64
}

/// The pixels of the largest picture the generation works on (the hires pass's target, or the
/// outpainting canvas, which `width` x `height` already is).
pub fn largest_pass_pixels(settings: &GenerationSettings) -> u64 {
    let (w, h) = settings.output_size();
    u64::from(w) * u64::from(h)
}

/// Where the pixel limit came from, for the message that names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelLimit {
    /// `--max-pixels` (or `max_pixels` in easel.toml, `EASEL_MAX_PIXELS`).
    Configured(u64),
    /// Derived from the memory the server may use and the model's size.
    Derived { max_pixels: u64, total_memory: u64, model_bytes: u64 },
}

impl PixelLimit {
    /// The configured limit, else the one derived from the memory (none when it is unknown).
    pub fn new(configured: Option<u64>, total_memory: Option<u64>, model_bytes: u64) -> Option<Self> {
        match (configured, total_memory) {
            (Some(max), _) => Some(PixelLimit::Configured(max)),
            (None, Some(total)) => {
                Some(PixelLimit::Derived { max_pixels: derived_max_pixels(total, model_bytes), total_memory: total, model_bytes })
            }
            (None, None) => None,
        }
    }

    pub fn max_pixels(self) -> u64 {
        match self {
            PixelLimit::Configured(max) | PixelLimit::Derived { max_pixels: max, .. } => max,
        }
    }

    /// A field error when `settings` makes a larger picture than the limit allows.
    pub fn check(self, settings: &GenerationSettings) -> Option<FieldError> {
        let pixels = largest_pass_pixels(settings);
        let max = self.max_pixels();
        if pixels <= max {
            return None;
        }
        let (w, h) = settings.output_size();
        let field = if settings.hires.is_some() { "hires.scale" } else { "width" };
        let why = match self {
            PixelLimit::Configured(_) => "the server's --max-pixels".to_string(),
            PixelLimit::Derived { total_memory, model_bytes, .. } => format!(
                "what fits in the {:.1} GB of memory this server may use (the machine's, or its cgroup's or address-space \
                 limit) with the model's {:.1} GB (about {:.1} GB for {w}x{h}); --max-pixels overrides the estimate",
                total_memory as f64 / 1e9,
                model_bytes as f64 / 1e9,
                (model_bytes as f64 + working_bytes(pixels)) / 1e9
            ),
        };
        let side = (max as f64).sqrt() as u64 / 8 * 8;
        Some(FieldError::new(
            field,
            format!("{w}x{h} is {pixels} pixels; this server makes pictures of at most {max} pixels (about {side}x{side}), {why}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GenerateRequest;

    const GB: u64 = 1_000_000_000;

    fn settings(json: serde_json::Value) -> GenerationSettings {
        serde_json::from_value::<GenerateRequest>(json).unwrap().resolve(|| 1).unwrap()
    }

    #[test]
    fn on_24_gib_with_sd15_512_and_a_768_hires_fit_and_1024_does_not() {
        let (total, model) = (24 * 1024 * 1024 * 1024, 4_570_000_000);
        let limit = PixelLimit::new(None, Some(total), model).unwrap();
        for ok in [
            serde_json::json!({"prompt": "", "width": 512, "height": 512, "batch_size": 8}),
            serde_json::json!({"prompt": "", "width": 512, "height": 512, "hires": {"scale": 1.5}}),
        ] {
            assert_eq!(limit.check(&settings(ok)), None);
        }
        let big = limit.check(&settings(serde_json::json!({"prompt": "", "width": 1024, "height": 1024}))).unwrap();
        assert_eq!(big.field, "width");
        assert!(big.message.contains("1024x1024 is 1048576 pixels") && big.message.contains("--max-pixels"), "{}", big.message);
        let hires =
            limit.check(&settings(serde_json::json!({"prompt": "", "width": 512, "height": 512, "hires": {"scale": 2.0}}))).unwrap();
        assert_eq!(hires.field, "hires.scale");
        // The estimate at the calibration points is at or above what was measured.
        for (pixels, measured) in [(256 * 256, 5.01), (512 * 512, 10.33), (768 * 768, 18.90)] {
            let estimate = (model as f64 + working_bytes(pixels)) / GB as f64;
            assert!(estimate >= measured && estimate < measured * 1.25, "{pixels}: {estimate} vs {measured}");
        }
    }

    #[test]
    fn a_configured_limit_replaces_the_estimate_and_no_memory_figure_means_no_limit() {
        let limit = PixelLimit::new(Some(64 * 64), Some(GB), 0).unwrap();
        let refused = limit.check(&settings(serde_json::json!({"prompt": "", "width": 64, "height": 72}))).unwrap();
        assert!(refused.message.contains("--max-pixels"), "{}", refused.message);
        assert_eq!(limit.check(&settings(serde_json::json!({"prompt": "", "width": 64, "height": 64}))), None);
        assert_eq!(PixelLimit::new(None, None, 0), None);
        assert_eq!(derived_max_pixels(GB, 2 * GB), 0);
    }
}
