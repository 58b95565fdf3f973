//! Which tool's picture a request reproduces ([`Compat`]), and the seed settings that only
//! AUTOMATIC1111's noise has ([`NoiseSettings`]: its noise source, variation seeds, "resize seed
//! from", eta noise seed delta), with their rules. Each mode owns its wire name.

use serde::{Deserialize, Serialize};

use super::request::FieldError;

/// Whose numbers a generation follows: the noise (source, per-image or per-batch seeding), the
/// sampler and schedule maths, and how pixels become 8 bits. Serialized as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Compat {
    /// diffusers: one torch CPU generator for the batch's noise and every step's.
    #[default]
    #[serde(rename = "diffusers")]
    Diffusers,
    /// AUTOMATIC1111: image `i` seeded with `seed + i`, from its `randn_source`.
    #[serde(rename = "a1111")]
    A1111,
    /// ComfyUI: one torch CPU draw for the batch, step noise from a generator seeded alike.
    #[serde(rename = "comfyui")]
    ComfyUi,
}

impl Compat {
    pub const ALL: [Compat; 3] = [Compat::Diffusers, Compat::A1111, Compat::ComfyUi];

    pub fn name(self) -> &'static str {
        match self {
            Compat::Diffusers => "diffusers",
            Compat::A1111 => "a1111",
            Compat::ComfyUi => "comfyui",
        }
    }

    pub fn parse(name: &str) -> Option<Compat> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// What the form's list shows.
    pub fn label(self) -> &'static str {
        match self {
            Compat::Diffusers => "diffusers",
            Compat::A1111 => "AUTOMATIC1111",
            Compat::ComfyUi => "ComfyUI",
        }
    }

    /// One line for help texts and the form.
    pub fn description(self) -> &'static str {
        match self {
            Compat::Diffusers => "diffusers: one torch CPU generator for the batch and every step, diffusers' schedulers",
            Compat::A1111 => {
                "AUTOMATIC1111: image i seeded with seed+i, GPU (NV) or CPU noise, variation seeds, its samplers and schedules"
            }
            Compat::ComfyUi => "ComfyUI: one CPU draw for the whole batch, its KSampler samplers and schedulers",
        }
    }

    /// `diffusers, a1111, comfyui`, for messages.
    pub fn names() -> String {
        Self::ALL.map(Compat::name).join(", ")
    }
}

impl std::fmt::Display for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A1111's `randn_source` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RandnSource {
    /// A1111's Philox generator, equal to CUDA's `torch.randn` (A1111's default "GPU" noise).
    #[default]
    #[serde(rename = "nv")]
    Nv,
    /// torch's CPU generator, one per image.
    #[serde(rename = "cpu")]
    Cpu,
}

impl RandnSource {
    pub const ALL: [RandnSource; 2] = [RandnSource::Nv, RandnSource::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            RandnSource::Nv => "nv",
            RandnSource::Cpu => "cpu",
        }
    }

    /// How A1111 writes it in the infotext (`RNG: CPU`; the default is not written).
    pub fn infotext(self) -> &'static str {
        match self {
            RandnSource::Nv => "NV",
            RandnSource::Cpu => "CPU",
        }
    }

    pub fn parse(name: &str) -> Option<RandnSource> {
        let name = name.trim();
        // A1111's own spellings: "GPU" is its default, which NV reproduces on any machine.
        if name.eq_ignore_ascii_case("gpu") {
            return Some(RandnSource::Nv);
        }
        Self::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// The noise settings beyond the seed, resolved: what A1111's `ImageRNG` takes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct NoiseSettings {
    #[serde(default)]
    pub compat: Compat,
    /// A1111 mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randn_source: Option<RandnSource>,
    /// Variation seed (A1111 mode), image `i` using `subseed + i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subseed: Option<u64>,
    /// 0 = the seed's noise, 1 = the variation seed's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subseed_strength: f32,
    /// "Resize seed from" width and height in pixels (A1111 mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_resize_from: Option<(u32, u32)>,
    /// Eta noise seed delta (A1111 mode): the sampler's noise is seeded with `seed + delta`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub eta_noise_seed_delta: u64,
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The noise fields of a request as they arrive.
#[derive(Debug, Clone, Default)]
pub struct NoiseFields<'a> {
    pub compat: Option<&'a str>,
    pub randn_source: Option<&'a str>,
    pub subseed: Option<u64>,
    pub subseed_strength: Option<f64>,
    pub seed_resize_from_w: Option<u32>,
    pub seed_resize_from_h: Option<u32>,
    pub eta_noise_seed_delta: Option<u64>,
}

impl NoiseFields<'_> {
    /// Checks the fields; `random_subseed` supplies the variation seed when a strength is given
    /// without one (A1111 draws a random one too). Settings only A1111's noise has are refused in
    /// the other modes, naming the field.
    pub fn resolve(&self, random_subseed: impl FnOnce() -> u64, errors: &mut Vec<FieldError>) -> NoiseSettings {
        let compat = match self.compat {
            None => Compat::default(),
            Some(name) => Compat::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new("compat", format!("unknown compat {name:?}; use one of {}", Compat::names())));
                Compat::default()
            }),
        };
        let a1111_only = |field: &str, errors: &mut Vec<FieldError>| {
            if compat != Compat::A1111 {
                errors.push(FieldError::new(
                    field,
                    format!("{field} is AUTOMATIC1111's setting; it needs compat a1111 (this request is {compat})"),
                ));
            }
        };
        let randn_source = self.randn_source.map(|name| {
            a1111_only("randn_source", errors);
            RandnSource::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new("randn_source", format!("unknown randn_source {name:?}; use nv or cpu")));
                RandnSource::default()
            })
        });
        let strength = self.subseed_strength.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&strength) {
            errors.push(FieldError::new("subseed_strength", format!("subseed_strength {strength} is outside 0..1")));
        }
        if self.subseed.is_some() || strength != 0.0 {
            a1111_only(if self.subseed.is_some() { "subseed" } else { "subseed_strength" }, errors);
        }
        let subseed = match (self.subseed, strength != 0.0) {
            (Some(s), _) => Some(s),
            (None, true) => Some(random_subseed()),
            (None, false) => None,
        };
        let seed_resize_from = match (self.seed_resize_from_w.unwrap_or(0), self.seed_resize_from_h.unwrap_or(0)) {
            (0, 0) => None,
            (w, h) => {
                a1111_only(if w != 0 { "seed_resize_from_w" } else { "seed_resize_from_h" }, errors);
                let limit = super::request::MAX_SIZE;
                for (field, side) in [("seed_resize_from_w", w), ("seed_resize_from_h", h)] {
                    if side == 0 || side > limit {
                        errors.push(FieldError::new(field, format!("{field} {side}: give both sides, each 1..{limit} (both 0 = off)")));
                    }
                }
                Some((w, h))
            }
        };
        let eta_noise_seed_delta = self.eta_noise_seed_delta.unwrap_or(0);
        if eta_noise_seed_delta != 0 {
            a1111_only("eta_noise_seed_delta", errors);
        }
        NoiseSettings {
            compat,
            randn_source: (compat == Compat::A1111).then(|| randn_source.unwrap_or_default()),
            subseed,
            subseed_strength: strength as f32,
            seed_resize_from,
            eta_noise_seed_delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways_and_a1111_settings_need_a1111() {
        for c in Compat::ALL {
            assert_eq!(Compat::parse(c.name()), Some(c));
        }
        assert_eq!(RandnSource::parse("GPU"), Some(RandnSource::Nv));
        assert_eq!(RandnSource::parse("CPU"), Some(RandnSource::Cpu));
        let mut errors = Vec::new();
        let s = NoiseFields { compat: Some("a1111"), subseed_strength: Some(0.3), ..Default::default() }.resolve(|| 77, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((s.randn_source, s.subseed), (Some(RandnSource::Nv), Some(77)));
        let mut errors = Vec::new();
        NoiseFields { subseed: Some(3), randn_source: Some("cpu"), ..Default::default() }.resolve(|| 0, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["randn_source", "subseed"]);
        assert!(errors[0].message.contains("compat a1111"), "{}", errors[0].message);
        let mut errors = Vec::new();
        NoiseFields { compat: Some("a1111"), subseed_strength: Some(1.5), ..Default::default() }.resolve(|| 0, &mut errors);
        assert_eq!(errors[0].field, "subseed_strength");
    }
}
