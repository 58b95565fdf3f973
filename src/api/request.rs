//! What a user asks for when generating, and the rules it must satisfy.
//!
//! Shared by every door into Easel (CLI, REST API, server functions, the browser form), so the
//! same request is valid or invalid everywhere, with the same field-level messages. Plain data:
//! compiled for the server and for wasm.

use serde::{Deserialize, Serialize};

use super::sampler::{Sampler, Schedule};

pub const DEFAULT_STEPS: u32 = 20;
pub const DEFAULT_CFG_SCALE: f32 = 7.0;
pub const DEFAULT_SIZE: u32 = 512;
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const MAX_STEPS: u32 = 150;
pub const MAX_CFG_SCALE: f32 = 30.0;
pub const MAX_BATCH_SIZE: u32 = 8;
/// Longest prompt accepted, in characters (far beyond CLIP's 77 tokens; guards memory).
pub const MAX_PROMPT_CHARS: usize = 10_000;

/// A text-to-image request as it arrives: every setting optional, defaults filled by [`resolve`].
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

impl GenerateRequest {
    /// Applies defaults and checks every rule. `random_seed` supplies the seed when none is given
    /// (the caller decides where randomness comes from). All problems are reported, not just the first.
    pub fn resolve(&self, random_seed: impl FnOnce() -> u64) -> Result<GenerationSettings, Vec<FieldError>> {
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
        let width = self.width.unwrap_or(DEFAULT_SIZE);
        let height = self.height.unwrap_or(DEFAULT_SIZE);
        check_size("width", width, &mut errors);
        check_size("height", height, &mut errors);
        let batch_size = self.batch_size.unwrap_or(1);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            errors.push(FieldError::new("batch_size", format!("batch_size {batch_size} is outside 1..{MAX_BATCH_SIZE}")));
        }
        let sampler = match self.sampler.as_deref() {
            None => Some(Sampler::DEFAULT),
            Some(name) => Sampler::parse(name).or_else(|| {
                errors.push(FieldError::new("sampler", format!("unknown sampler {name:?}; use one of {}", Sampler::names())));
                None
            }),
        };
        let schedule = match self.schedule.as_deref() {
            None => sampler.map(Sampler::default_schedule),
            Some(name) => Schedule::parse(name).or_else(|| {
                errors.push(FieldError::new("schedule", format!("unknown schedule {name:?}; use one of {}", Schedule::names())));
                None
            }),
        };
        if let (Some(sampler), Some(Schedule::Karras)) = (sampler, schedule) {
            if !sampler.supports_karras() {
                errors.push(FieldError::new(
                    "schedule",
                    format!("sampler {sampler} has no karras schedule; use default, or one of {}", Sampler::karras_names()),
                ));
            }
        }
        let (Some(sampler), Some(schedule)) = (sampler, schedule) else { return Err(errors) };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(GenerationSettings {
            prompt: self.prompt.clone(),
            negative_prompt,
            seed: self.seed.unwrap_or_else(random_seed),
            steps,
            cfg_scale,
            width,
            height,
            sampler,
            schedule,
            batch_size,
            model: self.model.clone(),
        })
    }
}

/// Field names a request body may contain.
pub const REQUEST_FIELDS: [&str; 11] =
    ["prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler", "schedule", "batch_size", "model"];

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
        let cfg_scale = match present("cfg_scale") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(x) => Some(x as f32),
                None => {
                    errors.push(FieldError::new("cfg_scale", format!("cfg_scale must be a number, got {v}")));
                    None
                }
            },
        };
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
        })
    }
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
    fn unknown_json_fields_are_rejected() {
        let err = serde_json::from_str::<GenerateRequest>(r#"{"prompt":"a","stpes":3}"#).unwrap_err();
        assert!(err.to_string().contains("stpes"));
    }
}
