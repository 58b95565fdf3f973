//! Owns the translation of an A1111 txt2img / img2img call into Easel requests: one
//! `GenerateRequest` per `n_iter` batch, A1111's seed numbering, and the refusals of what Easel
//! cannot run.

use serde_json::{json, Value};

use super::options::*;
use super::tables::*;
use super::wire::*;
use crate::api::image_modes::{InpaintArea, MaskedContent, DEFAULT_HIRES_STRENGTH, MAX_INPAINT_PADDING};
use crate::api::request::MAX_BATCH_SIZE;
use crate::api::{Compat, FieldError, GenerateRequest, HiresRequest, Sampler, Upscaler};

// ---------------------------------------------------------------------------------------------
// Request -> Easel (spec 2.2 - 2.4, 8)
// ---------------------------------------------------------------------------------------------

/// A call translated: the first batch's Easel request, and how the others differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Batch 0; batch `k` is [`Planned::batch`]`(k)`.
    pub request: GenerateRequest,
    pub n_iter: u32,
    pub batch_size: u32,
    /// The resolved seed and variation seed (`info.seed`, `info.subseed`).
    pub seed: u64,
    pub subseed: u64,
    /// `subseed_strength != 0`: every image keeps `seed`, the variation seeds count up.
    pub varied: bool,
    pub compat: Compat,
    pub choice: SamplerChoice,
    /// What `info.denoising_strength` reports.
    pub denoising_strength: Option<f64>,
    /// A1111's `extra_generation_params` known before the run, in its insertion order (the
    /// network hashes and `Schedule type` are added by [`info_json`]).
    pub extra_generation_params: Vec<(String, Value)>,
}

impl Planned {
    /// Batch `k`'s request: A1111's `all_seeds[k*batch_size]` (or the variation seed moved on).
    pub fn batch(&self, k: u32) -> GenerateRequest {
        let offset = u64::from(k) * u64::from(self.batch_size);
        let mut request = self.request.clone();
        if self.varied {
            request.subseed = Some(self.subseed.wrapping_add(offset));
        } else {
            request.seed = Some(self.seed.wrapping_add(offset));
        }
        request
    }

    fn total(&self) -> u64 {
        u64::from(self.n_iter) * u64::from(self.batch_size)
    }

    /// `info.all_seeds`: A1111's numbering in a1111 compat; in diffusers compat each image gets
    /// its job's seed (one generator draws the whole batch there).
    pub fn all_seeds(&self) -> Vec<u64> {
        let bs = u64::from(self.batch_size);
        (0..self.total())
            .map(|i| match (self.varied, self.compat) {
                (true, _) => self.seed,
                (false, Compat::A1111) => self.seed.wrapping_add(i),
                (false, _) => self.seed.wrapping_add(i / bs * bs),
            })
            .collect()
    }

    /// `info.all_subseeds`: `subseed + i`, whether or not variation is on.
    pub fn all_subseeds(&self) -> Vec<u64> {
        (0..self.total()).map(|i| self.subseed.wrapping_add(i)).collect()
    }
}

/// The upload ids (and size) an img2img call's pictures got from `Easel::upload`.
#[derive(Debug, Clone, PartialEq)]
pub struct Img2ImgUploads {
    pub init_image: String,
    pub init_size: (u32, u32),
    /// Already binary (`create_binary_mask`) and inverted when [`Img2ImgRequest::invert_mask`].
    pub mask: Option<String>,
}

fn refuse(errors: &mut Vec<FieldError>, field: &str, message: impl Into<String>) {
    errors.push(FieldError::new(field, message));
}

fn resolve_seed(field: &str, value: Option<i64>, random: &mut dyn FnMut() -> u32, errors: &mut Vec<FieldError>) -> u64 {
    match value {
        None | Some(-1) => u64::from(random() % RANDOM_SEED_BOUND),
        Some(seed) if seed >= 0 => seed as u64,
        Some(seed) => {
            refuse(errors, field, format!("{field} {seed}: use -1 for a random seed, or a seed >= 0"));
            0
        }
    }
}

/// A1111 does not check sizes: the latent is `side // 8`, so the picture is floored to a
/// multiple of 8. Easel checks the range.
fn side(field: &str, value: Option<i64>, errors: &mut Vec<FieldError>) -> u32 {
    match value.unwrap_or(512) {
        v if (8..=i64::from(u32::MAX)).contains(&v) => (v as u32) / 8 * 8,
        v => {
            refuse(errors, field, format!("{field} {v} is not a picture size; use 64 to 2048"));
            512
        }
    }
}

fn whole(field: &str, value: Option<i64>, default: i64, range: std::ops::RangeInclusive<i64>, errors: &mut Vec<FieldError>) -> u32 {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        v as u32
    } else {
        refuse(errors, field, format!("{field} {v} is outside {}..{}", range.start(), range.end()));
        default as u32
    }
}

/// Refusals every mode shares (fields whose non-default values Easel cannot run).
fn check_common(c: &CommonParams, choice: &SamplerChoice, errors: &mut Vec<FieldError>) {
    if choice.sampler.easel.is_none() {
        refuse(errors, "sampler_name", format!("sampler {} is not available in Easel; see /sdapi/v1/samplers", choice.sampler.name));
    }
    if c.restore_faces == Some(true) {
        refuse(errors, "restore_faces", "Easel has no face restoration; send false");
    }
    if c.tiling == Some(true) {
        refuse(errors, "tiling", "Easel does not make tileable pictures; send false");
    }
    if c.s_min_uncond.is_some_and(|v| v != 0.0) {
        refuse(errors, "s_min_uncond", "Easel always runs the negative prompt (s_min_uncond 0)");
    }
    if let (Some(eta), Some(default)) = (c.eta, choice.sampler.eta) {
        if eta != default {
            refuse(errors, "eta", format!("Easel runs {} with eta {default}; send {default} or leave eta out", choice.sampler.name));
        }
    }
    if c.refiner_checkpoint.as_deref().is_some_and(|r| !matches!(r.trim(), "" | "None" | "none")) {
        refuse(errors, "refiner_checkpoint", "Easel has no refiner pass");
    }
    if c.firstpass_image.is_some() {
        refuse(errors, "firstpass_image", "Easel always runs the first pass itself");
    }
    if c.infotext.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        refuse(errors, "infotext", "Easel does not read settings from an infotext yet; send the fields");
    }
}

/// The Easel mode for this call: A1111's own (noise, samplers, schedules, pixels), or diffusers'
/// for a sampler only that mode has; a sampler that runs in neither is refused.
fn choose_compat(choice: &SamplerChoice, errors: &mut Vec<FieldError>) -> Compat {
    let Some(sampler) = choice.sampler.easel else { return Compat::Diffusers };
    if sampler.runs_in(Compat::A1111) {
        Compat::A1111
    } else if sampler.runs_in(Compat::Diffusers) {
        Compat::Diffusers
    } else {
        refuse(
            errors,
            "sampler_name",
            format!(
                "{} does not run in Easel yet; use one of {}",
                choice.sampler.name,
                Sampler::ALL.iter().filter(|s| s.runs_in(Compat::A1111)).map(|s| s.a1111_name()).collect::<Vec<_>>().join(", ")
            ),
        );
        Compat::Diffusers
    }
}

/// The pieces of a request both modes build alike.
struct Base {
    request: GenerateRequest,
    n_iter: u32,
    batch_size: u32,
    seed: u64,
    subseed: u64,
    varied: bool,
}

fn base_request(
    c: &CommonParams,
    opts: &EffectiveOptions,
    compat: Compat,
    choice: &SamplerChoice,
    random: &mut dyn FnMut() -> u32,
    errors: &mut Vec<FieldError>,
) -> Base {
    let batch_size = whole("batch_size", c.batch_size, 1, 1..=i64::from(MAX_BATCH_SIZE), errors);
    let n_iter = whole("n_iter", c.n_iter, 1, 1..=MAX_N_ITER, errors);
    let steps = whole("steps", c.steps, 50, 1..=i64::from(u32::MAX), errors);
    let seed = resolve_seed("seed", c.seed, random, errors);
    let subseed = resolve_seed("subseed", c.subseed, random, errors);
    let strength = c.subseed_strength.unwrap_or(0.0);
    let varied = strength != 0.0;
    let resize = match (c.seed_resize_from_w.unwrap_or(-1), c.seed_resize_from_h.unwrap_or(-1)) {
        (w, h) if w > 0 && h > 0 => Some((w.min(i64::from(u32::MAX)) as u32, h.min(i64::from(u32::MAX)) as u32)),
        _ => None,
    };
    let a1111 = compat == Compat::A1111;
    if !a1111 && varied {
        refuse(errors, "subseed_strength", "variation seeds need A1111's noise, which Easel runs for txt2img without the hires fix only");
    }
    if !a1111 && resize.is_some() {
        refuse(
            errors,
            "seed_resize_from_w",
            "resize seed from needs A1111's noise, which Easel runs for txt2img without the hires fix only",
        );
    }
    let mut prompt = c.prompt.clone().unwrap_or_default();
    if c.disable_extra_networks == Some(true) {
        prompt = crate::api::networks::extra_network_tags(&prompt).0;
    }
    let request = GenerateRequest {
        prompt,
        negative_prompt: Some(c.negative_prompt.clone().unwrap_or_default()),
        seed: Some(seed),
        steps: Some(steps),
        cfg_scale: Some(c.cfg_scale.unwrap_or(7.0) as f32),
        width: Some(side("width", c.width, errors)),
        height: Some(side("height", c.height, errors)),
        sampler: choice.sampler.easel.map(|s| s.name().to_string()),
        schedule: choice.easel_schedule().map(str::to_string),
        batch_size: Some(batch_size),
        model: opts.model.clone(),
        prompt_syntax: Some("a1111".into()),
        clip_skip: Some(opts.clip_skip),
        vae: opts.vae.clone(),
        compat: Some(compat.name().into()),
        randn_source: a1111.then(|| opts.randn_source.clone()),
        subseed: (a1111 && varied).then_some(subseed),
        subseed_strength: (a1111 && varied).then_some(strength),
        seed_resize_from_w: resize.filter(|_| a1111).map(|r| r.0),
        seed_resize_from_h: resize.filter(|_| a1111).map(|r| r.1),
        eta_noise_seed_delta: (a1111 && opts.eta_noise_seed_delta != 0).then_some(opts.eta_noise_seed_delta),
        ..Default::default()
    };
    Base { request, n_iter, batch_size, seed, subseed, varied }
}

/// A1111's hires upscaler name -> Easel's (`None` = A1111's default latent mode).
fn hires_upscaler(name: Option<&str>) -> Option<&'static str> {
    match name.map(str::trim) {
        None | Some("") => Some("latent"),
        Some("Lanczos") | Some("None") => Some("lanczos"),
        // A1111's latent upscale modes, by their own names.
        Some(name) => Upscaler::ALL.into_iter().find(|u| u.is_latent() && u.in_a1111() && u.a1111_name() == name).map(Upscaler::name),
    }
}

/// The hires fix as Easel's `HiresRequest`, its `extra_generation_params` (A1111's order), and
/// the second pass strength.
fn plan_hires(req: &Txt2ImgRequest, choice: &SamplerChoice, errors: &mut Vec<FieldError>) -> (HiresRequest, Vec<(String, Value)>, f64) {
    let c = &req.common;
    let strength = req.denoising_strength.unwrap_or(DEFAULT_HIRES_STRENGTH);
    let (w, h) = (c.width.unwrap_or(512).max(1), c.height.unwrap_or(512).max(1));
    let (rx, ry) = (req.hr_resize_x.unwrap_or(0), req.hr_resize_y.unwrap_or(0));
    let mut extra: Vec<(String, Value)> = vec![
        ("Denoising strength".into(), json!(strength)),
        ("Hires prompt".into(), Value::Null),
        ("Hires negative prompt".into(), Value::Null),
        ("Hires schedule type".into(), Value::Null),
    ];
    let scale = if rx == 0 && ry == 0 {
        let scale = req.hr_scale.unwrap_or(2.0);
        extra.push(("Hires upscale".into(), json!(scale)));
        scale
    } else {
        extra.push(("Hires resize".into(), json!(format!("{rx}x{ry}"))));
        // `calculate_target_resolution`: one side given keeps the aspect; both given fit then crop.
        let (tx, ty) = match (rx, ry) {
            (x, 0) => (x, x * h / w),
            (0, y) => (y * w / h, y),
            (x, y) if w * y < x * h => (x, x * h / w),
            (_, y) => (y * w / h, y),
        };
        if (rx != 0 && tx != rx) || (ry != 0 && ty != ry) {
            refuse(
                errors,
                "hr_resize_x",
                format!("a {rx}x{ry} target would crop a {w}x{h} first pass; Easel only scales, give one side or hr_scale"),
            );
        }
        let scale = tx as f64 / w as f64;
        let easel_side = |px: i64| ((px as u32 / 8 * 8) as f64 * scale) as u32 / 8 * 8;
        if (easel_side(w), easel_side(h)) != ((tx as u32) / 8 * 8, (ty as u32) / 8 * 8) {
            refuse(errors, "hr_resize_x", format!("{tx}x{ty} is not a whole scale of {w}x{h} in multiples of 8; use hr_scale"));
        }
        scale
    };
    let steps = req.hr_second_pass_steps.unwrap_or(0);
    if steps < 0 {
        refuse(errors, "hr_second_pass_steps", "hr_second_pass_steps must be >= 0 (0 = the same steps)");
    } else if steps != 0 {
        extra.push(("Hires steps".into(), json!(steps)));
    }
    let upscaler = hires_upscaler(req.hr_upscaler.as_deref());
    if upscaler.is_none() {
        refuse(
            errors,
            "hr_upscaler",
            format!(
                "upscaler {:?} is not available; use one of {}, Lanczos or None",
                req.hr_upscaler.as_deref().unwrap_or(""),
                Upscaler::ALL
                    .into_iter()
                    .filter(|u| u.is_latent() && u.in_a1111())
                    .map(Upscaler::a1111_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if let Some(name) = &req.hr_upscaler {
        extra.push(("Hires upscaler".into(), json!(name)));
    }
    if req.hr_checkpoint_name.as_deref().is_some_and(|n| !matches!(n.trim(), "" | "Use same checkpoint")) {
        refuse(errors, "hr_checkpoint_name", "Easel's second pass uses the same checkpoint");
    }
    if let Some(name) = req.hr_sampler_name.as_deref().map(str::trim).filter(|n| !matches!(*n, "" | "Use same sampler")) {
        if resolve_sampler(Some(name), None, None).sampler != choice.sampler {
            refuse(errors, "hr_sampler_name", "Easel's second pass uses the same sampler");
        }
    }
    if let Some(name) = req.hr_scheduler.as_deref().map(str::trim).filter(|n| !matches!(*n, "" | "Use same scheduler")) {
        if find_scheduler(name) != Some(choice.scheduler) {
            refuse(errors, "hr_scheduler", "Easel's second pass uses the same scheduler");
        }
    }
    let prompt = c.prompt.as_deref().unwrap_or("");
    if req.hr_prompt.as_deref().is_some_and(|p| !p.is_empty() && p != prompt) {
        refuse(errors, "hr_prompt", "Easel's second pass uses the same prompt");
    }
    let negative = c.negative_prompt.as_deref().unwrap_or("");
    if req.hr_negative_prompt.as_deref().is_some_and(|p| !p.is_empty() && p != negative) {
        refuse(errors, "hr_negative_prompt", "Easel's second pass uses the same negative prompt");
    }
    if req.firstphase_width.unwrap_or(0) != 0 || req.firstphase_height.unwrap_or(0) != 0 {
        refuse(errors, "firstphase_width", "the legacy firstphase_width/height are not supported; use width, height and hr_scale");
    }
    let hires = HiresRequest {
        scale: Some(scale),
        strength: Some(strength),
        steps: Some(steps.max(0) as u32),
        upscaler: upscaler.map(str::to_string),
        seed: None,
    };
    (hires, extra, strength)
}

/// `txt2img` -> Easel. `random` draws A1111-style random seeds (`% 4294967294` is applied here).
pub fn plan_txt2img(req: &Txt2ImgRequest, opts: &EffectiveOptions, mut random: impl FnMut() -> u32) -> Result<Planned, Vec<FieldError>> {
    let c = &req.common;
    let mut errors = Vec::new();
    let choice = resolve_sampler(c.sampler_name.as_deref(), c.sampler_index.as_deref(), c.scheduler.as_deref());
    check_common(c, &choice, &mut errors);
    let hires = req.enable_hr.unwrap_or(false).then(|| plan_hires(req, &choice, &mut errors));
    // A1111's own maths, the hires fix included with every upscaler the door takes (its latent
    // modes, Lanczos and None).
    let compat = choose_compat(&choice, &mut errors);
    let mut base = base_request(c, opts, compat, &choice, &mut random, &mut errors);
    let (extra, denoising_strength) = match hires {
        Some((hires, extra, strength)) => {
            base.request.hires = Some(hires);
            (extra, Some(strength))
        }
        None => (Vec::new(), req.denoising_strength),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Planned {
        request: base.request,
        n_iter: base.n_iter,
        batch_size: base.batch_size,
        seed: base.seed,
        subseed: base.subseed,
        varied: base.varied,
        compat,
        choice,
        denoising_strength,
        extra_generation_params: extra,
    })
}

/// `img2img` -> Easel, once the pictures are uploads (the handler checked [`init_image`], made
/// the mask binary and inverted it when [`Img2ImgRequest::invert_mask`]).
pub fn plan_img2img(
    req: &Img2ImgRequest,
    uploads: &Img2ImgUploads,
    opts: &EffectiveOptions,
    mut random: impl FnMut() -> u32,
) -> Result<Planned, Vec<FieldError>> {
    let c = &req.common;
    let mut errors = Vec::new();
    let choice = resolve_sampler(c.sampler_name.as_deref(), c.sampler_index.as_deref(), c.scheduler.as_deref());
    check_common(c, &choice, &mut errors);
    // A1111's own maths for image-to-image and inpainting.
    let compat = choose_compat(&choice, &mut errors);
    let mut base = base_request(c, opts, compat, &choice, &mut random, &mut errors);
    let (w, h) = (c.width.unwrap_or(512), c.height.unwrap_or(512));
    let (iw, ih) = (i64::from(uploads.init_size.0), i64::from(uploads.init_size.1));
    match req.resize_mode.unwrap_or(0) {
        0 => {}
        1 | 2 if iw * h == ih * w => {}
        3 if (iw, ih) == (w, h) => {}
        mode @ 1..=3 => refuse(
            &mut errors,
            "resize_mode",
            format!("resize_mode {mode} on a {iw}x{ih} image for {w}x{h} is not available; Easel stretches (resize_mode 0)"),
        ),
        mode => refuse(&mut errors, "resize_mode", format!("resize_mode {mode} is not one of 0, 1, 2, 3")),
    }
    let strength = req.denoising_strength.unwrap_or(0.75);
    let mut extra: Vec<(String, Value)> = vec![("Denoising strength".into(), json!(strength))];
    if req.initial_noise_multiplier.is_some_and(|m| m != 1.0) {
        refuse(&mut errors, "initial_noise_multiplier", "Easel runs image-to-image with noise multiplier 1");
    }
    if req.latent_mask.is_some() {
        refuse(&mut errors, "latent_mask", "a separate latent mask is not supported");
    }
    let mut mask_blur = None;
    let (mut masked_content, mut inpaint_area, mut inpaint_padding) = (None, None, None);
    if uploads.mask.is_some() {
        if req.invert_mask() {
            extra.push(("Mask mode".into(), json!("Inpaint not masked")));
        }
        let blur = match (req.mask_blur, req.mask_blur_x.unwrap_or(4), req.mask_blur_y.unwrap_or(4)) {
            (Some(b), _, _) => b,
            (None, x, y) if x == y => x,
            (None, x, y) => {
                refuse(&mut errors, "mask_blur_x", format!("mask_blur_x {x} != mask_blur_y {y}; Easel blurs both ways alike"));
                x
            }
        };
        if blur < 0 {
            refuse(&mut errors, "mask_blur", format!("mask_blur {blur} must be >= 0"));
        } else {
            mask_blur = Some(blur as u32);
            if blur > 0 {
                extra.push(("Mask blur".into(), json!(blur)));
            }
        }
        if req.mask_round == Some(false) {
            refuse(&mut errors, "mask_round", "Easel always rounds the latent mask");
        }
        // The API's defaults: fill, "Only masked" with no padding (the UI's are original, whole
        // picture, 32).
        let fill = req.inpainting_fill.unwrap_or(0);
        match MaskedContent::from_a1111_number(fill) {
            Some(content) => masked_content = Some(content),
            None => refuse(&mut errors, "inpainting_fill", format!("inpainting_fill {fill} is not one of 0, 1, 2, 3")),
        }
        let padding = req.inpaint_full_res_padding.unwrap_or(0);
        if !(0..=i64::from(MAX_INPAINT_PADDING)).contains(&padding) {
            refuse(
                &mut errors,
                "inpaint_full_res_padding",
                format!("inpaint_full_res_padding {padding} is outside 0..{MAX_INPAINT_PADDING}"),
            );
        }
        if req.inpaint_full_res.unwrap_or(true) {
            inpaint_area = Some(InpaintArea::OnlyMasked);
            inpaint_padding = Some(padding.clamp(0, i64::from(MAX_INPAINT_PADDING)) as u32);
            extra.push(("Inpaint area".into(), json!("Only masked")));
            extra.push(("Masked area padding".into(), json!(padding)));
        }
        if let Some(name) = masked_content.and_then(MaskedContent::a1111_name) {
            extra.push(("Masked content".into(), json!(name)));
        }
        if compat != Compat::A1111 && (masked_content != Some(MaskedContent::Original) || inpaint_area.is_some()) {
            refuse(
                &mut errors,
                "sampler_name",
                format!(
                    "{} inpaints in Easel's diffusers mode only: whole picture, original content; send inpainting_fill 1 and inpaint_full_res false, or another sampler",
                    choice.sampler.name
                ),
            );
        }
    }
    base.request.masked_content = masked_content.filter(|_| compat == Compat::A1111).map(|m| m.name().to_string());
    base.request.inpaint_area = inpaint_area.filter(|_| compat == Compat::A1111).map(|a| a.name().to_string());
    base.request.inpaint_padding = inpaint_padding.filter(|_| compat == Compat::A1111);
    base.request.init_image = Some(uploads.init_image.clone());
    base.request.mask = uploads.mask.clone();
    base.request.mask_blur = mask_blur;
    base.request.strength = Some(strength);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Planned {
        request: base.request,
        n_iter: base.n_iter,
        batch_size: base.batch_size,
        seed: base.seed,
        subseed: base.subseed,
        varied: base.varied,
        compat,
        choice,
        denoising_strength: Some(strength),
        extra_generation_params: extra,
    })
}
