//! Owns the A1111 `/sdapi/v1` bodies: the txt2img and img2img requests with A1111's defaults
//! (v1.10.1 `modules/processing.py`, `modules/api/models.py`), the response and error shapes, and
//! the images clients send (raw base64 or `data:` URLs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::lenient;
use crate::api::FieldError;

/// Most batches one call may ask for (A1111's UI slider maximum).
pub const MAX_N_ITER: i64 = 100;
/// A1111 draws a random seed with `random.randrange(4294967294)`.
pub const RANDOM_SEED_BOUND: u32 = 4_294_967_294;
/// The legacy field A1111 falls back to when `sampler_name` is empty: the effective default sampler.
pub const DEFAULT_SAMPLER_INDEX: &str = "Euler";

// ---------------------------------------------------------------------------------------------
// Errors (spec 1.3)
// ---------------------------------------------------------------------------------------------

/// A1111's body for `HTTPException`s and uncaught exceptions (`api.py:api_middleware.handle_exception`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The exception's class name: `HTTPException`, `RuntimeError`, ...
    pub error: String,
    /// An `HTTPException`'s detail; `""` for other exceptions.
    pub detail: String,
    /// Always `""` in practice.
    pub body: String,
    /// `str(exception)`: `"<status>: <detail>"` for an `HTTPException`.
    pub errors: String,
}

impl ErrorBody {
    /// What `raise HTTPException(status_code=status, detail=detail)` produces.
    pub fn http(status: u16, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self { error: "HTTPException".into(), errors: format!("{status}: {detail}"), detail, body: String::new() }
    }

    /// What an uncaught exception of class `class` produces (status 500).
    pub fn exception(class: &str, message: impl Into<String>) -> Self {
        Self { error: class.into(), detail: String::new(), body: String::new(), errors: message.into() }
    }
}

/// FastAPI's 422 body for request validation errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationErrorBody {
    pub detail: Vec<ValidationItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationItem {
    /// `["body", "<field>", ...]` or `["query", "<name>"]`.
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ValidationItem {
    /// An item with an explicit location and pydantic type.
    pub fn new(loc: Vec<Value>, msg: &str, kind: &str) -> Self {
        Self { loc, msg: msg.to_string(), kind: kind.to_string() }
    }

    pub fn at(place: &str, path: &[&str], msg: &str) -> Self {
        let loc = std::iter::once(place).chain(path.iter().copied()).map(|s| Value::String(s.to_string())).collect();
        Self { loc, msg: msg.to_string(), kind: lenient::error_type(msg).to_string() }
    }

    /// An Easel refusal, located at the A1111 field it concerns.
    pub fn refused(e: &FieldError) -> Self {
        let field = a1111_field(&e.field);
        let path: Vec<&str> = field.split('.').collect();
        Self { kind: "value_error".into(), ..Self::at("body", &path, &e.message) }
    }
}

/// The 422 body for refusals (the door's own and `ServiceError::Invalid` from `submit`).
pub fn refusal_body(fields: &[FieldError]) -> ValidationErrorBody {
    ValidationErrorBody { detail: fields.iter().map(ValidationItem::refused).collect() }
}

/// The A1111 field an Easel `FieldError` field stands for (names already A1111's pass through).
pub fn a1111_field(easel: &str) -> String {
    match easel {
        "sampler" => "sampler_name",
        "schedule" => "scheduler",
        "strength" | "hires.strength" => "denoising_strength",
        "hires" | "hires.scale" => "hr_scale",
        "hires.steps" => "hr_second_pass_steps",
        "hires.upscaler" => "hr_upscaler",
        "init_image" => "init_images",
        "model" => "override_settings.sd_model_checkpoint",
        "vae" => "override_settings.sd_vae",
        "clip_skip" => "override_settings.CLIP_stop_at_last_layers",
        "randn_source" => "override_settings.randn_source",
        "eta_noise_seed_delta" => "override_settings.eta_noise_seed_delta",
        "loras" => "prompt",
        "compat" | "prompt_syntax" | "outpaint" => "body",
        other => other,
    }
    .to_string()
}

/// Reads a JSON body into `T`; on failure names every key whose value cannot be read (one
/// single-key attempt per key), as FastAPI's 422 does.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ValidationErrorBody> {
    let Some(object) = body.as_object() else {
        return Err(ValidationErrorBody { detail: vec![ValidationItem::at("body", &[], lenient::NOT_DICT)] });
    };
    match serde_json::from_value::<T>(body.clone()) {
        Ok(parsed) => Ok(parsed),
        Err(whole) => {
            let mut detail: Vec<ValidationItem> = object
                .iter()
                .filter_map(|(key, value)| {
                    let one = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
                    serde_json::from_value::<T>(one).err().map(|e| ValidationItem::at("body", &[key.as_str()], &e.to_string()))
                })
                .collect();
            if detail.is_empty() {
                detail.push(ValidationItem::at("body", &[], &whole.to_string()));
            }
            Err(ValidationErrorBody { detail })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests (spec 2.1, 2.2). Every field is optional as in A1111's pydantic model; `Default` holds
// A1111's defaults, so an absent field takes them and an explicit `null` reads as `None`.
// Unknown keys are ignored (no `deny_unknown_fields`).
// ---------------------------------------------------------------------------------------------

/// The fields `StableDiffusionProcessing` exposes, plus the API-only extras both endpoints share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonParams {
    #[serde(deserialize_with = "lenient::string")]
    pub prompt: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub negative_prompt: Option<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub styles: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient::int")]
    pub seed: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub subseed: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    pub subseed_strength: Option<f64>,
    #[serde(deserialize_with = "lenient::int")]
    pub seed_resize_from_h: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub seed_resize_from_w: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub sampler_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub scheduler: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub batch_size: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub n_iter: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub steps: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    pub cfg_scale: Option<f64>,
    #[serde(deserialize_with = "lenient::int")]
    pub width: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub height: Option<i64>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub restore_faces: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub tiling: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub do_not_save_samples: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub do_not_save_grid: Option<bool>,
    #[serde(deserialize_with = "lenient::float")]
    pub eta: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub s_min_uncond: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub s_churn: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub s_tmax: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub s_tmin: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub s_noise: Option<f64>,
    #[serde(deserialize_with = "lenient::dict")]
    pub override_settings: Option<Map<String, Value>>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub override_settings_restore_afterwards: Option<bool>,
    #[serde(deserialize_with = "lenient::string")]
    pub refiner_checkpoint: Option<String>,
    #[serde(deserialize_with = "lenient::float")]
    pub refiner_switch_at: Option<f64>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub disable_extra_networks: Option<bool>,
    #[serde(deserialize_with = "lenient::string")]
    pub firstpass_image: Option<String>,
    #[serde(deserialize_with = "lenient::dict")]
    pub comments: Option<Map<String, Value>>,
    // API-only extras (`models.py`).
    #[serde(deserialize_with = "lenient::string")]
    pub sampler_index: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub script_name: Option<String>,
    #[serde(deserialize_with = "lenient::list")]
    pub script_args: Option<Vec<Value>>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub send_images: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub save_images: Option<bool>,
    #[serde(deserialize_with = "lenient::dict")]
    pub alwayson_scripts: Option<Map<String, Value>>,
    #[serde(deserialize_with = "lenient::string")]
    pub force_task_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub infotext: Option<String>,
}

impl Default for CommonParams {
    fn default() -> Self {
        Self {
            prompt: Some(String::new()),
            negative_prompt: Some(String::new()),
            styles: None,
            seed: Some(-1),
            subseed: Some(-1),
            subseed_strength: Some(0.0),
            seed_resize_from_h: Some(-1),
            seed_resize_from_w: Some(-1),
            sampler_name: None,
            scheduler: None,
            batch_size: Some(1),
            n_iter: Some(1),
            steps: Some(50),
            cfg_scale: Some(7.0),
            width: Some(512),
            height: Some(512),
            restore_faces: None,
            tiling: None,
            do_not_save_samples: Some(false),
            do_not_save_grid: Some(false),
            eta: None,
            s_min_uncond: None,
            s_churn: None,
            s_tmax: None,
            s_tmin: None,
            s_noise: None,
            override_settings: None,
            override_settings_restore_afterwards: Some(true),
            refiner_checkpoint: None,
            refiner_switch_at: None,
            disable_extra_networks: Some(false),
            firstpass_image: None,
            comments: None,
            sampler_index: Some(DEFAULT_SAMPLER_INDEX.to_string()),
            script_name: None,
            script_args: Some(Vec::new()),
            send_images: Some(true),
            save_images: Some(false),
            alwayson_scripts: Some(Map::new()),
            force_task_id: None,
            infotext: None,
        }
    }
}

/// `POST /sdapi/v1/txt2img` (`StableDiffusionProcessingTxt2Img`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Txt2ImgRequest {
    #[serde(flatten)]
    pub common: CommonParams,
    #[serde(deserialize_with = "lenient::boolean")]
    pub enable_hr: Option<bool>,
    /// `null` by default here: the base class's default wins in A1111's model generator.
    #[serde(deserialize_with = "lenient::float")]
    pub denoising_strength: Option<f64>,
    #[serde(deserialize_with = "lenient::int")]
    pub firstphase_width: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub firstphase_height: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    pub hr_scale: Option<f64>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_upscaler: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub hr_second_pass_steps: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub hr_resize_x: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub hr_resize_y: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_checkpoint_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_sampler_name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_scheduler: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_prompt: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub hr_negative_prompt: Option<String>,
}

impl Default for Txt2ImgRequest {
    fn default() -> Self {
        Self {
            common: CommonParams::default(),
            enable_hr: Some(false),
            denoising_strength: None,
            firstphase_width: Some(0),
            firstphase_height: Some(0),
            hr_scale: Some(2.0),
            hr_upscaler: None,
            hr_second_pass_steps: Some(0),
            hr_resize_x: Some(0),
            hr_resize_y: Some(0),
            hr_checkpoint_name: None,
            hr_sampler_name: None,
            hr_scheduler: None,
            hr_prompt: Some(String::new()),
            hr_negative_prompt: Some(String::new()),
        }
    }
}

/// `POST /sdapi/v1/img2img` (`StableDiffusionProcessingImg2Img`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Img2ImgRequest {
    #[serde(flatten)]
    pub common: CommonParams,
    /// Base64 or data URLs; `null` -> 404 "Init image not found".
    #[serde(deserialize_with = "lenient::strings")]
    pub init_images: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient::int")]
    pub resize_mode: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    pub denoising_strength: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    pub image_cfg_scale: Option<f64>,
    #[serde(deserialize_with = "lenient::string")]
    pub mask: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub mask_blur_x: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub mask_blur_y: Option<i64>,
    /// When an integer, sets both `mask_blur_x` and `mask_blur_y`.
    #[serde(deserialize_with = "lenient::int")]
    pub mask_blur: Option<i64>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub mask_round: Option<bool>,
    #[serde(deserialize_with = "lenient::int")]
    pub inpainting_fill: Option<i64>,
    /// A1111's API default is `true` ("Only masked"), unlike its UI.
    #[serde(deserialize_with = "lenient::boolean")]
    pub inpaint_full_res: Option<bool>,
    #[serde(deserialize_with = "lenient::int")]
    pub inpaint_full_res_padding: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub inpainting_mask_invert: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    pub initial_noise_multiplier: Option<f64>,
    #[serde(deserialize_with = "lenient::string")]
    pub latent_mask: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub include_init_images: Option<bool>,
}

impl Default for Img2ImgRequest {
    fn default() -> Self {
        Self {
            common: CommonParams::default(),
            init_images: None,
            resize_mode: Some(0),
            denoising_strength: Some(0.75),
            image_cfg_scale: None,
            mask: None,
            mask_blur_x: Some(4),
            mask_blur_y: Some(4),
            mask_blur: None,
            mask_round: Some(true),
            inpainting_fill: Some(0),
            inpaint_full_res: Some(true),
            inpaint_full_res_padding: Some(0),
            inpainting_mask_invert: Some(0),
            initial_noise_multiplier: None,
            latent_mask: None,
            include_init_images: Some(false),
        }
    }
}

impl Img2ImgRequest {
    /// The request as `parameters` echoes it: the pictures left out unless `include_init_images`.
    pub fn echo(&self) -> Img2ImgRequest {
        let mut echo = self.clone();
        if !self.include_init_images.unwrap_or(false) {
            echo.init_images = None;
            echo.mask = None;
        }
        echo
    }

    /// Whether the mask is to be inverted before it is uploaded (A1111: any truthy value).
    pub fn invert_mask(&self) -> bool {
        self.mask.is_some() && self.inpainting_mask_invert.unwrap_or(0) != 0
    }
}

/// What `init_images` allows the handler to do.
#[derive(Debug, Clone, PartialEq)]
pub enum InitImage<'a> {
    /// `null`: A1111 answers 404 "Init image not found".
    Missing,
    One(&'a str),
    /// None, or more than Easel takes.
    Refused(FieldError),
}

pub fn init_image(req: &Img2ImgRequest) -> InitImage<'_> {
    match req.init_images.as_deref() {
        None => InitImage::Missing,
        Some([one]) => InitImage::One(one),
        Some([]) => InitImage::Refused(FieldError::new("init_images", "init_images is empty; send one base64 image")),
        Some(many) => InitImage::Refused(FieldError::new(
            "init_images",
            format!("{} init images sent; Easel takes one per request (send one call per image)", many.len()),
        )),
    }
}

/// `script_name` and enabled `alwayson_scripts` get A1111's own 422s: Easel has no scripts.
pub fn script_refusal(c: &CommonParams) -> Option<ErrorBody> {
    if let Some(name) = c.script_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(ErrorBody::http(422, format!("Script '{name}' not found")));
    }
    let scripts = c.alwayson_scripts.as_ref()?;
    scripts
        .iter()
        .find(|(_, entry)| alwayson_enabled(entry))
        .map(|(name, _)| ErrorBody::http(422, format!("always on script {name} not found")))
}

/// An entry without args, with `args: []` or with `args[0] == false` changes nothing.
fn alwayson_enabled(entry: &Value) -> bool {
    match entry.get("args").and_then(Value::as_array) {
        None => false,
        Some(args) => args.first().is_some_and(|first| first != &Value::Bool(false)),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `txt2img` / `img2img` (`models.py:TextToImageResponse`). `parameters` is the parsed request
/// ([`Txt2ImgRequest`] or [`Img2ImgRequest::echo`]); `info` is [`info_json`]'s string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResponse<P> {
    /// Raw base64 PNGs, no `data:` prefix.
    pub images: Vec<String>,
    pub parameters: P,
    pub info: String,
}

/// `GET /progress` (`models.py:ProgressResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressResponse {
    pub progress: f64,
    pub eta_relative: f64,
    pub state: ProgressState,
    pub current_image: Option<String>,
    pub textinfo: Option<String>,
}

/// `shared_state.py:State.dict`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressState {
    pub skipped: bool,
    pub interrupted: bool,
    pub stopping_generation: bool,
    pub job: String,
    pub job_count: i64,
    pub job_timestamp: String,
    pub job_no: i64,
    pub sampling_step: i64,
    pub sampling_steps: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdModelItem {
    pub title: String,
    pub model_name: String,
    pub hash: Option<String>,
    pub sha256: Option<String>,
    pub filename: String,
    pub config: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdVaeItem {
    pub model_name: String,
    pub filename: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerItem {
    pub name: String,
    pub aliases: Vec<String>,
    /// Values stringified as A1111's response model does (`True` -> `"True"`).
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerItem {
    pub name: String,
    pub label: String,
    pub aliases: Option<Vec<String>>,
    pub default_rho: Option<f64>,
    pub need_inner_model: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpscalerItem {
    pub name: String,
    pub model_name: Option<String>,
    pub model_path: Option<String>,
    pub model_url: Option<String>,
    pub scale: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentUpscaleModeItem {
    pub name: String,
}

/// `GET /loras` (`extensions-builtin/Lora/scripts/lora_script.py:create_lora_json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraItem {
    /// The file stem without folders (what `<lora:NAME>` uses).
    pub name: String,
    /// `ss_output_name` from the file's metadata, else `name`.
    pub alias: String,
    pub path: String,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingItem {
    pub step: Option<i64>,
    pub sd_checkpoint: Option<String>,
    pub sd_checkpoint_name: Option<String>,
    /// Width of each vector (768 for SD 1.x).
    pub shape: i64,
    /// Number of vectors (tokens) the embedding stands for.
    pub vectors: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub loaded: BTreeMap<String, EmbeddingItem>,
    pub skipped: BTreeMap<String, EmbeddingItem>,
}

/// `GET /memory` (`api.py:Api.get_memory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResponse {
    pub ram: Value,
    pub cuda: Value,
}

impl MemoryResponse {
    /// `used` = the process's resident bytes, `total` = physical RAM; CUDA is never available.
    pub fn new(used: Option<u64>, total: Option<u64>) -> Self {
        let ram = match (used, total) {
            (Some(used), Some(total)) => json!({"free": total.saturating_sub(used) as f64, "used": used, "total": total as f64}),
            _ => json!({"error": "memory statistics are unavailable on this system"}),
        };
        Self { ram, cuda: json!({"error": "unavailable"}) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptsList {
    pub txt2img: Vec<String>,
    pub img2img: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PngInfoRequest {
    /// Required; `None` -> 422 `field required` at `["body", "image"]`.
    #[serde(deserialize_with = "lenient::string")]
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PngInfoResponse {
    pub info: String,
    pub items: Map<String, Value>,
    pub parameters: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Images in (spec 1.2)
// ---------------------------------------------------------------------------------------------

/// Why an image string was not read; each is A1111's own 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDataError {
    /// An `http(s)://` URL: Easel never fetches.
    RequestsNotAllowed,
    Invalid,
}

impl ImageDataError {
    pub fn body(self) -> ErrorBody {
        match self {
            ImageDataError::RequestsNotAllowed => ErrorBody::http(500, "Requests not allowed"),
            ImageDataError::Invalid => ErrorBody::http(500, "Invalid encoded image"),
        }
    }
}

/// The bytes of an image sent as raw base64 or a `data:` URL (decoding them is the uploads'
/// job).
pub fn decode_image_data(text: &str) -> Result<Vec<u8>, ImageDataError> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(ImageDataError::RequestsNotAllowed);
    }
    let b64 = if text.starts_with("data:") { text.split_once(',').map(|(_, b)| b).ok_or(ImageDataError::Invalid)? } else { text };
    crate::jobs::base64::base64_decode(b64).filter(|bytes| !bytes.is_empty()).ok_or(ImageDataError::Invalid)
}
