//! Owns the image-to-image part of a request: the init image, the mask, the strength,
//! outpainting and the hires fix — their names, defaults, limits and rules, for every door.
//!
//! Images travel by id: an upload id from `POST /api/v1/uploads` (or the gallery id of a
//! generated image, which the service turns into an upload when it accepts the job, so a queued
//! job never loses its input).

use serde::{Deserialize, Serialize};

/// How much of the init image is repainted when the request does not say (A1111's default).
pub const DEFAULT_STRENGTH: f64 = 0.75;
/// Mask blur in pixels when a mask is given without one (A1111's default).
pub const DEFAULT_MASK_BLUR: u32 = 4;
pub const MAX_MASK_BLUR: u32 = 64;
/// Largest extension of one side when outpainting, in pixels.
pub const MAX_OUTPAINT: u32 = 1024;
/// The hires fix's defaults (A1111's: upscale by 2, denoising strength 0.7, the same steps).
pub const DEFAULT_HIRES_SCALE: f64 = 2.0;
pub const DEFAULT_HIRES_STRENGTH: f64 = 0.7;
pub const MAX_HIRES_SCALE: f64 = 4.0;
/// Largest upload accepted, in bytes (encoded).
pub const MAX_UPLOAD_BYTES: usize = 20 << 20;
/// Largest image accepted, in pixels per side (decoded).
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// Longest image id accepted.
pub const MAX_IMAGE_ID: usize = 64;

/// Where uploads are posted and served (`GET {UPLOADS_PATH}/{id}` returns the PNG).
pub const UPLOADS_PATH: &str = "/api/v1/uploads";

/// The URL an upload is served at.
pub fn upload_url(id: &str) -> String {
    format!("{UPLOADS_PATH}/{id}")
}

/// An accepted upload: what `POST /api/v1/uploads` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadView {
    /// Pass as `init_image` or `mask`.
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// How the first pass of a hires fix is enlarged before the second pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upscaler {
    /// The latents resized bilinearly (`torch.nn.functional.interpolate`, `align_corners=False`).
    Latent,
    /// The latents resized with torch's `nearest-exact` (ComfyUI's LatentUpscale default).
    LatentNearestExact,
    /// The latents resized with torch's bicubic (A = −0.75, `align_corners=False`).
    LatentBicubic,
    /// The latents resized with torch's legacy `nearest` (A1111's "Latent (nearest)").
    LatentNearest,
    /// The latents resized with torch's `area` (adaptive average pooling; ComfyUI's `area`).
    LatentArea,
    /// The latents resized bilinearly with torch's antialiasing (A1111's "Latent (antialiased)").
    LatentAntialiased,
    /// The latents resized bicubically with torch's antialiasing (A = −0.5; A1111's "Latent
    /// (bicubic antialiased)").
    LatentBicubicAntialiased,
    /// The latents resized with ComfyUI's `bislerp` (bilinear taps, spherical blends).
    LatentBislerp,
    /// The decoded image resized with Lanczos (Pillow's filter), then encoded again.
    Lanczos,
}

impl Upscaler {
    pub const ALL: [Upscaler; 9] = [
        Upscaler::Latent,
        Upscaler::LatentNearestExact,
        Upscaler::LatentBicubic,
        Upscaler::LatentNearest,
        Upscaler::LatentArea,
        Upscaler::LatentAntialiased,
        Upscaler::LatentBicubicAntialiased,
        Upscaler::LatentBislerp,
        Upscaler::Lanczos,
    ];
    pub const DEFAULT: Upscaler = Upscaler::Latent;

    /// Easel's name (CLI, REST, stored settings).
    pub fn name(self) -> &'static str {
        match self {
            Upscaler::Latent => "latent",
            Upscaler::LatentNearestExact => "latent-nearest-exact",
            Upscaler::LatentBicubic => "latent-bicubic",
            Upscaler::LatentNearest => "latent-nearest",
            Upscaler::LatentArea => "latent-area",
            Upscaler::LatentAntialiased => "latent-antialiased",
            Upscaler::LatentBicubicAntialiased => "latent-bicubic-antialiased",
            Upscaler::LatentBislerp => "latent-bislerp",
            Upscaler::Lanczos => "lanczos",
        }
    }

    /// A1111's name, as its infotext writes `Hires upscaler` (A1111 has no area or bislerp
    /// mode; Easel names them in A1111's pattern).
    pub fn a1111_name(self) -> &'static str {
        match self {
            Upscaler::Latent => "Latent",
            Upscaler::LatentNearestExact => "Latent (nearest-exact)",
            Upscaler::LatentBicubic => "Latent (bicubic)",
            Upscaler::LatentNearest => "Latent (nearest)",
            Upscaler::LatentArea => "Latent (area)",
            Upscaler::LatentAntialiased => "Latent (antialiased)",
            Upscaler::LatentBicubicAntialiased => "Latent (bicubic antialiased)",
            Upscaler::LatentBislerp => "Latent (bislerp)",
            Upscaler::Lanczos => "Lanczos",
        }
    }

    /// Whether it resizes the latents (every upscaler but the picture one).
    pub fn is_latent(self) -> bool {
        self != Upscaler::Lanczos
    }

    /// Whether A1111 has it among its hires upscalers (its `latent_upscale_modes` and Lanczos).
    pub fn in_a1111(self) -> bool {
        !matches!(self, Upscaler::LatentArea | Upscaler::LatentBislerp)
    }

    /// ComfyUI's `LatentUpscale` method of a latent upscaler (ComfyUI has no legacy nearest).
    pub fn comfyui_method(self) -> Option<&'static str> {
        match self {
            Upscaler::Latent => Some("bilinear"),
            Upscaler::LatentNearestExact => Some("nearest-exact"),
            Upscaler::LatentBicubic => Some("bicubic"),
            Upscaler::LatentArea => Some("area"),
            Upscaler::LatentBislerp => Some("bislerp"),
            Upscaler::LatentNearest | Upscaler::LatentAntialiased | Upscaler::LatentBicubicAntialiased | Upscaler::Lanczos => None,
        }
    }

    /// Either spelling, any case.
    pub fn parse(name: &str) -> Option<Upscaler> {
        let name = name.trim();
        Self::ALL.into_iter().find(|u| u.name().eq_ignore_ascii_case(name) || u.a1111_name().eq_ignore_ascii_case(name))
    }

    pub fn names() -> String {
        Self::ALL.map(Upscaler::name).join(", ")
    }
}

impl std::fmt::Display for Upscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Most pixels a mask grows by before it masks the latents ([`MaskedContent::Grey`], ComfyUI's
/// `grow_mask_by` limit).
pub const MAX_MASK_GROW: u32 = 64;

/// What the masked part of the init image holds when it is encoded for inpainting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskedContent {
    /// The picture as it is.
    #[default]
    Original,
    /// Mid grey under the mask (rounded to 0 or 1), and the latent mask grown by `mask_grow`
    /// pixels: ComfyUI's `VAEEncodeForInpaint` (compat comfyui).
    Grey,
    /// The kept part blurred into the masked part (A1111's `fill`, compat a1111).
    Fill,
    /// The filled picture's latents with noise under the mask (A1111's `latent noise`).
    LatentNoise,
    /// The filled picture's latents with zeros under the mask (A1111's `latent nothing`).
    LatentNothing,
}

impl MaskedContent {
    pub const ALL: [MaskedContent; 5] =
        [MaskedContent::Original, MaskedContent::Grey, MaskedContent::Fill, MaskedContent::LatentNoise, MaskedContent::LatentNothing];

    pub fn name(self) -> &'static str {
        match self {
            MaskedContent::Original => "original",
            MaskedContent::Grey => "grey",
            MaskedContent::Fill => "fill",
            MaskedContent::LatentNoise => "latent_noise",
            MaskedContent::LatentNothing => "latent_nothing",
        }
    }

    /// A1111's `inpainting_fill` number (0 fill, 1 original, 2 latent noise, 3 latent nothing).
    pub fn a1111_number(self) -> Option<u8> {
        match self {
            MaskedContent::Fill => Some(0),
            MaskedContent::Original => Some(1),
            MaskedContent::LatentNoise => Some(2),
            MaskedContent::LatentNothing => Some(3),
            MaskedContent::Grey => None,
        }
    }

    /// The masked content of A1111's `inpainting_fill` number.
    pub fn from_a1111_number(n: i64) -> Option<MaskedContent> {
        Self::ALL.into_iter().find(|m| m.a1111_number().is_some_and(|k| i64::from(k) == n))
    }

    /// A1111's infotext name (`Masked content`; it writes none for original).
    pub fn a1111_name(self) -> Option<&'static str> {
        match self {
            MaskedContent::Fill => Some("fill"),
            MaskedContent::LatentNoise => Some("latent noise"),
            MaskedContent::LatentNothing => Some("latent nothing"),
            MaskedContent::Original | MaskedContent::Grey => None,
        }
    }

    pub fn parse(name: &str) -> Option<MaskedContent> {
        Self::ALL.into_iter().find(|m| m.name() == name || m.a1111_name() == Some(name))
    }

    pub fn names() -> String {
        Self::ALL.map(|m| m.name()).join(", ")
    }

    pub fn is_original(&self) -> bool {
        *self == MaskedContent::Original
    }

    /// Whether it is one of A1111's (compat a1111 only).
    pub fn is_a1111_only(self) -> bool {
        matches!(self, MaskedContent::Fill | MaskedContent::LatentNoise | MaskedContent::LatentNothing)
    }
}

/// Which part of the picture A1111's inpainting works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InpaintArea {
    /// The whole picture at the request's size.
    #[default]
    Whole,
    /// The mask's bounding box (grown by `inpaint_padding`, then to the request's aspect ratio)
    /// at the request's size, pasted back into the picture at its own size (A1111's "Only
    /// masked", `inpaint_full_res`).
    OnlyMasked,
}

impl InpaintArea {
    pub const ALL: [InpaintArea; 2] = [InpaintArea::Whole, InpaintArea::OnlyMasked];

    pub fn name(self) -> &'static str {
        match self {
            InpaintArea::Whole => "whole",
            InpaintArea::OnlyMasked => "only_masked",
        }
    }

    pub fn parse(name: &str) -> Option<InpaintArea> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn is_whole(&self) -> bool {
        *self == InpaintArea::Whole
    }
}

/// Padding around the mask's box with `inpaint_area` only_masked when the request does not say
/// (A1111's UI default), and the most accepted.
pub const DEFAULT_INPAINT_PADDING: u32 = 32;
pub const MAX_INPAINT_PADDING: u32 = 256;

/// Pixels added on each side of the init image when outpainting (multiples of 8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outpaint {
    #[serde(default)]
    pub left: u32,
    #[serde(default)]
    pub right: u32,
    #[serde(default)]
    pub top: u32,
    #[serde(default)]
    pub bottom: u32,
}

impl Outpaint {
    pub const SIDES: [&'static str; 4] = ["left", "right", "top", "bottom"];

    fn sides(&self) -> [u32; 4] {
        [self.left, self.right, self.top, self.bottom]
    }

    pub fn is_empty(&self) -> bool {
        self.sides() == [0; 4]
    }

    /// Parses the CLI form `left=64,right=64,top=0,bottom=0` (any subset, any order).
    pub fn parse(text: &str) -> Result<Outpaint, String> {
        let mut out = Outpaint::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (side, value) =
                part.split_once('=').ok_or_else(|| format!("{part:?} is not side=pixels; write e.g. left=64,right=64,top=0,bottom=0"))?;
            let value: u32 = value.trim().parse().map_err(|_| format!("{value:?} in {part:?} is not a whole number of pixels"))?;
            match side.trim().to_ascii_lowercase().as_str() {
                "left" => out.left = value,
                "right" => out.right = value,
                "top" => out.top = value,
                "bottom" => out.bottom = value,
                other => return Err(format!("unknown side {other:?}; use {}", Self::SIDES.join(", "))),
            }
        }
        Ok(out)
    }

    /// The field errors of this extension (each side a multiple of 8, at most [`MAX_OUTPAINT`],
    /// at least one side extended).
    fn check(&self, errors: &mut Vec<FieldError>) {
        for (name, value) in Self::SIDES.iter().zip(self.sides()) {
            if value > MAX_OUTPAINT || !value.is_multiple_of(8) {
                errors.push(FieldError::new(
                    &format!("outpaint.{name}"),
                    format!("outpaint.{name} {value} must be a multiple of 8 from 0 to {MAX_OUTPAINT}"),
                ));
            }
        }
        if self.is_empty() {
            errors.push(FieldError::new("outpaint", "outpaint extends no side; give at least one of left, right, top, bottom in pixels"));
        }
    }
}

/// The hires fix as requested: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiresRequest {
    /// Upscale factor of the first pass, in (1, 4] [default: 2].
    #[serde(default)]
    pub scale: Option<f64>,
    /// Strength of the second pass, in (0, 1] [default: 0.7].
    #[serde(default)]
    pub strength: Option<f64>,
    /// Steps of the second pass; 0 or absent = the request's steps.
    #[serde(default)]
    pub steps: Option<u32>,
    /// An [`Upscaler`] name (`latent`, `latent-nearest-exact`, `latent-bicubic`, `latent-nearest`,
    /// `latent-area`, `lanczos`) [default: latent].
    #[serde(default)]
    pub upscaler: Option<String>,
    /// Seed of the second pass (compat comfyui: the second KSampler's) [default: the request's].
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The hires fix resolved: a second, image-to-image pass at `scale` times the size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hires {
    /// Float64, as A1111 multiplies the size by it (`int(width * hr_scale)`).
    pub scale: f64,
    pub strength: f64,
    /// Inference steps of the second pass (diffusers: of which `int(steps × strength)` run;
    /// a1111 and comfyui: all of them, out of a longer schedule); 0 = the first pass's steps.
    pub steps: u32,
    pub upscaler: Upscaler,
    /// The second pass's seed when it is not the request's (compat comfyui).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Hires {
    /// The second pass's size: each side times the scale, rounded down to a multiple of 8.
    pub fn target_size(&self, width: u32, height: u32) -> (u32, u32) {
        let side = |s: u32| ((f64::from(s) * self.scale) as u32) / 8 * 8;
        (side(width), side(height))
    }

    /// The second pass's inference steps given the first pass's.
    pub fn steps_or(&self, first_pass_steps: u32) -> u32 {
        if self.steps == 0 {
            first_pass_steps
        } else {
            self.steps
        }
    }
}

/// Whether `id` could name an image (an upload or a gallery image): 1 to [`MAX_IMAGE_ID`]
/// ASCII letters, digits, `-` and `_`. It never becomes a path unchecked.
pub fn is_image_id(id: &str) -> bool {
    (1..=MAX_IMAGE_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

use super::request::FieldError;

/// The image fields of a request, checked: `(strength, mask_blur)` resolved, errors pushed.
pub(crate) struct ImageFields<'a> {
    pub init_image: Option<&'a str>,
    pub mask: Option<&'a str>,
    pub mask_blur: Option<u32>,
    pub strength: Option<f64>,
    pub outpaint: Option<&'a Outpaint>,
    pub hires: Option<&'a HiresRequest>,
    pub masked_content: Option<&'a str>,
    pub mask_grow: Option<u32>,
    pub inpaint_area: Option<&'a str>,
    pub inpaint_padding: Option<u32>,
}

/// What [`ImageFields::resolve`] settles.
pub(crate) struct ResolvedImageFields {
    pub strength: Option<f64>,
    pub mask_blur: Option<u32>,
    pub outpaint: Option<Outpaint>,
    pub hires: Option<Hires>,
    pub masked_content: MaskedContent,
    pub mask_grow: u32,
    pub inpaint_area: InpaintArea,
    pub inpaint_padding: u32,
}

fn check_strength(field: &str, value: f64, errors: &mut Vec<FieldError>) {
    if !(value.is_finite() && value > 0.0 && value <= 1.0) {
        errors.push(FieldError::new(field, format!("{field} {value} is outside (0, 1]; 0.75 repaints three quarters")));
    }
}

impl ImageFields<'_> {
    pub fn resolve(&self, max_steps: u32, errors: &mut Vec<FieldError>) -> ResolvedImageFields {
        for (field, id) in [("init_image", self.init_image), ("mask", self.mask)] {
            if let Some(id) = id.filter(|id| !is_image_id(id)) {
                errors.push(FieldError::new(field, format!("{id:?} is not an image id; upload the image with POST /api/v1/uploads first")));
            }
        }
        let has_init = self.init_image.is_some();
        let needs_init = |field: &str, errors: &mut Vec<FieldError>| {
            if !has_init {
                errors.push(FieldError::new(field, format!("{field} needs an init_image to work on")));
            }
        };
        if self.mask.is_some() {
            needs_init("mask", errors);
        }
        if let Some(outpaint) = self.outpaint {
            needs_init("outpaint", errors);
            outpaint.check(errors);
            if self.mask.is_some() {
                errors.push(FieldError::new("outpaint", "outpaint makes its own mask; send either mask or outpaint, not both"));
            }
        }
        let strength = if has_init {
            let strength = self.strength.unwrap_or(DEFAULT_STRENGTH);
            check_strength("strength", strength, errors);
            Some(strength)
        } else {
            if self.strength.is_some() {
                needs_init("strength", errors);
            }
            None
        };
        let masked = self.mask.is_some() || self.outpaint.is_some();
        let mask_blur = match self.mask_blur {
            Some(blur) if !masked => {
                errors.push(FieldError::new("mask_blur", format!("mask_blur {blur} needs a mask (or outpaint) to blur")));
                None
            }
            Some(blur) if blur > MAX_MASK_BLUR => {
                errors.push(FieldError::new("mask_blur", format!("mask_blur {blur} is outside 0..{MAX_MASK_BLUR} pixels")));
                None
            }
            blur => masked.then(|| blur.unwrap_or(DEFAULT_MASK_BLUR)),
        };
        let hires = self.hires.and_then(|h| {
            if has_init {
                errors.push(FieldError::new("hires", "the hires fix refines text-to-image results; drop init_image or hires"));
            }
            let scale = h.scale.unwrap_or(DEFAULT_HIRES_SCALE);
            if !(scale.is_finite() && scale > 1.0 && scale <= MAX_HIRES_SCALE) {
                errors.push(FieldError::new("hires.scale", format!("hires.scale {scale} is outside (1, {MAX_HIRES_SCALE}]")));
            }
            let strength = h.strength.unwrap_or(DEFAULT_HIRES_STRENGTH);
            check_strength("hires.strength", strength, errors);
            let steps = h.steps.unwrap_or(0);
            if steps > max_steps {
                errors.push(FieldError::new("hires.steps", format!("hires.steps {steps} is outside 0..{max_steps} (0 = the same steps)")));
            }
            let upscaler = match h.upscaler.as_deref() {
                None => Some(Upscaler::DEFAULT),
                Some(name) => Upscaler::parse(name).or_else(|| {
                    errors.push(FieldError::new("hires.upscaler", format!("unknown upscaler {name:?}; use one of {}", Upscaler::names())));
                    None
                }),
            };
            Some(Hires { scale, strength, steps, upscaler: upscaler?, seed: h.seed })
        });
        let masked_content = match self.masked_content {
            None => MaskedContent::Original,
            Some(name) => MaskedContent::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "masked_content",
                    format!("unknown masked_content {name:?}; use one of {}", MaskedContent::names()),
                ));
                MaskedContent::Original
            }),
        };
        if !masked_content.is_original() && self.mask.is_none() {
            errors.push(FieldError::new("masked_content", format!("masked_content {masked_content:?} needs a mask to fill")));
        }
        let mask_grow = self.mask_grow.unwrap_or(0);
        if mask_grow > MAX_MASK_GROW {
            errors.push(FieldError::new("mask_grow", format!("mask_grow {mask_grow} is outside 0..{MAX_MASK_GROW} pixels")));
        } else if mask_grow > 0 && masked_content != MaskedContent::Grey {
            errors.push(FieldError::new(
                "mask_grow",
                "mask_grow grows the mask of masked_content \"grey\"; send that too, or drop mask_grow",
            ));
        }
        let inpaint_area = match self.inpaint_area {
            None => InpaintArea::Whole,
            Some(name) => InpaintArea::parse(name).unwrap_or_else(|| {
                let names = InpaintArea::ALL.map(InpaintArea::name).join(", ");
                errors.push(FieldError::new("inpaint_area", format!("unknown inpaint_area {name:?}; use one of {names}")));
                InpaintArea::Whole
            }),
        };
        if !inpaint_area.is_whole() && self.mask.is_none() {
            errors.push(FieldError::new("inpaint_area", "inpaint_area only_masked needs a mask to find the area"));
        }
        let inpaint_padding = match self.inpaint_padding {
            Some(_) if inpaint_area.is_whole() => {
                errors.push(FieldError::new("inpaint_padding", "inpaint_padding pads the area of inpaint_area only_masked; send that too"));
                0
            }
            Some(pad) if pad > MAX_INPAINT_PADDING => {
                errors
                    .push(FieldError::new("inpaint_padding", format!("inpaint_padding {pad} is outside 0..{MAX_INPAINT_PADDING} pixels")));
                0
            }
            Some(pad) => pad,
            None if inpaint_area.is_whole() => 0,
            None => DEFAULT_INPAINT_PADDING,
        };
        ResolvedImageFields {
            strength,
            mask_blur,
            outpaint: self.outpaint.copied(),
            hires,
            masked_content,
            mask_grow,
            inpaint_area,
            inpaint_padding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpaint_parses_the_cli_form_and_names_bad_parts() {
        assert_eq!(Outpaint::parse("left=64,right=64,top=0,bottom=0").unwrap(), Outpaint { left: 64, right: 64, top: 0, bottom: 0 });
        assert_eq!(Outpaint::parse(" top=8 ").unwrap(), Outpaint { top: 8, ..Default::default() });
        assert!(Outpaint::parse("up=8").unwrap_err().contains("up"));
        assert!(Outpaint::parse("left=x").unwrap_err().contains("\"x\""));
        assert!(Outpaint::parse("left").unwrap_err().contains("side=pixels"));
    }

    #[test]
    fn hires_target_rounds_down_to_multiples_of_8() {
        let h = Hires { scale: 1.25, strength: 0.5, steps: 0, upscaler: Upscaler::Latent, seed: None };
        assert_eq!(h.target_size(64, 48), (80, 56)); // 60 -> 56
        let h = Hires { scale: 1.5, ..h };
        assert_eq!(h.target_size(512, 512), (768, 768));
        assert_eq!(h.steps_or(20), 20);
        assert_eq!(Hires { steps: 7, ..h }.steps_or(20), 7);
    }

    #[test]
    fn upscalers_parse_both_spellings() {
        assert_eq!(Upscaler::parse("Latent"), Some(Upscaler::Latent));
        assert_eq!(Upscaler::parse("lanczos"), Some(Upscaler::Lanczos));
        assert_eq!(Upscaler::parse("ESRGAN_4x"), None);
    }

    #[test]
    fn image_ids_are_safe_names() {
        assert!(is_image_id("up_0123abcd"));
        for bad in ["", "../x", "a/b", "a.png", &"x".repeat(65)] {
            assert!(!is_image_id(bad), "{bad}");
        }
    }
}
