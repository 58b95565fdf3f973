//! The A1111 "parameters" text every Easel PNG carries, so civitai, `sd-parsers` and A1111's PNG
//! Info read our settings. Layout (A1111 `create_infotext`): the prompt; `Negative prompt: …` when
//! there is one; then one line of `Key: value` pairs in A1111's key order. A value is written as a
//! JSON string only when it contains `,`, `:` or a newline.

use crate::api::request::GenerationSettings;

fn quote(value: &str) -> String {
    if value.contains([',', ':', '\n']) {
        serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""))
    } else {
        value.to_string()
    }
}

/// Python's `str(float)` for the values we write (`7.0`, `7.5`).
fn python_float(x: f32) -> String {
    let s = format!("{x}");
    if s.contains(['.', 'e', 'i', 'N']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// A number as A1111 writes a slider value: `2` for a whole number, `1.5` otherwise.
fn python_number<T: Into<f64> + std::fmt::Display + Copy>(x: T) -> String {
    let value: f64 = x.into();
    if value.fract() == 0.0 {
        format!("{}", value as i64)
    } else {
        format!("{x}")
    }
}

/// The schedule a generation ran with as A1111 names it: the compat mode's default resolved
/// (ComfyUI's is `simple`; A1111's Automatic is the sampler's table entry, `Karras` for DPM++ 2M,
/// and stays "Automatic" where that is the model's own timesteps; diffusers' stays "Automatic").
pub(crate) fn effective_schedule(settings: &GenerationSettings) -> crate::api::Schedule {
    use crate::api::{Compat, Schedule};
    use crate::engine::kdiffusion::KSampler;
    match (settings.noise.compat, settings.schedule) {
        (Compat::ComfyUi, Schedule::Default) => Schedule::Simple,
        // A1111's timestep samplers (DDIM, PLMS) take no schedule: its infotext says Automatic.
        (Compat::A1111, _) if settings.sampler.a1111_timesteps() => Schedule::Default,
        (Compat::A1111, Schedule::Default) => match KSampler::for_sampler(settings.sampler).map(KSampler::a1111_automatic) {
            Some(Schedule::Uniform) | None => Schedule::Default,
            Some(schedule) => schedule,
        },
        (_, schedule) => schedule,
    }
}

/// A1111's infotext key for an inpainting model's conditioning strength (`inpainting_mask_weight`),
/// written after `Denoising strength` as A1111 orders it.
pub const CONDITIONAL_MASK_WEIGHT: &str = "Conditional mask weight";

/// The infotext for one image of a generation. Image-to-image modes add `Denoising strength`
/// after `Model` (the hires fix's second-pass strength for a hires generation, as A1111 does),
/// then, after `RNG`, A1111's extra parameters: `Mask blur`, `Inpaint area` and `Masked area
/// padding` (only masked), `Masked content` (A1111's fills), `Hires upscale`, `Hires steps`
/// (only when not 0) and `Hires upscaler`. `Size` is the first pass's, as in A1111.
pub fn infotext(settings: &GenerationSettings, model_name: &str, model_hash: &str) -> String {
    infotext_with(settings, model_name, model_hash, &[])
}

/// [`infotext`] with what only the run knows, appended after A1111's fixed keys as its
/// `extra_generation_params` are (e.g. `("TI hashes", "easynegative: c74b4e810b03")`).
pub fn infotext_with(settings: &GenerationSettings, model_name: &str, model_hash: &str, extra: &[(&str, String)]) -> String {
    let mut lines = vec![settings.prompt.clone()];
    if !settings.negative_prompt.is_empty() {
        lines.push(format!("Negative prompt: {}", settings.negative_prompt));
    }
    let mut pairs: Vec<(&str, String)> = vec![
        ("Steps", settings.steps.to_string()),
        ("Sampler", settings.sampler.a1111_name().to_string()),
        ("Schedule type", effective_schedule(settings).a1111_name().to_string()),
        ("CFG scale", python_float(settings.cfg_scale)),
        ("Seed", settings.seed.to_string()),
        ("Size", format!("{}x{}", settings.width, settings.height)),
        ("Model hash", model_hash.to_string()),
        // A1111 names a checkpoint by its file name without the extension.
        ("Model", model_name.strip_suffix(".safetensors").unwrap_or(model_name).to_string()),
    ];
    let noise = &settings.noise;
    if let (Some(subseed), true) = (noise.subseed, noise.subseed_strength != 0.0) {
        pairs.push(("Variation seed", subseed.to_string()));
        pairs.push(("Variation seed strength", python_number(noise.subseed_strength)));
    }
    if let Some((w, h)) = noise.seed_resize_from {
        pairs.push(("Seed resize from", format!("{w}x{h}")));
    }
    if let Some(strength) = settings.strength.or(settings.hires.map(|h| h.strength)) {
        pairs.push(("Denoising strength", python_float(strength as f32)));
    }
    pairs.extend(extra.iter().filter(|(k, _)| *k == CONDITIONAL_MASK_WEIGHT).cloned());
    if settings.clip_skip > 1 {
        pairs.push(("Clip skip", settings.clip_skip.to_string()));
    }
    if noise.eta_noise_seed_delta != 0 {
        pairs.push(("ENSD", noise.eta_noise_seed_delta.to_string()));
    }
    // Which generator made the noise: torch's CPU one, unless A1111's NV noise was chosen.
    pairs.push(("RNG", noise.randn_source.map_or("CPU", |s| s.infotext()).to_string()));
    // A1111 writes its inpainting keys as its `init` sets them: a blur of 0 is not written.
    let a1111 = noise.compat == crate::api::Compat::A1111;
    if let Some(blur) = settings.mask_blur.filter(|b| *b > 0 || !a1111) {
        pairs.push(("Mask blur", blur.to_string()));
    }
    if settings.mask.is_some() && settings.inpaint_area == crate::api::image_modes::InpaintArea::OnlyMasked {
        pairs.push(("Inpaint area", "Only masked".to_string()));
        pairs.push(("Masked area padding", settings.inpaint_padding.to_string()));
    }
    if let Some(name) = settings.masked_content.a1111_name().filter(|_| settings.mask.is_some()) {
        pairs.push(("Masked content", name.to_string()));
    }
    if let Some(h) = &settings.hires {
        pairs.push(("Hires upscale", python_number(h.scale)));
        if h.steps != 0 {
            pairs.push(("Hires steps", h.steps.to_string()));
        }
        pairs.push(("Hires upscaler", h.upscaler.a1111_name().to_string()));
    }
    // Easel's own key: whose seeding the noise follows (absent: diffusers').
    if noise.compat != crate::api::Compat::Diffusers {
        pairs.push(("Compat", noise.compat.name().to_string()));
    }
    pairs.extend(extra.iter().filter(|(k, _)| *k != CONDITIONAL_MASK_WEIGHT).cloned());
    let params: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {}", quote(v))).collect();
    lines.push(params.join(", "));
    lines.join("\n").trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// Reading an infotext back, as A1111's `infotext_utils.py:parse_generation_parameters` does
// ---------------------------------------------------------------------------------------------

/// `re_param` over one line: `Key: value` pairs, values raw (quoted ones still quoted).
fn param_pairs(line: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = line.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let key_char = |c: char| word(c) || matches!(c, ' ' | '-' | '/');
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut i = start;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let key_start = i;
        if i >= chars.len() || !word(chars[i]) {
            start += 1;
            continue;
        }
        i += 1;
        while i < chars.len() && key_char(chars[i]) {
            i += 1;
        }
        if i - key_start < 2 || i >= chars.len() || chars[i] != ':' {
            start += 1;
            continue;
        }
        let key: String = chars[key_start..i].iter().collect();
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        // A quoted value must close before a comma or the end; otherwise it is read up to the comma.
        let mut quoted = None;
        if chars.get(i) == Some(&'"') {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            if j < chars.len() && j > i + 1 && (j + 1 == chars.len() || chars[j + 1] == ',') {
                quoted = Some((chars[i..=j].iter().collect::<String>(), j + 1));
            }
        }
        let (value, end) = quoted.unwrap_or_else(|| {
            let mut j = i;
            while j < chars.len() && chars[j] != ',' {
                j += 1;
            }
            (chars[i..j].iter().collect(), j)
        });
        out.push((key, value));
        start = if chars.get(end) == Some(&',') { end + 1 } else { end.max(start + 1) };
    }
    out
}

fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_string())
    } else {
        value.to_string()
    }
}

/// An infotext as `(prompt, negative prompt, parameters)`: the last line is the parameter line
/// only when it holds at least 3 pairs; values are unquoted.
pub fn parse_infotext(text: &str) -> (String, String, Vec<(String, String)>) {
    let mut lines: Vec<&str> = text.trim().split('\n').collect();
    let last = lines.pop().unwrap_or("");
    let mut pairs = param_pairs(last);
    if pairs.len() < 3 {
        lines.push(last);
        pairs.clear();
    }
    let (mut prompt, mut negative, mut in_negative) = (String::new(), String::new(), false);
    for line in lines {
        let mut line = line.trim();
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            line = rest.trim();
        }
        let target = if in_negative { &mut negative } else { &mut prompt };
        if !target.is_empty() {
            target.push('\n');
        }
        target.push_str(line);
    }
    (prompt, negative, pairs.into_iter().map(|(k, v)| (k, unquote(&v))).collect())
}

/// The `Key: value` pairs of an infotext, unquoted.
pub fn infotext_pairs(text: &str) -> Vec<(String, String)> {
    parse_infotext(text).2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GenerationSettings {
        GenerationSettings {
            prompt: "a watercolor fox, soft light".into(),
            negative_prompt: "blurry".into(),
            seed: 1234567890,
            steps: 20,
            cfg_scale: 7.0,
            width: 512,
            height: 768,
            sampler: crate::api::Sampler::Dpmpp2m,
            schedule: crate::api::Schedule::Karras,
            batch_size: 1,
            model: None,
            init_image: None,
            mask: None,
            mask_blur: None,
            strength: None,
            outpaint: None,
            hires: None,
            prompt_syntax: crate::api::PromptSyntax::A1111,
            clip_skip: 1,
            loras: Vec::new(),
            vae: None,
            noise: Default::default(),
            png_text: Default::default(),
            vae_tiling: Default::default(),
            sampling_range: None,
            stages: Vec::new(),
            masked_content: Default::default(),
            mask_grow: 0,
            inpaint_area: Default::default(),
            inpaint_padding: 0,
            batch_index: None,
            combined_prompts: Vec::new(),
            conditioning: None,
        }
    }

    #[test]
    fn a1111_noise_settings_are_written_with_a1111_keys_in_its_order() {
        let mut s = settings();
        s.noise = crate::api::NoiseSettings {
            compat: crate::api::Compat::A1111,
            randn_source: Some(crate::api::RandnSource::Nv),
            subseed: Some(99),
            subseed_strength: 0.3,
            seed_resize_from: Some((448, 640)),
            eta_noise_seed_delta: 31337,
        };
        let comfy = GenerationSettings {
            noise: crate::api::NoiseSettings { compat: crate::api::Compat::ComfyUi, ..Default::default() },
            schedule: crate::api::Schedule::Default,
            ..settings()
        };
        assert!(infotext(&comfy, "m", "h").contains("Schedule type: Simple"), "ComfyUI's default scheduler is simple");
        let text = infotext(&s, "tiny-sd", "0123456789");
        assert!(
            text.ends_with(
                "Model: tiny-sd, Variation seed: 99, Variation seed strength: 0.3, Seed resize from: 448x640, ENSD: 31337, RNG: NV, Compat: a1111"
            ),
            "{text}"
        );
    }

    #[test]
    fn a1111_automatic_is_written_as_the_schedule_it_resolves_to() {
        let mut s = settings();
        s.noise.compat = crate::api::Compat::A1111;
        s.schedule = crate::api::Schedule::Default;
        s.sampler = crate::api::Sampler::Dpmpp2m;
        assert!(infotext(&s, "m", "h").contains("Schedule type: Karras,"));
        s.sampler = crate::api::Sampler::Dpmpp2mSde;
        assert!(infotext(&s, "m", "h").contains("Schedule type: Exponential,"));
        // Euler's Automatic is the model's own timesteps, which A1111 calls Automatic.
        s.sampler = crate::api::Sampler::Euler;
        assert!(infotext(&s, "m", "h").contains("Schedule type: Automatic,"));
    }

    #[test]
    fn matches_a1111_layout_and_key_order() {
        assert_eq!(
            infotext(&settings(), "tiny-sd", "0123456789"),
            "a watercolor fox, soft light\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, \
             CFG scale: 7.0, Seed: 1234567890, Size: 512x768, Model hash: 0123456789, Model: tiny-sd, RNG: CPU"
        );
    }

    #[test]
    fn a1111_inpainting_writes_its_area_padding_and_content_after_the_blur() {
        let mut s = settings();
        s.init_image = Some("up_1".into());
        s.mask = Some("up_2".into());
        s.strength = Some(0.75);
        s.mask_blur = Some(4);
        s.noise.compat = crate::api::Compat::A1111;
        s.inpaint_area = crate::api::image_modes::InpaintArea::OnlyMasked;
        s.inpaint_padding = 32;
        s.masked_content = crate::api::image_modes::MaskedContent::LatentNoise;
        let text = infotext(&s, "tiny-sd", "0123456789");
        assert!(
            text.ends_with(
                "RNG: CPU, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Masked content: latent noise, Compat: a1111"
            ),
            "{text}"
        );
        s.mask_blur = Some(0);
        s.masked_content = crate::api::image_modes::MaskedContent::Original;
        assert!(infotext(&s, "tiny-sd", "0").ends_with("RNG: CPU, Inpaint area: Only masked, Masked area padding: 32, Compat: a1111"));
    }

    #[test]
    fn img2img_writes_denoising_strength_after_the_model_as_a1111_does() {
        let mut s = settings();
        s.init_image = Some("up_1".into());
        s.mask = Some("up_2".into());
        s.strength = Some(0.75);
        s.mask_blur = Some(4);
        let text = infotext(&s, "tiny-sd", "0123456789");
        assert!(text.ends_with("Model hash: 0123456789, Model: tiny-sd, Denoising strength: 0.75, RNG: CPU, Mask blur: 4"), "{text}");
    }

    #[test]
    fn an_inpainting_models_mask_weight_follows_the_denoising_strength() {
        let mut s = settings();
        s.init_image = Some("up_1".into());
        s.strength = Some(0.75);
        let extra = [("TI hashes", "fox: 0123abcd".to_string()), (CONDITIONAL_MASK_WEIGHT, "1.0".to_string())];
        let text = infotext_with(&s, "tiny-sd", "0123456789", &extra);
        assert!(text.ends_with("Denoising strength: 0.75, Conditional mask weight: 1.0, RNG: CPU, TI hashes: \"fox: 0123abcd\""), "{text}");
    }

    #[test]
    fn hires_writes_a1111_keys() {
        let mut s = settings();
        s.hires = Some(crate::api::Hires { scale: 2.0, strength: 0.55, steps: 0, upscaler: crate::api::Upscaler::Latent, seed: None });
        let text = infotext(&s, "tiny-sd", "0123456789");
        assert!(text.ends_with("Denoising strength: 0.55, RNG: CPU, Hires upscale: 2, Hires upscaler: Latent"), "{text}");
        s.hires = Some(crate::api::Hires { scale: 1.5, strength: 0.55, steps: 12, upscaler: crate::api::Upscaler::Lanczos, seed: None });
        let text = infotext(&s, "tiny-sd", "0123456789");
        assert!(text.ends_with("Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Lanczos"), "{text}");
    }

    #[test]
    fn negative_line_is_omitted_when_empty_and_odd_values_are_quoted() {
        let mut s = settings();
        s.negative_prompt.clear();
        s.cfg_scale = 7.5;
        let text = infotext(&s, "my: model, v2", "abc");
        assert!(!text.contains("Negative prompt"));
        assert!(text.contains("CFG scale: 7.5"));
        assert!(text.contains(r#"Model: "my: model, v2""#), "{text}");
    }
}
