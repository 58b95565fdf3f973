//! What a user asks for when generating, and the rules it must satisfy.
//!
//! Shared by every door into Easel (CLI, REST API, server functions, the browser form), so the
//! same request is valid or invalid everywhere, with the same field-level messages. Plain data:
//! compiled for the server and for wasm.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compat::{NoiseFields, NoiseSettings};
use super::conditioning::Conditioning;
use super::image_modes::{Hires, HiresRequest, ImageFields, InpaintArea, MaskedContent, Outpaint, Upscaler};
use super::networks::{extra_network_tags, LoraRef, MAX_LORAS, MODEL_OWN_VAE};
use super::prompt::{default_clip_skip, recorded_prompt_syntax, PromptSyntax, MAX_CLIP_SKIP};
use super::sampler::{Sampler, Schedule};
use super::sampling_range::{SamplingRange, SamplingRangeRequest};
use super::stages::{Stage, StageDefaults, StageRequest, MAX_STAGES};
use super::vae_tiling::{recorded_vae_tiling, VaeTiling};

pub const DEFAULT_STEPS: u32 = 20;
pub const DEFAULT_CFG_SCALE: f32 = 7.0;
pub const DEFAULT_SIZE: u32 = 512;
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const MAX_STEPS: u32 = 150;
/// Longest schedule a low strength may stretch: ComfyUI's denoise and A1111's hires pass walk the
/// tail of a schedule of steps / strength.
pub const MAX_SCHEDULE_STEPS: u32 = 10_000;
pub const MAX_CFG_SCALE: f32 = 30.0;
pub const MAX_BATCH_SIZE: u32 = 8;
/// ComfyUI's largest `LatentFromBatch` index.
pub const MAX_BATCH_INDEX: u32 = 63;
/// Most prompts combined with the prompt (`combined_prompts`): the positive entries after it.
pub const MAX_COMBINED_PROMPTS: usize = super::conditioning::MAX_CONDITIONING_ENTRIES - 1;
/// Longest prompt accepted, in characters (about 30 chunks of 75 tokens; guards memory and time).
pub const MAX_PROMPT_CHARS: usize = 10_000;
/// Most extra PNG text chunks, and their total size in bytes (a large ComfyUI workflow fits).
pub const MAX_PNG_TEXT_CHUNKS: usize = 4;
pub const MAX_PNG_TEXT_BYTES: usize = 2 << 20;
/// PNG text keywords Easel writes itself, so a request cannot replace them.
pub const RESERVED_PNG_TEXT: [&str; 2] = ["parameters", "easel"];

/// A generation request as it arrives: every setting optional, defaults filled by [`resolve`].
/// Without `init_image` it is text-to-image; with it image-to-image, inpainting (`mask`) or
/// outpainting (`outpaint`); `hires` adds a second, larger pass to text-to-image.
///
/// [`resolve`]: GenerateRequest::resolve
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Seed of the torch-compatible noise generator; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub cfg_scale: Option<f32>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// A [`Sampler`] name; parsed by [`GenerateRequest::resolve`] so a bad one is a field error.
    #[serde(default)]
    pub sampler: Option<String>,
    /// A [`Schedule`] name; when absent, the sampler's [`Sampler::default_schedule`].
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// A model name from the model list; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Image to start from: an upload id or a gallery image id. It sets width and height when
    /// they are absent; otherwise it is resized to them.
    #[serde(default)]
    pub init_image: Option<String>,
    /// Inpainting mask (an image id): white is repainted, black kept; grey is binarised at 50%.
    #[serde(default)]
    pub mask: Option<String>,
    /// Blur of the mask in pixels before it is binarised [default: 4 with a mask].
    #[serde(default)]
    pub mask_blur: Option<u32>,
    /// How much of the init image is repainted, in (0, 1] [default: 0.75].
    #[serde(default)]
    pub strength: Option<f64>,
    /// Extend the init image by these pixels per side and paint the new area.
    #[serde(default)]
    pub outpaint: Option<Outpaint>,
    /// Hires fix: refine the text-to-image result at a larger size.
    #[serde(default)]
    pub hires: Option<HiresRequest>,
    /// A [`PromptSyntax`] name [default: a1111].
    #[serde(default)]
    pub prompt_syntax: Option<String>,
    /// CLIP skip, A1111's count: 1 = the last layer, 2 = the one before [default: 1].
    #[serde(default)]
    pub clip_skip: Option<u32>,
    /// LoRAs to apply, each with its weight (in the `a1111` syntax, `<lora:NAME:W>` tags in the
    /// prompt add to these).
    #[serde(default)]
    pub loras: Option<Vec<LoraRef>>,
    /// A VAE name from the VAE list to use instead of the model's own (`automatic`: the model's).
    #[serde(default)]
    pub vae: Option<String>,
    /// A [`super::Compat`] name: whose noise the generation follows [default: diffusers].
    #[serde(default)]
    pub compat: Option<String>,
    /// AUTOMATIC1111's noise source, `nv` (its default GPU noise) or `cpu` (compat a1111 only).
    #[serde(default)]
    pub randn_source: Option<String>,
    /// Variation seed (compat a1111 only).
    #[serde(default)]
    pub subseed: Option<u64>,
    /// How much of the variation seed's noise to mix in, 0..1.
    #[serde(default)]
    pub subseed_strength: Option<f64>,
    /// "Resize seed from" width in pixels (compat a1111 only; 0 = off).
    #[serde(default)]
    pub seed_resize_from_w: Option<u32>,
    /// "Resize seed from" height in pixels.
    #[serde(default)]
    pub seed_resize_from_h: Option<u32>,
    /// Eta noise seed delta (compat a1111 only).
    #[serde(default)]
    pub eta_noise_seed_delta: Option<u64>,
    /// Extra text chunks (keyword -> text) written into every image, as ComfyUI writes a graph's
    /// `prompt` and `workflow`; without them Easel writes its own `prompt` graph.
    #[serde(default)]
    pub png_text: Option<BTreeMap<String, String>>,
    /// A [`VaeTiling`] name: decode and encode large pictures in tiles [default: auto, which
    /// tiles above 512x512 in the diffusers compat mode].
    #[serde(default)]
    pub vae_tiling: Option<String>,
    /// ComfyUI's `KSamplerAdvanced` window (compat comfyui): run only some of the steps, with or
    /// without fresh noise, keeping the leftover noise or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_range: Option<SamplingRangeRequest>,
    /// The later `KSamplerAdvanced` nodes of a ComfyUI chain (compat comfyui, after
    /// `sampling_range`): each runs over the latents the one before left, with its own window and
    /// (default: the request's) seed, steps, CFG, sampler, schedule and prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageRequest>>,
    /// A [`MaskedContent`] name: what the masked part of the init image holds when it is encoded
    /// [default: original; grey is ComfyUI's `VAEEncodeForInpaint`, compat comfyui; fill,
    /// latent_noise and latent_nothing are A1111's, compat a1111].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_content: Option<String>,
    /// Pixels the mask grows by before it masks the latents, with masked_content grey (ComfyUI's
    /// `grow_mask_by`) [default: 0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_grow: Option<u32>,
    /// An [`InpaintArea`] name: inpaint the whole picture, or only the mask's area at the
    /// request's size, pasted back into the picture at its own size (A1111's "Only masked",
    /// compat a1111) [default: whole].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inpaint_area: Option<String>,
    /// Pixels added around the mask's area with inpaint_area only_masked (A1111's "Masked area
    /// padding") [default: 32].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inpaint_padding: Option<u32>,
    /// Compat comfyui, text-to-image: the images from this index on of a larger batch (ComfyUI's
    /// `LatentFromBatch`): their start noise, drawn one image at a time as ComfyUI does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_index: Option<u32>,
    /// Compat comfyui, prompt syntax comfyui: more positive prompts combined with `prompt`
    /// (ComfyUI's `ConditioningCombine`: each runs through the UNet and their predictions are
    /// averaged before guidance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_prompts: Option<Vec<String>>,
    /// Compat comfyui, prompt syntax comfyui: the positive and negative conditioning lists
    /// ComfyUI's Conditioning nodes build (combine, concat, average, areas; see
    /// [`Conditioning`]). The UNet then sees these instead of `prompt` and `negative_prompt`
    /// (which stay the images' captions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditioning: Option<Conditioning>,
}

/// A request with every default applied and every rule checked: what the engine runs and what is
/// recorded with the images, so the same settings reproduce the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub prompt: String,
    pub negative_prompt: String,
    pub seed: u64,
    pub steps: u32,
    pub cfg_scale: f32,
    pub width: u32,
    pub height: u32,
    pub sampler: Sampler,
    pub schedule: Schedule,
    pub batch_size: u32,
    pub model: Option<String>,
    /// The upload id of the init image (image-to-image modes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    /// The upload id of the inpainting mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// Mask blur in pixels (with a mask or outpainting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_blur: Option<u32>,
    /// Denoising strength (with an init image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// Outpainting: `width` x `height` is the canvas *after* extension; the init image is
    /// resized to the canvas minus the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpaint: Option<Outpaint>,
    /// Hires fix: `width` x `height` is the first pass; the images come out at
    /// [`Hires::target_size`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hires: Option<Hires>,
    /// How the prompts are read (jobs recorded before this field ran as `plain`).
    #[serde(default = "recorded_prompt_syntax")]
    pub prompt_syntax: PromptSyntax,
    /// CLIP skip (1 = last layer).
    #[serde(default = "default_clip_skip")]
    pub clip_skip: u32,
    /// LoRAs from the `loras` field (the prompt's `<lora:…>` tags are read from the prompt, see
    /// [`GenerationSettings::all_loras`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRef>,
    /// The VAE used instead of the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<String>,
    /// Whose noise this generation follows, and A1111's seed settings (jobs recorded before
    /// compat modes ran as diffusers).
    #[serde(default, flatten)]
    pub noise: NoiseSettings,
    /// Extra PNG text chunks, keyword -> text (see [`GenerateRequest::png_text`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub png_text: BTreeMap<String, String>,
    /// Whether the VAE ran in tiles (always recorded; images from before the setting: `off`).
    #[serde(default = "recorded_vae_tiling")]
    pub vae_tiling: VaeTiling,
    /// ComfyUI's `KSamplerAdvanced` window (see [`GenerateRequest::sampling_range`]); none for
    /// the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_range: Option<SamplingRange>,
    /// The later samplers of a ComfyUI `KSamplerAdvanced` chain (see [`GenerateRequest::stages`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// What the masked part of the init image held when it was encoded.
    #[serde(default, skip_serializing_if = "MaskedContent::is_original")]
    pub masked_content: MaskedContent,
    /// Pixels the mask grew by (with [`MaskedContent::Grey`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mask_grow: u32,
    /// Which part of the picture was inpainted (compat a1111).
    #[serde(default, skip_serializing_if = "InpaintArea::is_whole")]
    pub inpaint_area: InpaintArea,
    /// Pixels around the mask's area (with [`InpaintArea::OnlyMasked`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inpaint_padding: u32,
    /// The first image's index in a larger batch (see [`GenerateRequest::batch_index`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_index: Option<u32>,
    /// Positive prompts combined with `prompt` (see [`GenerateRequest::combined_prompts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub combined_prompts: Vec<String>,
    /// ComfyUI's conditioning lists (see [`GenerateRequest::conditioning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditioning: Option<Conditioning>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl GenerationSettings {
    /// The size of the images this generation produces.
    pub fn output_size(&self) -> (u32, u32) {
        match &self.hires {
            Some(h) => h.target_size(self.width, self.height),
            None => (self.width, self.height),
        }
    }

    /// Every LoRA this generation applies: the `loras` field, then the prompt's `<lora:…>` tags
    /// (`a1111` syntax only).
    pub fn all_loras(&self) -> Vec<LoraRef> {
        let mut all = self.loras.clone();
        if self.prompt_syntax == PromptSyntax::A1111 {
            all.extend(extra_network_tags(&self.prompt).1);
        }
        all
    }

    /// The size the init image is resized to before it is used (the canvas minus any outpaint).
    pub fn init_size(&self) -> (u32, u32) {
        let o = self.outpaint.unwrap_or_default();
        (self.width - o.left - o.right, self.height - o.top - o.bottom)
    }
}

/// One problem with one field, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_string(), message: message.into() }
    }
}

fn check_size(field: &str, value: u32, errors: &mut Vec<FieldError>) {
    if !(MIN_SIZE..=MAX_SIZE).contains(&value) {
        errors.push(FieldError::new(field, format!("{field} {value} is outside {MIN_SIZE}..{MAX_SIZE}")));
    } else if !value.is_multiple_of(8) {
        let down = value / 8 * 8;
        let up = down + 8;
        let suggestion = if down >= MIN_SIZE { format!("{down} or {up}") } else { up.to_string() };
        errors.push(FieldError::new(field, format!("{field} {value} is not a multiple of 8; use {suggestion}")));
    }
}

/// The request's extra PNG text chunks, each keyword 1..79 printable ASCII characters (PNG's
/// rule, narrowed), none of Easel's own, within [`MAX_PNG_TEXT_CHUNKS`] and [`MAX_PNG_TEXT_BYTES`].
fn check_png_text(given: Option<&BTreeMap<String, String>>, errors: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    let Some(given) = given else { return BTreeMap::new() };
    let before = errors.len();
    if given.len() > MAX_PNG_TEXT_CHUNKS {
        errors.push(FieldError::new("png_text", format!("png_text has {} chunks; at most {MAX_PNG_TEXT_CHUNKS}", given.len())));
    }
    let total: usize = given.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_PNG_TEXT_BYTES {
        errors.push(FieldError::new("png_text", format!("png_text holds {total} bytes; at most {MAX_PNG_TEXT_BYTES}")));
    }
    for key in given.keys() {
        let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b) || b == b' ');
        if key.is_empty() || key.len() > 79 || !printable || key.starts_with(' ') || key.ends_with(' ') {
            errors.push(FieldError::new("png_text", format!("png_text keyword {key:?} must be 1..79 printable ASCII characters")));
        } else if RESERVED_PNG_TEXT.contains(&key.as_str()) {
            errors.push(FieldError::new("png_text", format!("png_text keyword {key:?} is written by Easel; use another")));
        }
    }
    if errors.len() > before {
        return BTreeMap::new();
    }
    given.clone()
}

impl GenerateRequest {
    /// Applies defaults and checks every rule. `random_seed` supplies the seed when none is given
    /// (the caller decides where randomness comes from). All problems are reported, not just the first.
    pub fn resolve(&self, random_seed: impl Fn() -> u64) -> Result<GenerationSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.prompt.chars().count() > MAX_PROMPT_CHARS {
            errors.push(FieldError::new("prompt", format!("prompt is longer than {MAX_PROMPT_CHARS} characters")));
        }
        let negative_prompt = self.negative_prompt.clone().unwrap_or_default();
        if negative_prompt.chars().count() > MAX_PROMPT_CHARS {
            errors.push(FieldError::new("negative_prompt", format!("negative prompt is longer than {MAX_PROMPT_CHARS} characters")));
        }
        let steps = self.steps.unwrap_or(DEFAULT_STEPS);
        if !(1..=MAX_STEPS).contains(&steps) {
            errors.push(FieldError::new("steps", format!("steps {steps} is outside 1..{MAX_STEPS}")));
        }
        let cfg_scale = self.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE);
        if !cfg_scale.is_finite() || !(0.0..=MAX_CFG_SCALE).contains(&cfg_scale) {
            errors.push(FieldError::new("cfg_scale", format!("cfg_scale {cfg_scale} is outside 0..{MAX_CFG_SCALE}")));
        }
        let mut images = ImageFields {
            init_image: self.init_image.as_deref(),
            mask: self.mask.as_deref(),
            mask_blur: self.mask_blur,
            strength: self.strength,
            outpaint: self.outpaint.as_ref(),
            hires: self.hires.as_ref(),
            masked_content: self.masked_content.as_deref(),
            mask_grow: self.mask_grow,
            inpaint_area: self.inpaint_area.as_deref(),
            inpaint_padding: self.inpaint_padding,
        }
        .resolve(MAX_STEPS, &mut errors);
        let mut width = self.width.unwrap_or(DEFAULT_SIZE);
        let mut height = self.height.unwrap_or(DEFAULT_SIZE);
        check_size("width", width, &mut errors);
        check_size("height", height, &mut errors);
        if let Some(o) = &images.outpaint {
            // The request's size is the picture's; the canvas grows around it.
            width += o.left + o.right;
            height += o.top + o.bottom;
            for (field, side) in [("width", width), ("height", height)] {
                if side > MAX_SIZE {
                    errors.push(FieldError::new("outpaint", format!("outpainting makes the {field} {side}, over {MAX_SIZE}; extend less")));
                }
            }
        }
        if let Some(h) = &images.hires {
            let (w, hh) = h.target_size(width, height);
            if w > MAX_SIZE || hh > MAX_SIZE || w < MIN_SIZE || hh < MIN_SIZE {
                errors.push(FieldError::new(
                    "hires.scale",
                    format!("hires.scale {} makes {w}x{hh}; each side must stay within {MIN_SIZE}..{MAX_SIZE}", h.scale),
                ));
            }
        }
        let batch_size = self.batch_size.unwrap_or(1);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            errors.push(FieldError::new("batch_size", format!("batch_size {batch_size} is outside 1..{MAX_BATCH_SIZE}")));
        }
        let noise = NoiseFields {
            compat: self.compat.as_deref(),
            randn_source: self.randn_source.as_deref(),
            subseed: self.subseed,
            subseed_strength: self.subseed_strength,
            seed_resize_from_w: self.seed_resize_from_w,
            seed_resize_from_h: self.seed_resize_from_h,
            eta_noise_seed_delta: self.eta_noise_seed_delta,
        }
        .resolve(&random_seed, &mut errors);
        let compat = noise.compat;
        // What the a1111 and comfyui modes run so far: text-to-image, with the hires fix, and
        // image-to-image (A1111's denoising strength, ComfyUI's KSampler denoise below 1, over the
        // VAE's latents), and in comfyui a mask over the latents (SetLatentNoiseMask).
        let unsupported = match compat {
            super::Compat::Diffusers => None,
            _ if self.outpaint.is_some() => Some("outpainting"),
            _ => None,
        };
        if let Some(what) = unsupported {
            errors.push(FieldError::new("compat", format!("compat {compat} does not run {what} yet; use compat diffusers")));
        }
        // ComfyUI's image-to-image and both tools' hires passes run their steps out of a schedule
        // of steps / strength: a tiny strength would ask for billions of sigmas.
        let stretched = [
            ("strength", images.strength.filter(|_| compat == super::Compat::ComfyUi), steps),
            (
                "hires.strength",
                images.hires.filter(|_| compat != super::Compat::Diffusers).map(|h| h.strength),
                images.hires.map_or(steps, |h| h.steps_or(steps)),
            ),
        ];
        for (field, strength, steps) in stretched {
            if let Some(strength) = strength.filter(|s| *s < 1.0 && f64::from(steps) / s.min(0.999) > f64::from(MAX_SCHEDULE_STEPS)) {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "{field} {strength} with {steps} steps walks the end of a {}-step schedule; at most {MAX_SCHEDULE_STEPS}: raise it or use fewer steps",
                        (f64::from(steps) / strength.min(0.999)) as u64
                    ),
                ));
            }
        }
        // ComfyUI's latent noise mask is used as it is: no blur.
        if compat == super::Compat::ComfyUi && self.mask.is_some() {
            match self.mask_blur {
                Some(blur) if blur != 0 => errors.push(FieldError::new(
                    "mask_blur",
                    format!("compat comfyui uses the mask as it is (SetLatentNoiseMask); send mask_blur 0 or leave it out, not {blur}"),
                )),
                _ => images.mask_blur = Some(0),
            }
        }
        // ComfyUI's hires fix is its two-pass graph: a latent upscale between two KSamplers;
        // A1111's runs here with its latent upscalers and Lanczos.
        if let Some(h) = &images.hires {
            let runs = match compat {
                super::Compat::Diffusers => true,
                super::Compat::A1111 => h.upscaler.in_a1111(),
                super::Compat::ComfyUi => h.upscaler.comfyui_method().is_some(),
            };
            if !runs {
                let names: Vec<&str> = Upscaler::ALL
                    .into_iter()
                    .filter(|u| if compat == super::Compat::A1111 { u.in_a1111() } else { u.comfyui_method().is_some() })
                    .map(Upscaler::name)
                    .collect();
                errors.push(FieldError::new(
                    "hires.upscaler",
                    format!(
                        "compat {compat}'s hires fix has no {} upscaler; use one of {} (or compat diffusers)",
                        h.upscaler,
                        names.join(", ")
                    ),
                ));
            }
            // A1111 upscales the picture to int(side · scale) pixels, which only multiples of 8
            // keep equal to the latents both passes run at.
            let whole = |side: u32| ((f64::from(side) * h.scale) as u32).is_multiple_of(8);
            if compat == super::Compat::A1111 && !h.upscaler.is_latent() && !(whole(width) && whole(height)) {
                errors.push(FieldError::new(
                    "hires.scale",
                    format!(
                        "A1111's picture upscaler makes a {}x{} picture, not a multiple of 8; choose a scale that gives one",
                        (f64::from(width) * h.scale) as u32,
                        (f64::from(height) * h.scale) as u32
                    ),
                ));
            }
            if h.seed.is_some() && compat != super::Compat::ComfyUi {
                errors.push(FieldError::new(
                    "hires.seed",
                    format!("hires.seed is the second KSampler's seed in compat comfyui; compat {compat} reuses the request's seed"),
                ));
            }
            if compat == super::Compat::ComfyUi && self.sampling_range.is_some() {
                errors.push(FieldError::new("sampling_range", "compat comfyui runs sampling_range or the hires fix, not both"));
            }
        }
        if let Some(index) = self.batch_index {
            if compat != super::Compat::ComfyUi {
                errors.push(FieldError::new(
                    "batch_index",
                    format!("batch_index is ComfyUI's LatentFromBatch and runs in compat comfyui only, not {compat}"),
                ));
            } else if index > MAX_BATCH_INDEX {
                errors.push(FieldError::new("batch_index", format!("batch_index {index} is outside 0..{MAX_BATCH_INDEX}")));
            } else if self.init_image.is_some() {
                errors.push(FieldError::new("batch_index", "batch_index picks images of an empty latent batch; drop it or init_image"));
            }
        }
        if images.masked_content == MaskedContent::Grey && compat != super::Compat::ComfyUi {
            errors.push(FieldError::new(
                "masked_content",
                format!("masked_content grey is ComfyUI's VAEEncodeForInpaint and runs in compat comfyui only, not {compat}"),
            ));
        }
        if images.masked_content.is_a1111_only() && compat != super::Compat::A1111 {
            errors.push(FieldError::new(
                "masked_content",
                format!(
                    "masked_content {} is A1111's inpainting fill and runs in compat a1111 only, not {compat}",
                    images.masked_content.name()
                ),
            ));
        }
        if !images.inpaint_area.is_whole() && compat != super::Compat::A1111 {
            errors.push(FieldError::new(
                "inpaint_area",
                format!("inpaint_area only_masked is A1111's \"Only masked\" and runs in compat a1111 only, not {compat}"),
            ));
        }
        let sampler = match self.sampler.as_deref() {
            None => Some(Sampler::DEFAULT),
            Some(name) => Sampler::parse(name).or_else(|| {
                errors.push(FieldError::new("sampler", format!("unknown sampler {name:?}; use one of {}", Sampler::names_in(compat))));
                None
            }),
        };
        if let Some(sampler) = sampler.filter(|s| !s.runs_in(compat)) {
            errors.push(FieldError::new(
                "sampler",
                format!("sampler {sampler} does not run in compat {compat} yet; use one of {}", Sampler::names_in(compat)),
            ));
        }
        let schedule = match self.schedule.as_deref() {
            None => sampler.map(|s| s.default_schedule(compat)),
            Some(name) => Schedule::parse(name).or_else(|| {
                errors.push(FieldError::new("schedule", format!("unknown schedule {name:?}; use one of {}", Schedule::names_in(compat))));
                None
            }),
        };
        match (sampler, schedule) {
            (_, Some(schedule)) if !schedule.runs_in(compat) => errors.push(FieldError::new(
                "schedule",
                format!("compat {compat} has no {schedule} schedule; use one of {}", Schedule::names_in(compat)),
            )),
            (Some(sampler), Some(schedule))
                if compat == super::Compat::A1111 && sampler.a1111_timesteps() && schedule != Schedule::Default =>
            {
                errors.push(FieldError::new(
                    "schedule",
                    format!(
                        "A1111's {} walks the model's own timesteps and takes no schedule; leave the schedule out (default)",
                        sampler.a1111_name()
                    ),
                ))
            }
            (Some(Sampler::Unipc), _) if compat == super::Compat::A1111 && (steps as usize) < super::sampler::A1111_UNIPC_ORDER => errors
                .push(FieldError::new(
                    "steps",
                    format!("A1111's UniPC needs at least {} steps (it fails below that)", super::sampler::A1111_UNIPC_ORDER),
                )),
            // ComfyUI's kl_optimal divides by steps − 1 (one step gives NaN sigmas there).
            (_, Some(Schedule::KlOptimal)) if compat == super::Compat::ComfyUi && steps < 2 => {
                errors.push(FieldError::new("steps", "ComfyUI's kl_optimal schedule needs at least 2 steps"))
            }
            (Some(sampler), Some(Schedule::Karras)) if compat == super::Compat::Diffusers && !sampler.supports_karras() => {
                errors.push(FieldError::new(
                    "schedule",
                    format!("sampler {sampler} has no karras schedule; use default, or one of {}", Sampler::karras_names()),
                ))
            }
            _ => {}
        }
        // ComfyUI's KSamplerAdvanced window: its mode only, and over an init image the whole
        // window runs on the image's latents (the node has no denoise).
        let sampling_range = self.sampling_range.as_ref().and_then(|range| {
            if compat != super::Compat::ComfyUi {
                errors.push(FieldError::new(
                    "sampling_range",
                    format!("sampling_range is ComfyUI's KSamplerAdvanced and runs in compat comfyui only, not {compat}"),
                ));
                return None;
            }
            if self.init_image.is_some() && self.strength != Some(1.0) {
                errors.push(FieldError::new(
                    "strength",
                    "with sampling_range the window runs over the init image's latents (KSamplerAdvanced has no denoise); send strength 1",
                ));
            }
            range.resolve(steps, &mut errors)
        });
        let seed = self.seed.unwrap_or_else(&random_seed);
        let stages = self.resolve_stages(compat, seed, steps, cfg_scale, sampler.zip(schedule), &mut errors);
        let prompt_syntax = match self.prompt_syntax.as_deref() {
            None => Some(PromptSyntax::DEFAULT),
            Some(name) => PromptSyntax::parse(name).or_else(|| {
                errors.push(FieldError::new(
                    "prompt_syntax",
                    format!("unknown prompt_syntax {name:?}; use one of {}", PromptSyntax::names()),
                ));
                None
            }),
        };
        let combined_prompts = self.combined_prompts.clone().unwrap_or_default();
        if !combined_prompts.is_empty() {
            if compat != super::Compat::ComfyUi || prompt_syntax != Some(PromptSyntax::ComfyUi) {
                errors.push(FieldError::new(
                    "combined_prompts",
                    "combined_prompts is ComfyUI's ConditioningCombine: send compat comfyui and prompt_syntax comfyui",
                ));
            }
            if combined_prompts.len() > MAX_COMBINED_PROMPTS {
                errors.push(FieldError::new(
                    "combined_prompts",
                    format!("{} combined prompts; at most {MAX_COMBINED_PROMPTS}", combined_prompts.len()),
                ));
            }
            if combined_prompts.iter().any(|p| p.chars().count() > MAX_PROMPT_CHARS) {
                errors.push(FieldError::new("combined_prompts", format!("a combined prompt is longer than {MAX_PROMPT_CHARS} characters")));
            }
        }
        if let Some(conditioning) = &self.conditioning {
            if compat != super::Compat::ComfyUi || prompt_syntax != Some(PromptSyntax::ComfyUi) {
                errors.push(FieldError::new(
                    "conditioning",
                    "conditioning is what ComfyUI's Conditioning nodes build: send compat comfyui and prompt_syntax comfyui",
                ));
            }
            if !combined_prompts.is_empty() {
                errors.push(FieldError::new(
                    "conditioning",
                    "send combined_prompts or conditioning, not both (a combine is conditioning.positive with one entry per prompt)",
                ));
            }
            errors.extend(conditioning.problems(width, height));
        }
        let clip_skip = self.clip_skip.unwrap_or(super::prompt::DEFAULT_CLIP_SKIP);
        if !(1..=MAX_CLIP_SKIP).contains(&clip_skip) {
            errors.push(FieldError::new(
                "clip_skip",
                format!("clip_skip {clip_skip} is outside 1..{MAX_CLIP_SKIP} (1 = last layer, 2 = the one before)"),
            ));
        }
        let loras = self.loras.clone().unwrap_or_default();
        errors.extend(loras.iter().filter_map(LoraRef::problem).map(|m| FieldError::new("loras", m)));
        if prompt_syntax == Some(PromptSyntax::A1111) {
            let (_, tagged, bad) = extra_network_tags(&self.prompt);
            errors
                .extend(bad.iter().map(|t| FieldError::new("prompt", format!("{t}: LoRA weights must be numbers, as in <lora:name:0.8>"))));
            errors.extend(tagged.iter().filter_map(LoraRef::problem).map(|m| FieldError::new("prompt", m)));
            if loras.len() + tagged.len() > MAX_LORAS {
                errors.push(FieldError::new("loras", format!("{} LoRAs asked for; at most {MAX_LORAS}", loras.len() + tagged.len())));
            }
        } else if loras.len() > MAX_LORAS {
            errors.push(FieldError::new("loras", format!("{} LoRAs asked for; at most {MAX_LORAS}", loras.len())));
        }
        let vae = self.vae.as_deref().map(str::trim).filter(|v| !MODEL_OWN_VAE.contains(&v.to_ascii_lowercase().as_str()));
        if let Some(v) = vae.filter(|v| v.len() > 255) {
            errors.push(FieldError::new("vae", format!("vae name of {} characters; at most 255", v.len())));
        }
        let png_text = check_png_text(self.png_text.as_ref(), &mut errors);
        let vae_tiling = match self.vae_tiling.as_deref() {
            None => VaeTiling::default(),
            Some(name) => VaeTiling::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new("vae_tiling", format!("unknown vae_tiling {name:?}; use one of {}", VaeTiling::names())));
                VaeTiling::default()
            }),
        };
        let (Some(sampler), Some(schedule), Some(prompt_syntax)) = (sampler, schedule, prompt_syntax) else { return Err(errors) };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(GenerationSettings {
            prompt: self.prompt.clone(),
            negative_prompt,
            seed,
            steps,
            cfg_scale,
            width,
            height,
            sampler,
            schedule,
            batch_size,
            model: self.model.clone(),
            init_image: self.init_image.clone(),
            mask: self.mask.clone(),
            mask_blur: images.mask_blur,
            strength: images.strength,
            outpaint: images.outpaint,
            hires: images.hires,
            prompt_syntax,
            clip_skip,
            loras,
            vae: vae.map(str::to_string),
            noise,
            png_text,
            vae_tiling,
            sampling_range,
            stages,
            masked_content: images.masked_content,
            mask_grow: images.mask_grow,
            inpaint_area: images.inpaint_area,
            inpaint_padding: images.inpaint_padding,
            batch_index: self.batch_index.filter(|i| *i > 0),
            combined_prompts,
            conditioning: self.conditioning.clone(),
        })
    }

    /// The chain's later stages (compat comfyui, after the request's own `sampling_range`, over
    /// latents without a noise mask), each filled from the request's resolved values.
    fn resolve_stages(
        &self,
        compat: super::Compat,
        seed: u64,
        steps: u32,
        cfg_scale: f32,
        sampling: Option<(Sampler, Schedule)>,
        errors: &mut Vec<FieldError>,
    ) -> Vec<Stage> {
        let Some(list) = self.stages.as_ref().filter(|l| !l.is_empty()) else { return Vec::new() };
        let refusal = if compat != super::Compat::ComfyUi {
            Some(format!("stages are ComfyUI's KSamplerAdvanced chain and run in compat comfyui only, not {compat}"))
        } else if self.sampling_range.is_none() {
            Some("stages follow the request's own KSamplerAdvanced: send sampling_range too".to_string())
        } else if self.mask.is_some() {
            Some("stages run over latents without a noise mask; drop the mask or the stages".to_string())
        } else if list.len() > MAX_STAGES {
            Some(format!("{} stages; at most {MAX_STAGES}", list.len()))
        } else {
            None
        };
        if let Some(message) = refusal {
            errors.push(FieldError::new("stages", message));
            return Vec::new();
        }
        let Some((sampler, schedule)) = sampling else { return Vec::new() };
        let defaults = StageDefaults {
            seed,
            steps,
            cfg_scale,
            sampler,
            schedule,
            max_steps: MAX_STEPS,
            max_cfg_scale: MAX_CFG_SCALE,
            max_prompt_chars: MAX_PROMPT_CHARS,
            plain_prompts: self.combined_prompts.as_ref().is_none_or(Vec::is_empty) && self.conditioning.is_none(),
        };
        list.iter().enumerate().filter_map(|(i, stage)| stage.resolve(i, &defaults, errors)).collect()
    }

    /// Fills an absent width or height from an init image of `width` x `height` pixels, rounded
    /// down to a multiple of 8 (as diffusers' image processor does), at least [`MIN_SIZE`].
    pub fn size_from_image(&mut self, width: u32, height: u32) {
        let side = |s: u32| (s / 8 * 8).max(MIN_SIZE);
        if self.width.is_none() {
            self.width = Some(side(width));
        }
        if self.height.is_none() {
            self.height = Some(side(height));
        }
    }
}

/// Field names a request body may contain.
pub const REQUEST_FIELDS: [&str; 39] = [
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "sampler",
    "schedule",
    "batch_size",
    "model",
    "init_image",
    "mask",
    "mask_blur",
    "strength",
    "outpaint",
    "hires",
    "prompt_syntax",
    "clip_skip",
    "loras",
    "vae",
    "compat",
    "randn_source",
    "subseed",
    "subseed_strength",
    "seed_resize_from_w",
    "seed_resize_from_h",
    "eta_noise_seed_delta",
    "png_text",
    "vae_tiling",
    "sampling_range",
    "stages",
    "masked_content",
    "mask_grow",
    "inpaint_area",
    "inpaint_padding",
    "batch_index",
    "combined_prompts",
    "conditioning",
];

impl GenerateRequest {
    /// Reads a JSON request body, reporting every wrong field with its name and what it must be,
    /// instead of serde's first error. `null` counts as absent for optional fields.
    pub fn from_json(value: &serde_json::Value) -> Result<GenerateRequest, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("body", "the body must be a JSON object such as {\"prompt\": \"a cat\"}")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !REQUEST_FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(k, format!("unknown field {k:?}; accepted: {}", REQUEST_FIELDS.join(", "))))
            .collect();
        let present = |name: &str| object.get(name).filter(|v| !v.is_null());
        let mut text = |name: &str| -> Option<String> {
            let v = present(name)?;
            match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errors.push(FieldError::new(name, format!("{name} must be a string, got {v}")));
                    None
                }
            }
        };
        let prompt = text("prompt");
        let negative_prompt = text("negative_prompt");
        let sampler = text("sampler");
        let schedule = text("schedule");
        let model = text("model");
        let init_image = text("init_image");
        let mask = text("mask");
        let prompt_syntax = text("prompt_syntax");
        let vae = text("vae");
        let compat = text("compat");
        let randn_source = text("randn_source");
        let vae_tiling = text("vae_tiling");
        let masked_content = text("masked_content");
        let inpaint_area = text("inpaint_area");
        let mut whole = |name: &str, max: u64| -> Option<u64> {
            let v = present(name)?;
            match v.as_u64() {
                Some(n) if n <= max => Some(n),
                _ => {
                    errors.push(FieldError::new(name, format!("{name} must be a whole number from 0 to {max}, got {v}")));
                    None
                }
            }
        };
        let seed = whole("seed", u64::MAX);
        let small = u64::from(u32::MAX);
        let steps = whole("steps", small).map(|n| n as u32);
        let width = whole("width", small).map(|n| n as u32);
        let height = whole("height", small).map(|n| n as u32);
        let batch_size = whole("batch_size", small).map(|n| n as u32);
        let mask_blur = whole("mask_blur", small).map(|n| n as u32);
        let mask_grow = whole("mask_grow", small).map(|n| n as u32);
        let inpaint_padding = whole("inpaint_padding", small).map(|n| n as u32);
        let batch_index = whole("batch_index", small).map(|n| n as u32);
        let clip_skip = whole("clip_skip", small).map(|n| n as u32);
        let subseed = whole("subseed", u64::MAX);
        let seed_resize_from_w = whole("seed_resize_from_w", small).map(|n| n as u32);
        let seed_resize_from_h = whole("seed_resize_from_h", small).map(|n| n as u32);
        let eta_noise_seed_delta = whole("eta_noise_seed_delta", u64::MAX);
        let mut number = |name: &str| -> Option<f64> {
            let v = present(name)?;
            v.as_f64().or_else(|| {
                errors.push(FieldError::new(name, format!("{name} must be a number, got {v}")));
                None
            })
        };
        let cfg_scale = number("cfg_scale").map(|x| x as f32);
        let strength = number("strength");
        let subseed_strength = number("subseed_strength");
        let outpaint = object_field::<Outpaint>(present("outpaint"), "outpaint", r#"{"left": 64, "right": 64}"#, &mut errors);
        let sampling_range = object_field::<SamplingRangeRequest>(
            present("sampling_range"),
            "sampling_range",
            r#"{"start_at_step": 0, "end_at_step": 12, "return_with_leftover_noise": true}"#,
            &mut errors,
        );
        let stages = array_field::<StageRequest>(
            present("stages"),
            "stages",
            r#"[{"sampling_range": {"start_at_step": 12, "add_noise": false}}]"#,
            &mut errors,
        );
        let hires = object_field::<HiresRequest>(
            present("hires"),
            "hires",
            r#"{"scale": 2, "strength": 0.55, "steps": 0, "upscaler": "latent"}"#,
            &mut errors,
        );
        let loras = present("loras").and_then(|v| match serde_json::from_value::<Vec<LoraRef>>(v.clone()) {
            Ok(list) => Some(list),
            Err(e) => {
                errors.push(FieldError::new("loras", format!("loras must be a list like [{{\"name\": \"ink\", \"weight\": 0.8}}]: {e}")));
                None
            }
        });
        let combined_prompts = present("combined_prompts").and_then(|v| match serde_json::from_value::<Vec<String>>(v.clone()) {
            Ok(list) => Some(list),
            Err(_) => {
                errors.push(FieldError::new("combined_prompts", "combined_prompts must be a list of prompts like [\"a snowy forest\"]"));
                None
            }
        });
        let conditioning = object_field::<Conditioning>(
            present("conditioning"),
            "conditioning",
            r#"{"positive": [{"encoding": {"text": "a cat"}, "area": {"x": 0, "y": 0, "width": 256, "height": 512}}]}"#,
            &mut errors,
        );
        let png_text = present("png_text").and_then(|v| match serde_json::from_value::<BTreeMap<String, String>>(v.clone()) {
            Ok(map) => Some(map),
            Err(_) => {
                errors.push(FieldError::new("png_text", "png_text must be an object of strings like {\"workflow\": \"{...}\"}"));
                None
            }
        });
        if prompt.is_none() && !errors.iter().any(|e| e.field == "prompt") {
            errors.push(FieldError::new("prompt", "prompt is required (it may be an empty string)"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(GenerateRequest {
            prompt: prompt.unwrap_or_default(),
            negative_prompt,
            seed,
            steps,
            cfg_scale,
            width,
            height,
            sampler,
            schedule,
            batch_size,
            model,
            init_image,
            mask,
            mask_blur,
            strength,
            outpaint,
            hires,
            prompt_syntax,
            clip_skip,
            loras,
            vae,
            compat,
            randn_source,
            subseed,
            subseed_strength,
            seed_resize_from_w,
            seed_resize_from_h,
            eta_noise_seed_delta,
            png_text,
            vae_tiling,
            sampling_range,
            stages,
            masked_content,
            mask_grow,
            inpaint_area,
            inpaint_padding,
            batch_index,
            combined_prompts,
            conditioning,
        })
    }
}

/// Reads an optional JSON object field into `T`, or records why it cannot.
fn object_field<T: serde::de::DeserializeOwned>(
    value: Option<&serde_json::Value>,
    name: &str,
    example: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let v = value?;
    if !v.is_object() {
        errors.push(FieldError::new(name, format!("{name} must be an object such as {example}, got {v}")));
        return None;
    }
    serde_json::from_value::<T>(v.clone())
        .map_err(|e| errors.push(FieldError::new(name, format!("{name}: {e}; for example {example}"))))
        .ok()
}

/// Reads an optional JSON array field of `T`s, or records why it cannot.
fn array_field<T: serde::de::DeserializeOwned>(
    value: Option<&serde_json::Value>,
    name: &str,
    example: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<T>> {
    let v = value?;
    if !v.is_array() {
        errors.push(FieldError::new(name, format!("{name} must be a list such as {example}, got {v}")));
        return None;
    }
    serde_json::from_value::<Vec<T>>(v.clone())
        .map_err(|e| errors.push(FieldError::new(name, format!("{name}: {e}; for example {example}"))))
        .ok()
}

/// A seed for requests that give none: 64 of the 122 random bits of a v4 uuid (from the OS).
#[cfg(feature = "ssr")]
pub fn random_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_errors_name_each_field() {
        let v = serde_json::json!({"prompt": 3, "steps": "ten", "width": -64, "cfg_scale": "x", "stpes": 3});
        let errs = GenerateRequest::from_json(&v).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["stpes", "prompt", "steps", "width", "cfg_scale"]);
        assert!(errs[3].message.contains("-64"), "{}", errs[3].message);
        assert_eq!(GenerateRequest::from_json(&serde_json::json!({})).unwrap_err()[0].field, "prompt");
        assert_eq!(GenerateRequest::from_json(&serde_json::json!([1])).unwrap_err()[0].field, "body");
        let ok = GenerateRequest::from_json(&serde_json::json!({"prompt": "a", "seed": u64::MAX, "negative_prompt": null})).unwrap();
        assert_eq!((ok.seed, ok.negative_prompt), (Some(u64::MAX), None));
    }

    fn fields(req: &GenerateRequest) -> Vec<String> {
        req.resolve(|| 1).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_tiny_strength_cannot_stretch_a_schedule_without_bound() {
        let json = |v: serde_json::Value| serde_json::from_value::<GenerateRequest>(v).unwrap();
        let comfy = json(serde_json::json!({"prompt": "a", "compat": "comfyui", "init_image": "up_x", "strength": 1e-6}));
        assert_eq!(fields(&comfy), ["strength"]);
        let a1111 = json(serde_json::json!({"prompt": "a", "compat": "a1111", "width": 64, "height": 64,
                                             "hires": {"scale": 2, "strength": 1e-6, "upscaler": "latent"}}));
        assert_eq!(fields(&a1111), ["hires.strength"]);
        // Diffusers runs int(steps × strength) of the steps: nothing stretches.
        let diffusers = json(serde_json::json!({"prompt": "a", "init_image": "up_x", "strength": 0.01, "steps": 150}));
        assert!(diffusers.resolve(|| 1).is_ok());
        let ok = json(serde_json::json!({"prompt": "a", "compat": "comfyui", "init_image": "up_x", "strength": 0.05, "steps": 150}));
        assert!(ok.resolve(|| 1).is_ok());
    }

    #[test]
    fn defaults_fill_what_is_absent() {
        let s = GenerateRequest { prompt: "a cat".into(), ..Default::default() }.resolve(|| 42).unwrap();
        assert_eq!((s.width, s.height, s.steps, s.cfg_scale, s.batch_size), (512, 512, 20, 7.0, 1));
        assert_eq!((s.sampler, s.schedule, s.seed), (Sampler::Dpmpp2m, Schedule::Karras, 42));
        let s = GenerateRequest { prompt: "a".into(), sampler: Some("euler".into()), seed: Some(7), ..Default::default() }
            .resolve(|| unreachable!("seed was given"))
            .unwrap();
        assert_eq!((s.sampler, s.schedule, s.seed), (Sampler::Euler, Schedule::Default, 7));
    }

    #[test]
    fn size_must_be_multiple_of_8_within_range() {
        let req = GenerateRequest { prompt: "a".into(), width: Some(513), ..Default::default() };
        let err = req.resolve(|| 1).unwrap_err();
        assert_eq!(err, vec![FieldError::new("width", "width 513 is not a multiple of 8; use 512 or 520")]);
        let req = GenerateRequest { prompt: "a".into(), height: Some(4096), width: Some(0), ..Default::default() };
        assert_eq!(fields(&req), ["width", "height"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let req = GenerateRequest {
            prompt: "a".into(),
            steps: Some(0),
            cfg_scale: Some(f32::NAN),
            batch_size: Some(99),
            sampler: Some("k_euler".into()),
            ..Default::default()
        };
        assert_eq!(fields(&req), ["steps", "cfg_scale", "batch_size", "sampler"]);
        let msg = &req.resolve(|| 1).unwrap_err()[3].message;
        assert!(msg.contains("k_euler") && msg.contains("dpmpp_2m"), "{msg}");
    }

    #[test]
    fn karras_only_for_sigma_samplers() {
        let req =
            GenerateRequest { prompt: "a".into(), sampler: Some("ddim".into()), schedule: Some("karras".into()), ..Default::default() };
        assert_eq!(fields(&req), ["schedule"]);
    }

    #[test]
    fn sampling_range_is_comfyuis_and_leaves_a_step_to_run() {
        use crate::api::{SamplingRange, SamplingRangeRequest};
        let req = |compat: &str, range: SamplingRangeRequest| GenerateRequest {
            prompt: "a".into(),
            steps: Some(6),
            compat: Some(compat.into()),
            sampling_range: Some(range),
            ..Default::default()
        };
        let window = SamplingRangeRequest { end_at_step: Some(4), return_with_leftover_noise: Some(true), ..Default::default() };
        let s = req("comfyui", window).resolve(|| 1).unwrap();
        assert_eq!(
            s.sampling_range,
            Some(SamplingRange { start_at_step: 0, end_at_step: 4, add_noise: true, return_with_leftover_noise: true })
        );
        assert_eq!(fields(&req("a1111", window)), ["sampling_range"]);
        assert_eq!(fields(&req("diffusers", window)), ["sampling_range"]);
        let empty = SamplingRangeRequest { start_at_step: Some(4), end_at_step: Some(4), ..Default::default() };
        assert_eq!(fields(&req("comfyui", empty)), ["sampling_range.start_at_step"]);
        let past = SamplingRangeRequest { start_at_step: Some(6), ..Default::default() };
        assert_eq!(fields(&req("comfyui", past)), ["sampling_range.start_at_step"]);
        let huge = SamplingRangeRequest { end_at_step: Some(10_001), ..Default::default() };
        assert_eq!(fields(&req("comfyui", huge)), ["sampling_range.end_at_step"]);
        // Over an init image the window runs at full strength.
        let mut img2img = req("comfyui", SamplingRangeRequest { start_at_step: Some(2), ..Default::default() });
        img2img.init_image = Some("up_1".into());
        assert_eq!(fields(&img2img), ["strength"]);
        img2img.strength = Some(1.0);
        assert!(img2img.resolve(|| 1).is_ok());
        // Unknown members are named.
        let bad = GenerateRequest::from_json(&serde_json::json!({"prompt": "a", "sampling_range": {"start": 1}})).unwrap_err();
        assert_eq!(bad[0].field, "sampling_range");
    }

    #[test]
    fn comfyui_masks_are_unblurred_and_a1111_inpaints_in_its_own_ways() {
        let req = |compat: &str, blur: Option<u32>| GenerateRequest {
            prompt: "a".into(),
            compat: Some(compat.into()),
            init_image: Some("up_1".into()),
            mask: Some("up_2".into()),
            mask_blur: blur,
            strength: Some(0.8),
            ..Default::default()
        };
        assert_eq!(req("comfyui", None).resolve(|| 1).unwrap().mask_blur, Some(0));
        assert_eq!(fields(&req("comfyui", Some(4))), ["mask_blur"]);
        assert_eq!(req("diffusers", None).resolve(|| 1).unwrap().mask_blur, Some(4));
        let a1111 = req("a1111", None).resolve(|| 1).unwrap();
        assert_eq!((a1111.mask_blur, a1111.inpaint_area, a1111.inpaint_padding), (Some(4), InpaintArea::Whole, 0));
        // A1111's masked contents and "Only masked" (padding 32 unless given).
        let only = |compat: &str, content: &str, padding: Option<u32>| GenerateRequest {
            masked_content: Some(content.into()),
            inpaint_area: Some("only_masked".into()),
            inpaint_padding: padding,
            ..req(compat, None)
        };
        let s = only("a1111", "latent_noise", None).resolve(|| 1).unwrap();
        assert_eq!((s.masked_content, s.inpaint_area, s.inpaint_padding), (MaskedContent::LatentNoise, InpaintArea::OnlyMasked, 32));
        assert_eq!(only("a1111", "latent nothing", Some(0)).resolve(|| 1).unwrap().masked_content, MaskedContent::LatentNothing);
        assert_eq!(fields(&only("a1111", "fill", Some(999))), ["inpaint_padding"]);
        assert_eq!(fields(&only("diffusers", "fill", None)), ["masked_content", "inpaint_area"]);
        assert_eq!(fields(&GenerateRequest { inpaint_padding: Some(8), ..req("a1111", None) }), ["inpaint_padding"]);
        assert_eq!(fields(&GenerateRequest { inpaint_area: Some("all".into()), ..req("a1111", None) }), ["inpaint_area"]);
    }

    #[test]
    fn a1111_timestep_samplers_take_no_schedule() {
        let req = |sampler: &str, schedule: Option<&str>| GenerateRequest {
            prompt: "a".into(),
            sampler: Some(sampler.into()),
            schedule: schedule.map(Into::into),
            compat: Some("a1111".into()),
            ..Default::default()
        };
        for sampler in ["DDIM", "PLMS", "DDIM CFG++"] {
            assert_eq!(fields(&req(sampler, Some("karras"))), ["schedule"], "{sampler}");
            let s = req(sampler, None).resolve(|| 1).unwrap();
            assert_eq!(s.schedule, Schedule::Default, "{sampler}");
        }
        let mut short = req("UniPC", None);
        short.steps = Some(2);
        assert_eq!(fields(&short), ["steps"]);
        // DDIM CFG++ is A1111's alone.
        let diffusers = GenerateRequest { prompt: "a".into(), sampler: Some("ddim_cfg_pp".into()), ..Default::default() };
        assert_eq!(fields(&diffusers), ["sampler"]);
    }

    #[test]
    fn image_fields_resolve_with_defaults_and_name_each_problem() {
        let s = GenerateRequest { prompt: "a".into(), init_image: Some("up_1".into()), ..Default::default() }.resolve(|| 1).unwrap();
        assert_eq!((s.strength, s.mask_blur), (Some(0.75), None));
        let s = GenerateRequest { prompt: "a".into(), init_image: Some("up_1".into()), mask: Some("up_2".into()), ..Default::default() }
            .resolve(|| 1)
            .unwrap();
        assert_eq!(s.mask_blur, Some(4));
        let req = GenerateRequest {
            prompt: "a".into(),
            mask: Some("../etc".into()),
            strength: Some(1.5),
            hires: Some(HiresRequest { scale: Some(9.0), upscaler: Some("esrgan".into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(fields(&req), ["mask", "mask", "strength", "hires.scale", "hires.upscaler"]);
        let req = GenerateRequest {
            prompt: "a".into(),
            init_image: Some("up_1".into()),
            strength: Some(0.0),
            outpaint: Some(Outpaint { left: 12, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(fields(&req), ["outpaint.left", "strength"]);
    }

    #[test]
    fn outpaint_grows_the_canvas_and_hires_the_output() {
        let s = GenerateRequest {
            prompt: "a".into(),
            init_image: Some("up_1".into()),
            width: Some(512),
            height: Some(512),
            outpaint: Some(Outpaint { left: 64, top: 128, ..Default::default() }),
            ..Default::default()
        }
        .resolve(|| 1)
        .unwrap();
        assert_eq!((s.width, s.height, s.init_size()), (576, 640, (512, 512)));
        let s = GenerateRequest {
            prompt: "a".into(),
            width: Some(512),
            height: Some(512),
            hires: Some(HiresRequest { scale: Some(1.5), ..Default::default() }),
            ..Default::default()
        }
        .resolve(|| 1)
        .unwrap();
        assert_eq!((s.width, s.output_size()), (512, (768, 768)));
        assert_eq!(s.hires.map(|h| (h.strength, h.upscaler)), Some((0.7, crate::api::Upscaler::Latent)));
        let too_big = GenerateRequest {
            prompt: "a".into(),
            width: Some(1024),
            hires: Some(HiresRequest { scale: Some(4.0), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(fields(&too_big), ["hires.scale"]);
    }

    #[test]
    fn json_image_fields_are_read_and_checked() {
        let v = serde_json::json!({"prompt": "a", "init_image": "up_1", "strength": 0.5, "outpaint": {"left": 64},
            "hires": {"scale": 2}});
        let r = GenerateRequest::from_json(&v).unwrap();
        assert_eq!((r.strength, r.outpaint.map(|o| o.left), r.hires.and_then(|h| h.scale)), (Some(0.5), Some(64), Some(2.0)));
        let v = serde_json::json!({"prompt": "a", "outpaint": {"lft": 64}, "hires": 2, "strength": "x"});
        let errs = GenerateRequest::from_json(&v).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["strength", "outpaint", "hires"]);
        assert!(errs[1].message.contains("lft"), "{}", errs[1].message);
    }

    #[test]
    fn size_comes_from_the_image_unless_given() {
        let mut r = GenerateRequest { prompt: "a".into(), height: Some(256), ..Default::default() };
        r.size_from_image(333, 40);
        assert_eq!((r.width, r.height), (Some(328), Some(256)));
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let err = serde_json::from_str::<GenerateRequest>(r#"{"prompt":"a","stpes":3}"#).unwrap_err();
        assert!(err.to_string().contains("stpes"));
    }

    #[test]
    fn png_text_chunks_are_bounded_and_cannot_replace_easels_own() {
        let with = |pairs: &[(&str, String)]| GenerateRequest {
            prompt: "a".into(),
            png_text: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
            ..Default::default()
        };
        let ok = with(&[("prompt", "{}".into()), ("workflow", "{\"nodes\": []}".into())]).resolve(|| 1).unwrap();
        assert_eq!(ok.png_text["workflow"], "{\"nodes\": []}");
        let fields = |r: GenerateRequest| r.resolve(|| 1).unwrap_err().into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
        assert!(fields(with(&[("parameters", "x".into())])).contains("written by Easel"));
        assert!(fields(with(&[("bad\nkey", "x".into())])).contains("printable ASCII"));
        assert!(fields(with(&[("big", "x".repeat(MAX_PNG_TEXT_BYTES))])).contains("at most"));
        let many: Vec<(&str, String)> = ["a", "b", "c", "d", "e"].iter().map(|k| (*k, String::new())).collect();
        assert!(fields(with(&many)).contains("5 chunks"));
    }
}
