//! Owns what an A1111 call answers besides images: the `info` string (`Processed.js()` in
//! Python's JSON format), `/progress`, and reading infotexts back (`png-info`).

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::plan::*;
use super::wire::*;
use crate::api::{GenerationSettings, ImageView};
pub use crate::engine::infotext::{infotext_pairs, parse_infotext};

// ---------------------------------------------------------------------------------------------
// `info` (spec 2.5)
// ---------------------------------------------------------------------------------------------

/// A JSON object that keeps its keys in insertion order (A1111's dicts do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderedMap(pub Vec<(String, Value)>);

impl Serialize for OrderedMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `Processed.js()`'s object, fields in its key order.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub prompt: String,
    pub all_prompts: Vec<String>,
    pub negative_prompt: String,
    pub all_negative_prompts: Vec<String>,
    pub seed: u64,
    pub all_seeds: Vec<u64>,
    pub subseed: u64,
    pub all_subseeds: Vec<u64>,
    pub subseed_strength: f64,
    pub width: i64,
    pub height: i64,
    pub sampler_name: String,
    pub cfg_scale: f64,
    pub steps: i64,
    pub batch_size: i64,
    pub restore_faces: bool,
    pub face_restoration_model: Option<String>,
    pub sd_model_name: Option<String>,
    pub sd_model_hash: Option<String>,
    pub sd_vae_name: Option<String>,
    pub sd_vae_hash: Option<String>,
    pub seed_resize_from_w: i64,
    pub seed_resize_from_h: i64,
    pub denoising_strength: Option<f64>,
    pub extra_generation_params: OrderedMap,
    pub index_of_first_image: i64,
    pub infotexts: Vec<String>,
    pub styles: Vec<String>,
    pub job_timestamp: String,
    pub clip_skip: i64,
    pub is_using_inpainting_conditioning: bool,
    pub version: Option<String>,
}

/// What [`info_json`] reads.
pub struct InfoInput<'a> {
    pub common: &'a CommonParams,
    pub planned: &'a Planned,
    /// The first job's settings as Easel recorded them (`JobView::request`).
    pub settings: &'a GenerationSettings,
    /// Every returned image, batch 0 first.
    pub images: &'a [ImageView],
    /// `YYYYmmddHHMMSS` of the call's start ([`job_timestamp_utc`]).
    pub job_timestamp: &'a str,
    pub is_using_inpainting_conditioning: bool,
    /// `Some("easel-<version>")`, or `None`.
    pub version: Option<&'a str>,
}

/// Easel's `f32` settings as the decimal a user typed (`0.3f32` -> `0.3`, not `0.30000001...`).
pub fn f32_as_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The `info` string: `Processed.js()` rebuilt from the plan, Easel's settings and the images'
/// infotexts (model, VAE and network hashes are read back from them, so `info` agrees with the
/// PNGs), in Python's `json.dumps` format.
pub fn info_json(input: &InfoInput<'_>) -> String {
    let c = input.common;
    let p = input.planned;
    let total = (p.n_iter * p.batch_size) as usize;
    let prompt = c.prompt.clone().unwrap_or_default();
    let negative = c.negative_prompt.clone().unwrap_or_default();
    let all_seeds = p.all_seeds();
    let all_subseeds = p.all_subseeds();
    let first = input.images.first().map(|i| infotext_pairs(&i.infotext)).unwrap_or_default();
    let pair = |key: &str| first.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mut extra = p.extra_generation_params.clone();
    for key in ["Lora hashes", "TI hashes"] {
        if let Some(value) = pair(key) {
            extra.push((key.to_string(), json!(value)));
        }
    }
    if let Some(label) = p.choice.schedule_label() {
        extra.push(("Schedule type".into(), json!(label)));
    }
    let info = Info {
        all_prompts: vec![prompt.clone(); total],
        prompt,
        all_negative_prompts: vec![negative.clone(); total],
        negative_prompt: negative,
        seed: all_seeds.first().copied().unwrap_or(p.seed),
        all_seeds,
        subseed: all_subseeds.first().copied().unwrap_or(p.subseed),
        all_subseeds,
        subseed_strength: c.subseed_strength.unwrap_or(0.0),
        width: c.width.unwrap_or(512),
        height: c.height.unwrap_or(512),
        sampler_name: p.choice.sampler.name.to_string(),
        cfg_scale: f32_as_f64(input.settings.cfg_scale),
        steps: i64::from(input.settings.steps),
        batch_size: i64::from(input.settings.batch_size),
        restore_faces: false,
        face_restoration_model: None,
        sd_model_name: pair("Model"),
        sd_model_hash: pair("Model hash"),
        sd_vae_name: pair("VAE"),
        sd_vae_hash: pair("VAE hash"),
        seed_resize_from_w: c.seed_resize_from_w.unwrap_or(-1),
        seed_resize_from_h: c.seed_resize_from_h.unwrap_or(-1),
        denoising_strength: p.denoising_strength,
        extra_generation_params: OrderedMap(extra),
        index_of_first_image: 0,
        infotexts: input.images.iter().map(|i| i.infotext.clone()).collect(),
        styles: c.styles.clone().unwrap_or_default(),
        job_timestamp: input.job_timestamp.to_string(),
        clip_skip: i64::from(input.settings.clip_skip),
        is_using_inpainting_conditioning: input.is_using_inpainting_conditioning,
        version: input.version.map(str::to_string),
    };
    to_python_json(&info)
}

/// Python's `json.dumps` defaults: `", "` and `": "` separators, non-ASCII as `\uXXXX`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()> {
        for ch in fragment.chars() {
            if (' '..='~').contains(&ch) {
                writer.write_all(&[ch as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serializes like Python's `json.dumps(value)`.
pub fn to_python_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    match value.serialize(&mut serializer) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => "{}".to_string(),
    }
}

/// `YYYYmmddHHMMSS` in UTC (A1111 uses local time; Easel has no time-zone database).
pub fn job_timestamp_utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// Progress (spec 5.1)
// ---------------------------------------------------------------------------------------------

/// One in-flight A1111 call, as the handler keeps it from `Easel::watch` events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallProgress {
    /// `"scripts_txt2img"`, `"scripts_img2img"`, or `"Batch k out of n"`.
    pub job: String,
    /// `n_iter`.
    pub job_count: u32,
    /// Batches finished.
    pub job_no: u32,
    pub sampling_step: u32,
    pub sampling_steps: u32,
    pub job_timestamp: String,
    pub interrupted: bool,
    pub skipped: bool,
    /// Seconds since the call began.
    pub elapsed_seconds: f64,
    /// The last `Progress` event's preview.
    pub preview_png_base64: Option<String>,
}

/// `api.py:Api.progressapi` over the oldest in-flight call (`None`: idle).
pub fn progress_response(call: Option<&CallProgress>, skip_current_image: bool) -> ProgressResponse {
    let Some(c) = call.filter(|c| c.job_count > 0) else {
        return ProgressResponse { progress: 0.0, eta_relative: 0.0, state: ProgressState::default(), current_image: None, textinfo: None };
    };
    let count = f64::from(c.job_count);
    let mut progress = 0.01 + f64::from(c.job_no) / count;
    if c.sampling_steps > 0 {
        progress += f64::from(c.sampling_step) / f64::from(c.sampling_steps) / count;
    }
    let eta_relative = c.elapsed_seconds / progress - c.elapsed_seconds;
    ProgressResponse {
        progress: progress.min(1.0),
        eta_relative,
        state: ProgressState {
            skipped: c.skipped,
            interrupted: c.interrupted,
            stopping_generation: false,
            job: c.job.clone(),
            job_count: i64::from(c.job_count),
            job_timestamp: c.job_timestamp.clone(),
            job_no: i64::from(c.job_no),
            sampling_step: i64::from(c.sampling_step),
            sampling_steps: i64::from(c.sampling_steps),
        },
        current_image: if skip_current_image { None } else { c.preview_png_base64.clone() },
        textinfo: None,
    }
}

/// `png-info`'s `parameters`: the pairs (with `<Key>-1`/`-2` for `WxH` values), `Prompt`,
/// `Negative prompt`, and A1111's defaults for missing keys. Not done: styles extraction, the
/// `Emphasis` and version back-compatibility keys.
pub fn png_info_parameters(text: &str) -> Map<String, Value> {
    let (prompt, negative, pairs) = parse_infotext(text);
    let mut res = Map::new();
    for (key, value) in pairs {
        let size = value.split_once('x').filter(|(w, h)| {
            !w.is_empty() && !h.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) && h.bytes().all(|b| b.is_ascii_digit())
        });
        match size {
            Some((w, h)) => {
                res.insert(format!("{key}-1"), json!(w));
                res.insert(format!("{key}-2"), json!(h));
            }
            None => {
                res.insert(key, json!(value));
            }
        }
    }
    res.insert("Prompt".into(), json!(prompt));
    res.insert("Negative prompt".into(), json!(negative));
    let defaults = [
        ("Clip skip", json!("1")),
        ("Hires resize-1", json!(0)),
        ("Hires resize-2", json!(0)),
        ("Hires sampler", json!("Use same sampler")),
        ("Hires schedule type", json!("Use same scheduler")),
        ("Hires checkpoint", json!("Use same checkpoint")),
        ("Hires prompt", json!("")),
        ("Hires negative prompt", json!("")),
        ("Mask mode", json!("Inpaint masked")),
        ("Masked content", json!("original")),
        ("Inpaint area", json!("Whole picture")),
        ("Masked area padding", json!(32)),
        ("RNG", json!("GPU")),
        ("Schedule type", json!("Automatic")),
        ("Schedule max sigma", json!(0)),
        ("Schedule min sigma", json!(0)),
        ("Schedule rho", json!(0)),
        ("VAE Encoder", json!("Full")),
        ("VAE Decoder", json!("Full")),
        ("FP8 weight", json!("Disable")),
        ("Refiner switch by sampling steps", json!(false)),
    ];
    for (key, value) in defaults {
        res.entry(key.to_string()).or_insert(value);
    }
    res
}
