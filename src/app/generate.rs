//! The Generate page: the settings form (validated with the same rules as the server), and one
//! card per submitted job that follows it live over SSE (queue position, progress, preview,
//! cancel, the finished images). The form's values persist in local storage across reloads.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};

use super::browser;
use super::image_input::{ImageInput, InitImage};
use super::mask_editor::{MaskCanvas, MaskHandle, MaskTools};
use super::networks::{LoraField, NetworkFields};
use super::prompt_box::PromptBox;
use super::rpc::{cancel_job, list_active_jobs, list_models, submit_generation, SubmitOutcome};
use crate::api::compat::{Compat, RandnSource};
use crate::api::image_modes::{
    InpaintArea, MaskedContent, DEFAULT_HIRES_SCALE, DEFAULT_HIRES_STRENGTH, DEFAULT_INPAINT_PADDING, DEFAULT_MASK_BLUR, DEFAULT_STRENGTH,
    MAX_HIRES_SCALE, MAX_INPAINT_PADDING, MAX_MASK_BLUR, MAX_OUTPAINT,
};
use crate::api::networks::LoraRef;
use crate::api::prompt::{DEFAULT_CLIP_SKIP, MAX_CLIP_SKIP};
use crate::api::{
    FieldError, GenerateRequest, GenerationSettings, HiresRequest, ImageView, JobEvent, JobEventKind, JobStatus, Outpaint, PromptSyntax,
    Sampler, Schedule, Upscaler, VaeTiling,
};

/// Local-storage key of the form's last values (also written by "Use these settings" elsewhere).
pub const FORM_STORAGE_KEY: &str = "easel.form";

const SIZE_PRESETS: [(u32, u32); 4] = [(512, 512), (768, 512), (512, 768), (640, 640)];

/// The form as text fields, exactly as typed; what is saved in local storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormValues {
    pub prompt: String,
    pub negative_prompt: String,
    pub sampler: String,
    /// `auto` (the sampler's own), `default` or `karras`.
    pub schedule: String,
    pub steps: String,
    pub cfg_scale: String,
    pub width: String,
    pub height: String,
    /// Empty means a random seed.
    pub seed: String,
    pub batch_size: String,
    pub model: String,
    /// `img2img` for image-to-image (inpainting, outpainting); anything else is text-to-image.
    pub mode: String,
    /// The picture image-to-image starts from.
    pub init: Option<InitImage>,
    pub strength: String,
    /// A mask id from earlier settings; a painted mask replaces it at submit.
    pub mask: String,
    pub mask_blur: String,
    /// A1111's inpainting (compat a1111): a [`MaskedContent`] name, an [`InpaintArea`] name and
    /// the padding of its only-masked area.
    pub masked_content: String,
    pub inpaint_area: String,
    pub inpaint_padding: String,
    /// Outpainting per side in pixels: left, right, top, bottom ([`Outpaint::SIDES`]).
    pub outpaint: [String; 4],
    pub hires: bool,
    pub hires_scale: String,
    pub hires_strength: String,
    /// 0 = the same steps as the first pass.
    pub hires_steps: String,
    pub hires_upscaler: String,
    /// A [`PromptSyntax`] name.
    pub prompt_syntax: String,
    pub clip_skip: String,
    /// A VAE file name; empty means the model's own.
    pub vae: String,
    /// The LoRAs applied, in the order chosen.
    pub loras: Vec<LoraField>,
    /// A [`Compat`] name, and A1111's noise settings (sent in the a1111 mode only).
    pub compat: String,
    pub randn_source: String,
    pub subseed: String,
    pub subseed_strength: String,
    /// A [`VaeTiling`] name.
    pub vae_tiling: String,
}

/// The mode value of image-to-image.
pub const IMG2IMG: &str = "img2img";
/// The hires scale input's step (A1111's slider step); its minimum is one step above 1.
const HIRES_SCALE_STEP: f32 = 0.25;
/// The field names of the outpaint sides, in [`Outpaint::SIDES`] order.
const OUTPAINT_FIELDS: [&str; 4] = ["outpaint.left", "outpaint.right", "outpaint.top", "outpaint.bottom"];

/// Uploads the painted mask; `None` when nothing is painted after all.
async fn painted_mask_id(mask: MaskHandle) -> Result<Option<String>, String> {
    #[cfg(feature = "hydrate")]
    {
        let Some(png) = mask.export_png().await? else { return Ok(None) };
        super::image_input::upload(&png, "mask.png").await.map(|u| Some(u.id))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = mask;
        Ok(None)
    }
}

impl Default for FormValues {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            sampler: Sampler::DEFAULT.name().into(),
            schedule: "auto".into(),
            steps: "20".into(),
            cfg_scale: "7".into(),
            width: "512".into(),
            height: "512".into(),
            seed: String::new(),
            batch_size: "1".into(),
            model: String::new(),
            mode: "txt2img".into(),
            init: None,
            strength: DEFAULT_STRENGTH.to_string(),
            mask: String::new(),
            mask_blur: DEFAULT_MASK_BLUR.to_string(),
            masked_content: MaskedContent::Original.name().into(),
            inpaint_area: InpaintArea::Whole.name().into(),
            inpaint_padding: DEFAULT_INPAINT_PADDING.to_string(),
            outpaint: ["0", "0", "0", "0"].map(String::from),
            hires: false,
            hires_scale: DEFAULT_HIRES_SCALE.to_string(),
            hires_strength: DEFAULT_HIRES_STRENGTH.to_string(),
            hires_steps: "0".into(),
            hires_upscaler: Upscaler::DEFAULT.name().into(),
            prompt_syntax: PromptSyntax::DEFAULT.name().into(),
            clip_skip: DEFAULT_CLIP_SKIP.to_string(),
            vae: String::new(),
            loras: Vec::new(),
            compat: Compat::default().name().into(),
            randn_source: RandnSource::default().name().into(),
            subseed: String::new(),
            subseed_strength: "0".into(),
            vae_tiling: VaeTiling::default().name().into(),
        }
    }
}

impl FormValues {
    /// The compatibility mode chosen (diffusers when the field holds no known name).
    pub fn compat_mode(&self) -> Compat {
        Compat::parse(&self.compat).unwrap_or_default()
    }
}

impl FormValues {
    pub fn is_img2img(&self) -> bool {
        self.mode == IMG2IMG
    }

    /// Image-to-image from `init`, its size in the width and height fields.
    pub fn start_from(&mut self, init: InitImage) {
        let (w, h) = init.request_size();
        self.width = w.to_string();
        self.height = h.to_string();
        self.mode = IMG2IMG.into();
        self.mask.clear();
        self.init = Some(init);
    }

    /// The values that reproduce `settings` (seed included).
    pub fn from_settings(s: &GenerationSettings) -> Self {
        let defaults = Self::default();
        // The request's size is the picture's; outpainting's canvas is larger.
        let (width, height) = s.init_size();
        let o = s.outpaint.unwrap_or_default();
        Self {
            mode: if s.init_image.is_some() { IMG2IMG.into() } else { defaults.mode.clone() },
            // An upload is served back at its URL; a gallery id never reaches stored settings.
            init: s.init_image.clone().map(|id| InitImage { url: crate::api::image_modes::upload_url(&id), id, width, height }),
            strength: s.strength.map_or(defaults.strength.clone(), |x| x.to_string()),
            mask: s.mask.clone().unwrap_or_default(),
            mask_blur: s.mask_blur.map_or(defaults.mask_blur.clone(), |x| x.to_string()),
            masked_content: s.masked_content.name().into(),
            inpaint_area: s.inpaint_area.name().into(),
            inpaint_padding: if s.inpaint_area.is_whole() { defaults.inpaint_padding.clone() } else { s.inpaint_padding.to_string() },
            outpaint: [o.left, o.right, o.top, o.bottom].map(|x| x.to_string()),
            hires: s.hires.is_some(),
            hires_scale: s.hires.map_or(defaults.hires_scale.clone(), |h| h.scale.to_string()),
            hires_strength: s.hires.map_or(defaults.hires_strength.clone(), |h| h.strength.to_string()),
            hires_steps: s.hires.map_or(defaults.hires_steps.clone(), |h| h.steps.to_string()),
            hires_upscaler: s.hires.map_or(defaults.hires_upscaler.clone(), |h| h.upscaler.name().to_string()),
            prompt: s.prompt.clone(),
            negative_prompt: s.negative_prompt.clone(),
            sampler: s.sampler.name().into(),
            schedule: s.schedule.name().into(),
            steps: s.steps.to_string(),
            cfg_scale: s.cfg_scale.to_string(),
            width: width.to_string(),
            height: height.to_string(),
            seed: s.seed.to_string(),
            batch_size: s.batch_size.to_string(),
            model: s.model.clone().unwrap_or_default(),
            prompt_syntax: s.prompt_syntax.name().into(),
            clip_skip: s.clip_skip.to_string(),
            vae: s.vae.clone().unwrap_or_default(),
            loras: s.loras.iter().map(LoraField::from_ref).collect(),
            compat: s.noise.compat.name().into(),
            randn_source: s.noise.randn_source.unwrap_or_default().name().into(),
            subseed: s.noise.subseed.map(|v| v.to_string()).unwrap_or_default(),
            subseed_strength: s.noise.subseed_strength.to_string(),
            vae_tiling: s.vae_tiling.name().into(),
        }
    }

    /// A1111's inpainting fields, for a request in compat a1111 that has a mask.
    pub fn add_a1111_inpainting(&self, request: &mut GenerateRequest) {
        if self.compat_mode() != Compat::A1111 || request.mask.is_none() {
            return;
        }
        request.masked_content = Some(self.masked_content.clone()).filter(|m| m != MaskedContent::Original.name());
        request.inpaint_area = Some(self.inpaint_area.clone()).filter(|a| a != InpaintArea::Whole.name());
        request.inpaint_padding = request.inpaint_area.as_ref().and_then(|_| self.inpaint_padding.trim().parse().ok());
    }

    /// The request these values describe, or the fields that are not numbers.
    pub fn to_request(&self) -> Result<GenerateRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, text: &str| -> Option<u64> {
            match text.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(FieldError { field: field.into(), message: format!("{field} must be a whole number, got {text:?}") });
                    None
                }
            }
        };
        let img2img = self.is_img2img();
        let steps = number("steps", &self.steps);
        // In image-to-image an empty size means the picture's own.
        let optional = |text: &str| img2img && text.trim().is_empty();
        let width = if optional(&self.width) { None } else { number("width", &self.width) };
        let height = if optional(&self.height) { None } else { number("height", &self.height) };
        let batch_size = number("batch_size", &self.batch_size);
        let seed = if self.seed.trim().is_empty() { None } else { number("seed", &self.seed) };
        let clip_skip = number("clip_skip", &self.clip_skip);
        let a1111 = self.compat_mode() == Compat::A1111;
        let subseed = if a1111 && !self.subseed.trim().is_empty() { number("subseed", &self.subseed) } else { None };
        let mut image = ImageRequest::default();
        if img2img {
            let sides: Vec<Option<u64>> = Outpaint::SIDES
                .iter()
                .zip(&self.outpaint)
                .map(|(side, text)| if text.trim().is_empty() { Some(0) } else { number(&format!("outpaint.{side}"), text) })
                .collect();
            let mask_blur = number("mask_blur", &self.mask_blur);
            if let [Some(left), Some(right), Some(top), Some(bottom)] = sides[..] {
                let side = |n: u64| n.min(u64::from(u32::MAX)) as u32;
                let o = Outpaint { left: side(left), right: side(right), top: side(top), bottom: side(bottom) };
                image.outpaint = Some(o).filter(|o| !o.is_empty());
            }
            image.mask = Some(self.mask.clone()).filter(|m| !m.is_empty());
            if image.mask.is_some() || image.outpaint.is_some() {
                image.mask_blur = mask_blur.map(|n| n.min(u64::from(u32::MAX)) as u32);
            }
            match &self.init {
                Some(init) => image.init_image = Some(init.id.clone()),
                None => errors.push(FieldError::new("init_image", "drop, paste or pick an image to start from")),
            }
        } else if self.hires {
            let hires_steps = number("hires.steps", &self.hires_steps);
            image.hires = Some(HiresRequest {
                scale: None,
                strength: None,
                steps: hires_steps.map(|n| n.min(u64::from(u32::MAX)) as u32),
                upscaler: Some(self.hires_upscaler.clone()),
                seed: None,
            });
        }
        let mut decimal = |field: &str, label: &str, text: &str| -> Option<f64> {
            match text.trim().parse::<f64>() {
                Ok(x) => Some(x),
                Err(_) => {
                    errors.push(FieldError::new(field, format!("{label} must be a number, got {text:?}")));
                    None
                }
            }
        };
        let cfg_scale = decimal("cfg_scale", "CFG scale", &self.cfg_scale).map(|x| x as f32);
        if img2img {
            image.strength = decimal("strength", "strength", &self.strength);
        } else if let Some(h) = image.hires.as_mut() {
            h.scale = decimal("hires.scale", "hires scale", &self.hires_scale);
            h.strength = decimal("hires.strength", "hires strength", &self.hires_strength);
        }
        let subseed_strength = if a1111 { decimal("subseed_strength", "variation strength", &self.subseed_strength) } else { None };
        let loras: Vec<LoraRef> = self.loras.iter().filter_map(|l| l.to_ref().map_err(|e| errors.push(e)).ok()).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let small = |n: Option<u64>| n.map(|n| n.min(u64::from(u32::MAX)) as u32);
        let mut request = GenerateRequest {
            prompt: self.prompt.clone(),
            negative_prompt: Some(self.negative_prompt.clone()).filter(|n| !n.is_empty()),
            seed,
            steps: small(steps),
            cfg_scale,
            width: small(width),
            height: small(height),
            sampler: Some(self.sampler.clone()),
            schedule: Some(self.schedule.clone()).filter(|s| s != "auto"),
            batch_size: small(batch_size),
            model: Some(self.model.clone()).filter(|m| !m.is_empty()),
            init_image: image.init_image,
            mask: image.mask,
            mask_blur: image.mask_blur,
            strength: image.strength,
            outpaint: image.outpaint,
            hires: image.hires,
            prompt_syntax: Some(self.prompt_syntax.clone()),
            clip_skip: small(clip_skip),
            loras: Some(loras).filter(|l| !l.is_empty()),
            vae: Some(self.vae.clone()).filter(|v| !v.is_empty()),
            compat: Some(self.compat.clone()),
            randn_source: a1111.then(|| self.randn_source.clone()),
            subseed,
            subseed_strength: subseed_strength.filter(|s| *s != 0.0),
            vae_tiling: Some(self.vae_tiling.clone()),
            ..GenerateRequest::default()
        };
        self.add_a1111_inpainting(&mut request);
        Ok(request)
    }
}

/// The image-mode fields of a request, gathered by [`FormValues::to_request`].
#[derive(Default)]
struct ImageRequest {
    init_image: Option<String>,
    mask: Option<String>,
    mask_blur: Option<u32>,
    strength: Option<f64>,
    outpaint: Option<Outpaint>,
    hires: Option<HiresRequest>,
}

/// The message of `field` in `errors`, shown under its input (`{field}-error` for aria).
pub fn field_error(errors: RwSignal<Vec<FieldError>>, field: &'static str) -> impl Fn() -> Option<AnyView> + Send + Sync + 'static {
    move || {
        errors
            .with(|e| e.iter().find(|e| e.field == field).map(|e| e.message.clone()))
            .map(|m| view! { <p class="field-error" id=format!("{field}-error") role="alert">{m}</p> }.into_any())
    }
}

/// A job submitted from this page.
#[derive(Clone)]
struct SubmittedJob {
    id: String,
    settings: GenerationSettings,
    position: Option<u64>,
}

#[component]
pub fn GeneratePage() -> impl IntoView {
    let form = RwSignal::new(FormValues::default());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let jobs = RwSignal::new(Vec::<SubmittedJob>::new());
    let last_seed = RwSignal::new(None::<u64>);
    let submitting = RwSignal::new(false);
    let hydrated = RwSignal::new(false);
    let models = Resource::new(|| (), |_| list_models());
    let mask = MaskHandle::new();
    // Only a new picture re-renders the preview and the mask canvas (not every keystroke).
    let init = Memo::new(move |_| form.with(|f| f.init.clone()));
    let img2img = Memo::new(move |_| form.with(FormValues::is_img2img));

    // Browser only: after a reload, jobs still queued or running get their live cards back.
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(active) = list_active_jobs().await {
                jobs.update(|shown| {
                    for job in active.into_iter().rev() {
                        if !shown.iter().any(|s| s.id == job.id) {
                            shown.push(SubmittedJob { id: job.id, settings: job.request, position: job.position });
                        }
                    }
                });
            }
        });
    });

    // Browser only: restore the saved form once, then save every change.
    let restored = StoredValue::new(false);
    Effect::new(move |_| {
        let values = form.get();
        if !restored.get_value() {
            restored.set_value(true);
            hydrated.set(true);
            if let Some(mut saved) = browser::load(FORM_STORAGE_KEY).and_then(|t| serde_json::from_str::<FormValues>(&t).ok()) {
                // An object URL does not outlive the page that made it.
                if let Some(init) = saved.init.as_mut().filter(|i| i.url.starts_with("blob:")) {
                    init.url.clear();
                }
                form.set(saved);
            }
            return;
        }
        if let Ok(text) = serde_json::to_string(&values) {
            browser::save(FORM_STORAGE_KEY, &text);
        }
    });

    let submit = move || {
        if submitting.get_untracked() {
            return;
        }
        let mut values = form.get_untracked();
        let painted = values.is_img2img() && mask.painted.get_untracked();
        if painted {
            // Checked with a stand-in id; the painted mask is uploaded only when all else is valid.
            values.mask = "painted-mask".into();
        }
        let request = match values.to_request() {
            Ok(r) => r,
            Err(e) => return errors.set(e),
        };
        // The same rules the server applies, checked here first so nothing invalid is sent.
        if let Err(e) = request.resolve(|| 0) {
            return errors.set(e);
        }
        errors.set(Vec::new());
        submitting.set(true);
        spawn_local(async move {
            let mut request = request;
            if painted {
                match painted_mask_id(mask).await {
                    Ok(Some(id)) => {
                        request.mask = Some(id);
                        form.with_untracked(|f| f.add_a1111_inpainting(&mut request));
                    }
                    Ok(None) => {
                        request.mask = None;
                        if request.outpaint.is_none() {
                            request.mask_blur = None;
                        }
                    }
                    Err(e) => {
                        errors.set(vec![FieldError::new("mask", format!("could not upload the mask: {e}"))]);
                        submitting.set(false);
                        return;
                    }
                }
            }
            match submit_generation(request).await {
                Ok(SubmitOutcome::Queued(job)) => {
                    let job = *job;
                    last_seed.set(Some(job.request.seed));
                    jobs.update(|j| j.insert(0, SubmittedJob { id: job.id, settings: job.request, position: job.position }));
                }
                Ok(SubmitOutcome::Invalid(e)) => errors.set(e),
                Err(e) => errors.set(vec![FieldError { field: "form".into(), message: format!("could not reach the server: {e}") }]),
            }
            submitting.set(false);
        });
    };

    let send_to_img2img = Callback::new(move |image: InitImage| {
        form.update(|f| f.start_from(image));
        errors.set(Vec::new());
        browser::scroll_to_top();
    });

    let use_settings = Callback::new(move |settings: GenerationSettings| {
        form.set(FormValues::from_settings(&settings));
        errors.set(Vec::new());
    });

    let field_error = move |field: &'static str| field_error(errors, field);
    let invalid = move |field: &'static str| move || errors.with(|e| e.iter().any(|e| e.field == field)).then_some("true");
    let text_input = move |field: &'static str, get: fn(&FormValues) -> &String, set: fn(&mut FormValues, String)| {
        view! {
            <input
                id=field
                name=field
                inputmode="decimal"
                placeholder=move || (img2img.get() && (field == "width" || field == "height")).then_some("image size")
                aria-invalid=invalid(field)
                aria-describedby=format!("{field}-error")
                prop:value=move || form.with(|f| get(f).clone())
                on:input=move |ev| form.update(|f| set(f, event_target_value(&ev)))
            />
        }
    };
    let number_input =
        move |field: &'static str, get: fn(&FormValues) -> &String, set: fn(&mut FormValues, String), max: u32, step: u32| {
            view! {
                <input
                    id=field
                    name=field
                    type="number"
                    min="0"
                    max=max
                    step=step
                    aria-invalid=invalid(field)
                    aria-describedby=format!("{field}-error")
                    prop:value=move || form.with(|f| get(f).clone())
                    on:input=move |ev| form.update(|f| set(f, event_target_value(&ev)))
                />
            }
        };
    let set_mode = move |mode: &'static str| {
        move |_| {
            form.update(|f| f.mode = mode.into());
            errors.set(Vec::new());
        }
    };

    view! {
        <section class="page generate" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Generate"</h1>
            <super::import_settings::ImportSettings on_import=use_settings/>
            <div class="generate-layout">
                <form
                    class="settings"
                    on:submit=move |ev| {
                        ev.prevent_default();
                        submit();
                    }
                    on:keydown=move |ev| {
                        if (ev.ctrl_key() || ev.meta_key()) && ev.key() == "Enter" {
                            ev.prevent_default();
                            submit();
                        }
                    }
                >
                    <PromptBox form=form/>
                    {field_error("prompt")}
                    <div class="mode-switch" role="radiogroup" aria-label="Mode">
                        <label>
                            <input type="radio" name="mode" value="txt2img" prop:checked=move || !img2img.get() on:change=set_mode("txt2img")/>
                            "Text to image"
                        </label>
                        <label>
                            <input type="radio" name="mode" value=IMG2IMG prop:checked=move || img2img.get() on:change=set_mode(IMG2IMG)/>
                            "Image to image"
                        </label>
                    </div>
                    <Show when=move || img2img.get()>
                        <fieldset class="img2img">
                            <legend>"Init image"</legend>
                            <ImageInput init=init.into() on_change=send_to_img2img>
                                {move || {
                                    init.get_untracked().map(|i| view! { <MaskCanvas handle=mask width=i.width height=i.height/> })
                                }}
                            </ImageInput>
                            {field_error("init_image")}
                            <Show when=move || init.with(Option::is_some)>
                                <MaskTools handle=mask/>
                                <Show when=move || form.with(|f| !f.mask.is_empty())>
                                    <p class="hint">
                                        "Using the mask of the earlier job. "
                                        <button type="button" class="chip" on:click=move |_| form.update(|f| f.mask.clear())>
                                            "Drop it"
                                        </button>
                                    </p>
                                </Show>
                            </Show>
                            {field_error("mask")}
                            <label for="strength">{move || format!("Strength {}", form.with(|f| f.strength.clone()))}</label>
                            <input
                                id="strength"
                                name="strength"
                                type="range"
                                min="0.01"
                                max="1"
                                step="0.01"
                                aria-invalid=invalid("strength")
                                prop:value=move || form.with(|f| f.strength.clone())
                                on:input=move |ev| form.update(|f| f.strength = event_target_value(&ev))
                            />
                            {field_error("strength")}
                            <label for="mask_blur">"Mask blur (px)"</label>
                            {number_input("mask_blur", |f| &f.mask_blur, |f, v| f.mask_blur = v, MAX_MASK_BLUR, 1)}
                            {field_error("mask_blur")}
                            <Show when=move || form.with(|f| f.compat == Compat::A1111.name())>
                                <div class="row">
                                    <div>
                                        <label for="masked_content">"Masked content"</label>
                                        <select
                                            id="masked_content"
                                            prop:value=move || form.with(|f| f.masked_content.clone())
                                            on:change=move |ev| form.update(|f| f.masked_content = event_target_value(&ev))
                                        >
                                            {[MaskedContent::Original, MaskedContent::Fill, MaskedContent::LatentNoise, MaskedContent::LatentNothing]
                                                .map(|m| view! { <option value=m.name()>{m.a1111_name().unwrap_or("original")}</option> })
                                                .collect_view()}
                                        </select>
                                        {field_error("masked_content")}
                                    </div>
                                    <div>
                                        <label for="inpaint_area">"Inpaint area"</label>
                                        <select
                                            id="inpaint_area"
                                            prop:value=move || form.with(|f| f.inpaint_area.clone())
                                            on:change=move |ev| form.update(|f| f.inpaint_area = event_target_value(&ev))
                                        >
                                            <option value=InpaintArea::Whole.name()>"Whole picture"</option>
                                            <option value=InpaintArea::OnlyMasked.name()>"Only masked"</option>
                                        </select>
                                        {field_error("inpaint_area")}
                                    </div>
                                    <div>
                                        <label for="inpaint_padding">"Only masked padding (px)"</label>
                                        {number_input("inpaint_padding", |f| &f.inpaint_padding, |f, v| f.inpaint_padding = v, MAX_INPAINT_PADDING, 1)}
                                        {field_error("inpaint_padding")}
                                    </div>
                                </div>
                            </Show>
                            <p class="label">"Outpaint (px per side; not with a painted mask)"</p>
                            <div class="outpaint">
                                <div>
                                    <label for="outpaint.left">"Left"</label>
                                    {number_input("outpaint.left", |f| &f.outpaint[0], |f, v| f.outpaint[0] = v, MAX_OUTPAINT, 8)}
                                </div>
                                <div>
                                    <label for="outpaint.right">"Right"</label>
                                    {number_input("outpaint.right", |f| &f.outpaint[1], |f, v| f.outpaint[1] = v, MAX_OUTPAINT, 8)}
                                </div>
                                <div>
                                    <label for="outpaint.top">"Top"</label>
                                    {number_input("outpaint.top", |f| &f.outpaint[2], |f, v| f.outpaint[2] = v, MAX_OUTPAINT, 8)}
                                </div>
                                <div>
                                    <label for="outpaint.bottom">"Bottom"</label>
                                    {number_input("outpaint.bottom", |f| &f.outpaint[3], |f, v| f.outpaint[3] = v, MAX_OUTPAINT, 8)}
                                </div>
                            </div>
                            {field_error("outpaint")}
                            {OUTPAINT_FIELDS.map(field_error).collect_view()}
                        </fieldset>
                    </Show>
                    <label for="negative_prompt">"Negative prompt"</label>
                    <textarea
                        id="negative_prompt"
                        name="negative_prompt"
                        rows="2"
                        prop:value=move || form.with(|f| f.negative_prompt.clone())
                        on:input=move |ev| form.update(|f| f.negative_prompt = event_target_value(&ev))
                    ></textarea>

                    <div class="row">
                        <div>
                            <label for="sampler">"Sampler"</label>
                            <select
                                id="sampler"
                                prop:value=move || form.with(|f| f.sampler.clone())
                                on:change=move |ev| form.update(|f| f.sampler = event_target_value(&ev))
                            >
                                {Sampler::ALL
                                    .map(|s| {
                                        view! {
                                            <option value=s.name() disabled=move || form.with(|f| !s.runs_in(f.compat_mode()))>
                                                {s.a1111_name()}
                                            </option>
                                        }
                                    })
                                    .collect_view()}
                            </select>
                            {field_error("sampler")}
                        </div>
                        <div>
                            <label for="schedule">"Schedule"</label>
                            <select
                                id="schedule"
                                prop:value=move || form.with(|f| f.schedule.clone())
                                on:change=move |ev| form.update(|f| f.schedule = event_target_value(&ev))
                            >
                                <option value="auto">"Automatic"</option>
                                {Schedule::ALL
                                    .map(|schedule| {
                                        let offered = move |f: &FormValues| {
                                            Sampler::parse(&f.sampler).is_some_and(|s| s.schedules(f.compat_mode()).contains(&schedule))
                                        };
                                        let label = if schedule == Schedule::Default { "Default" } else { schedule.a1111_name() };
                                        view! { <option value=schedule.name() disabled=move || !form.with(offered)>{label}</option> }
                                    })
                                    .collect_view()}
                            </select>
                            {field_error("schedule")}
                        </div>
                    </div>
                    <div class="row">
                        <div>
                            <label for="prompt_syntax">"Prompt syntax"</label>
                            <select
                                id="prompt_syntax"
                                prop:value=move || form.with(|f| f.prompt_syntax.clone())
                                on:change=move |ev| form.update(|f| f.prompt_syntax = event_target_value(&ev))
                            >
                                {PromptSyntax::ALL
                                    .map(|s| view! { <option value=s.name() title=s.description()>{s.label()}</option> })
                                    .collect_view()}
                            </select>
                            {field_error("prompt_syntax")}
                        </div>
                        <div>
                            <label for="clip_skip">"CLIP skip"</label>
                            {number_input("clip_skip", |f| &f.clip_skip, |f, v| f.clip_skip = v, MAX_CLIP_SKIP, 1)}
                            {field_error("clip_skip")}
                        </div>
                    </div>
                    <div class="row">
                        <div>
                            <label for="compat">"Same picture as"</label>
                            <select
                                id="compat"
                                prop:value=move || form.with(|f| f.compat.clone())
                                on:change=move |ev| form.update(|f| f.compat = event_target_value(&ev))
                            >
                                {Compat::ALL
                                    .map(|c| view! { <option value=c.name() title=c.description()>{c.label()}</option> })
                                    .collect_view()}
                            </select>
                            {field_error("compat")}
                        </div>
                        <div>
                            <label for="vae_tiling">"VAE tiling"</label>
                            <select
                                id="vae_tiling"
                                title="Decode large pictures in overlapping tiles, so they need no more memory than 512x512"
                                prop:value=move || form.with(|f| f.vae_tiling.clone())
                                on:change=move |ev| form.update(|f| f.vae_tiling = event_target_value(&ev))
                            >
                                {VaeTiling::ALL.map(|t| view! { <option value=t.name()>{t.name()}</option> }).collect_view()}
                            </select>
                            {field_error("vae_tiling")}
                        </div>
                        <Show when=move || form.with(|f| f.compat == Compat::A1111.name())>
                            <div>
                                <label for="randn_source">"Noise (RNG)"</label>
                                <select
                                    id="randn_source"
                                    prop:value=move || form.with(|f| f.randn_source.clone())
                                    on:change=move |ev| form.update(|f| f.randn_source = event_target_value(&ev))
                                >
                                    <option value=RandnSource::Nv.name() title="A1111's default: the noise of an NVIDIA GPU, on any machine">"GPU (NV)"</option>
                                    <option value=RandnSource::Cpu.name()>"CPU"</option>
                                </select>
                                {field_error("randn_source")}
                            </div>
                        </Show>
                    </div>
                    <Show when=move || form.with(|f| f.compat == Compat::A1111.name())>
                        <div class="row">
                            <div>
                                <label for="subseed">"Variation seed"</label>
                                {text_input("subseed", |f| &f.subseed, |f, v| f.subseed = v)}
                                {field_error("subseed")}
                            </div>
                            <div>
                                <label for="subseed_strength">"Variation strength"</label>
                                {text_input("subseed_strength", |f| &f.subseed_strength, |f, v| f.subseed_strength = v)}
                                {field_error("subseed_strength")}
                            </div>
                        </div>
                    </Show>
                    <div class="row">
                        <div>
                            <label for="steps">"Steps"</label>
                            {text_input("steps", |f| &f.steps, |f, v| f.steps = v)}
                            {field_error("steps")}
                        </div>
                        <div>
                            <label for="cfg_scale">"CFG scale"</label>
                            {text_input("cfg_scale", |f| &f.cfg_scale, |f, v| f.cfg_scale = v)}
                            {field_error("cfg_scale")}
                        </div>
                    </div>
                    <div class="row">
                        <div>
                            <label for="width">"Width"</label>
                            {text_input("width", |f| &f.width, |f, v| f.width = v)}
                            {field_error("width")}
                        </div>
                        <div>
                            <label for="height">"Height"</label>
                            {text_input("height", |f| &f.height, |f, v| f.height = v)}
                            {field_error("height")}
                        </div>
                    </div>
                    <div class="presets" role="group" aria-label="Size presets">
                        {SIZE_PRESETS
                            .iter()
                            .map(|&(w, h)| {
                                view! {
                                    <button
                                        type="button"
                                        class="chip"
                                        on:click=move |_| form.update(|f| {
                                            f.width = w.to_string();
                                            f.height = h.to_string();
                                        })
                                    >
                                        {format!("{w}×{h}")}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </div>
                    <div class="row">
                        <div>
                            <label for="seed">"Seed"</label>
                            <input
                                id="seed"
                                name="seed"
                                placeholder="random"
                                inputmode="numeric"
                                aria-invalid=invalid("seed")
                                prop:value=move || form.with(|f| f.seed.clone())
                                on:input=move |ev| form.update(|f| f.seed = event_target_value(&ev))
                            />
                            <div class="presets">
                                <button type="button" class="chip" on:click=move |_| form.update(|f| f.seed.clear())>
                                    "Random"
                                </button>
                                <button
                                    type="button"
                                    class="chip"
                                    disabled=move || last_seed.get().is_none()
                                    on:click=move |_| {
                                        if let Some(s) = last_seed.get() {
                                            form.update(|f| f.seed = s.to_string());
                                        }
                                    }
                                >
                                    "Reuse last"
                                </button>
                            </div>
                            {field_error("seed")}
                        </div>
                        <div>
                            <label for="batch_size">"Batch size"</label>
                            {text_input("batch_size", |f| &f.batch_size, |f, v| f.batch_size = v)}
                            {field_error("batch_size")}
                        </div>
                    </div>
                    <label for="model">"Model"</label>
                    <select
                        id="model"
                        prop:value=move || form.with(|f| f.model.clone())
                        on:change=move |ev| form.update(|f| f.model = event_target_value(&ev))
                    >
                        <Suspense fallback=|| view! { <option value="">"Default model"</option> }>
                            {move || Suspend::new(async move {
                                let list = models.await.unwrap_or_default();
                                // The default named, so the form never offers one it cannot run.
                                let default = match list.iter().find(|m| m.is_default) {
                                    Some(m) => view! { <option value="">{format!("Default ({})", m.name)}</option> }.into_any(),
                                    None => view! { <option value="" disabled=true>"No model: pull one on the Models page"</option> }.into_any(),
                                };
                                view! {
                                    {default}
                                    {list.into_iter().map(|m| view! { <option value=m.name.clone()>{m.name.clone()}</option> }).collect_view()}
                                }
                            })}
                        </Suspense>
                    </select>
                    {field_error("model")}
                    <NetworkFields form errors />
                    <Show when=move || !img2img.get()>
                        <fieldset class="hires">
                            <legend>"Hires fix"</legend>
                            <label class="check">
                                <input
                                    type="checkbox"
                                    id="hires"
                                    prop:checked=move || form.with(|f| f.hires)
                                    on:change=move |ev| form.update(|f| f.hires = event_target_checked(&ev))
                                />
                                "Enable hires fix"
                            </label>
                            {field_error("hires")}
                            <Show when=move || form.with(|f| f.hires)>
                                <div class="row">
                                    <div>
                                        <label for="hires.scale">"Upscale by"</label>
                                        <input
                                            id="hires.scale"
                                            type="number"
                                            min=1.0 + HIRES_SCALE_STEP
                                            max=MAX_HIRES_SCALE
                                            step=HIRES_SCALE_STEP
                                            aria-invalid=invalid("hires.scale")
                                            prop:value=move || form.with(|f| f.hires_scale.clone())
                                            on:input=move |ev| form.update(|f| f.hires_scale = event_target_value(&ev))
                                        />
                                        {field_error("hires.scale")}
                                    </div>
                                    <div>
                                        <label for="hires.upscaler">"Upscaler"</label>
                                        <select
                                            id="hires.upscaler"
                                            prop:value=move || form.with(|f| f.hires_upscaler.clone())
                                            on:change=move |ev| form.update(|f| f.hires_upscaler = event_target_value(&ev))
                                        >
                                            {Upscaler::ALL.map(|u| view! { <option value=u.name()>{u.a1111_name()}</option> }).collect_view()}
                                        </select>
                                        {field_error("hires.upscaler")}
                                    </div>
                                </div>
                                <div class="row">
                                    <div>
                                        <label for="hires.strength">"Denoising (hires)"</label>
                                        {text_input("hires.strength", |f| &f.hires_strength, |f, v| f.hires_strength = v)}
                                        {field_error("hires.strength")}
                                    </div>
                                    <div>
                                        <label for="hires.steps">"Hires steps (0 = same)"</label>
                                        {text_input("hires.steps", |f| &f.hires_steps, |f, v| f.hires_steps = v)}
                                        {field_error("hires.steps")}
                                    </div>
                                </div>
                            </Show>
                        </fieldset>
                    </Show>
                    {field_error("form")}
                    <button type="submit" class="primary" id="generate" disabled=move || submitting.get()>
                        "Generate"
                    </button>
                    <p class="hint">"Ctrl+Enter also generates."</p>
                </form>
                <div class="jobs" aria-label="Jobs" aria-live="polite">
                    <For each=move || jobs.get() key=|j| j.id.clone() let:job>
                        <JobCard id=job.id settings=job.settings position=job.position on_use=use_settings on_send=send_to_img2img/>
                    </For>
                </div>
            </div>
        </section>
    }
}

/// One job, followed live.
#[component]
fn JobCard(
    id: String,
    settings: GenerationSettings,
    position: Option<u64>,
    on_use: Callback<GenerationSettings>,
    on_send: Callback<InitImage>,
) -> impl IntoView {
    let status = RwSignal::new(JobStatus::Queued);
    let queue_position = RwSignal::new(position);
    let step = RwSignal::new(0u64);
    let total = RwSignal::new(0u64);
    let eta = RwSignal::new(None::<f64>);
    let preview = RwSignal::new(None::<String>);
    let images = RwSignal::new(Vec::<ImageView>::new());
    let error = RwSignal::new(None::<String>);
    let stream = StoredValue::new_local(None::<browser::EventStream>);

    let events_url = format!("/api/v1/generate/{id}/events");
    Effect::new(move |_| {
        if stream.with_value(|s| s.is_some()) {
            return;
        }
        let opened = browser::subscribe(&events_url, &JobEventKind::NAMES, &JobEventKind::TERMINAL_NAMES, move |_name, data| {
            let Ok(event) = serde_json::from_str::<JobEvent>(&data) else { return };
            match event.kind {
                JobEventKind::Queued { position } => queue_position.set(Some(position)),
                JobEventKind::Started => status.set(JobStatus::Running),
                JobEventKind::Progress { step: done, total: of, eta_seconds, preview_png_base64 } => {
                    status.set(JobStatus::Running);
                    step.set(u64::from(done));
                    total.set(u64::from(of));
                    eta.set(eta_seconds);
                    if let Some(png) = preview_png_base64 {
                        preview.set(Some(format!("data:image/png;base64,{png}")));
                    }
                }
                JobEventKind::Succeeded { images: done } => {
                    images.set(done);
                    status.set(JobStatus::Succeeded);
                }
                JobEventKind::Failed { error: message } => {
                    error.set(Some(message));
                    status.set(JobStatus::Failed);
                }
                JobEventKind::Cancelled => status.set(JobStatus::Cancelled),
            }
        });
        stream.set_value(opened);
    });

    let cancel_id = id.clone();
    let cancel = move |_| {
        let id = cancel_id.clone();
        spawn_local(async move {
            let _ = cancel_job(id).await;
        });
    };
    let summary = format!(
        "{} · {} · {} steps · {}×{} · seed {}",
        if settings.prompt.is_empty() { "(empty prompt)".to_string() } else { settings.prompt.clone() },
        settings.sampler.a1111_name(),
        settings.steps,
        settings.width,
        settings.height,
        settings.seed
    );
    let percent = move || if total.get() == 0 { 0 } else { step.get() * 100 / total.get() };
    let reuse = settings.clone();
    view! {
        <article class="job-card" data-job-id=id.clone() data-status=move || status.get().as_str()>
            <p class="job-summary">{summary}</p>
            <p class="job-state" aria-live="polite">
                {move || match status.get() {
                    JobStatus::Queued => match queue_position.get() {
                        Some(0) | None => "Queued: next".to_string(),
                        Some(n) => format!("Queued: {n} ahead"),
                    },
                    JobStatus::Running => match eta.get() {
                        Some(s) => format!("Step {}/{} · ETA {:.0} s", step.get(), total.get(), s.ceil()),
                        None => format!("Step {}/{}", step.get(), total.get()),
                    },
                    JobStatus::Succeeded => "Done".to_string(),
                    JobStatus::Failed => "Failed".to_string(),
                    JobStatus::Cancelled => "Cancelled".to_string(),
                }}
            </p>
            <Show when=move || !status.get().is_terminal()>
                <progress max="100" value=percent aria-label="Progress"></progress>
                <button type="button" class="danger" on:click=cancel.clone()>"Cancel"</button>
            </Show>
            <Show when=move || status.get() == JobStatus::Running && preview.get().is_some()>
                <img class="preview" alt="Live preview" src=move || preview.get().unwrap_or_default()/>
            </Show>
            {move || error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            <div class="job-images">
                <For each=move || images.get() key=|i| i.id.clone() let:image>
                    <figure>
                        <img src=image.url.clone() alt=format!("Generated image, seed {}", image.seed) width=image.width height=image.height/>
                        <figcaption>
                            <a class="button" href=image.url.clone() download="">"Download"</a>
                            {
                                let init = InitImage::from(&image);
                                view! {
                                    <button type="button" class="send-img2img" on:click=move |_| on_send.run(init.clone())>
                                        "Send to img2img"
                                    </button>
                                }
                            }
                        </figcaption>
                    </figure>
                </For>
            </div>
            <Show when=move || status.get() == JobStatus::Succeeded>
                {
                    let reuse = reuse.clone();
                    view! {
                        <button type="button" class="use-settings" on:click=move |_| on_use.run(reuse.clone())>
                            "Use these settings"
                        </button>
                    }
                }
            </Show>
        </article>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_round_trips_settings() {
        let settings = GenerationSettings {
            prompt: "a".into(),
            negative_prompt: "b".into(),
            seed: 42,
            steps: 12,
            cfg_scale: 6.5,
            width: 640,
            height: 512,
            sampler: Sampler::Euler,
            schedule: crate::api::Schedule::Karras,
            batch_size: 2,
            model: Some("tiny-sd".into()),
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
        };
        let again = FormValues::from_settings(&settings).to_request().unwrap().resolve(|| 0).unwrap();
        assert_eq!(again, settings);
        // A1111's noise settings come back too (variation seed, strength, noise source).
        let a1111 = GenerationSettings {
            noise: crate::api::NoiseSettings {
                compat: Compat::A1111,
                randn_source: Some(RandnSource::Cpu),
                subseed: Some(99),
                subseed_strength: 0.3,
                ..Default::default()
            },
            ..settings
        };
        let again = FormValues::from_settings(&a1111).to_request().unwrap().resolve(|| 0).unwrap();
        assert_eq!(again, a1111);
    }

    fn txt2img_settings() -> GenerationSettings {
        FormValues { prompt: "a".into(), seed: "7".into(), ..Default::default() }.to_request().unwrap().resolve(|| 0).unwrap()
    }

    #[test]
    fn image_modes_round_trip_settings() {
        let base = txt2img_settings();
        let img2img = GenerationSettings { init_image: Some("up_1".into()), strength: Some(0.35), width: 64, height: 72, ..base.clone() };
        let inpaint = GenerationSettings { mask: Some("up_2".into()), mask_blur: Some(9), ..img2img.clone() };
        let outpaint = GenerationSettings {
            outpaint: Some(Outpaint { left: 8, right: 16, top: 0, bottom: 64 }),
            mask_blur: Some(4),
            width: 64 + 24,
            height: 72 + 64,
            ..img2img.clone()
        };
        let hires = GenerationSettings {
            hires: Some(crate::api::Hires { scale: 1.75, strength: 0.45, steps: 3, upscaler: Upscaler::Lanczos, seed: None }),
            ..base.clone()
        };
        for settings in [base, img2img, inpaint, outpaint, hires] {
            let values = FormValues::from_settings(&settings);
            let again = values.to_request().unwrap().resolve(|| 0).unwrap();
            assert_eq!(again, settings);
        }
    }

    #[test]
    fn img2img_size_is_optional_and_needs_an_image() {
        let mut values = FormValues { mode: IMG2IMG.into(), width: " ".into(), height: String::new(), ..Default::default() };
        let fields: Vec<String> = values.to_request().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["init_image"]);
        values.init = Some(InitImage { id: "up_9".into(), url: String::new(), width: 100, height: 60 });
        let request = values.to_request().unwrap();
        assert_eq!((request.width, request.height, request.strength), (None, None, Some(DEFAULT_STRENGTH)));
        // No mask and no outpaint: no blur is sent (the server refuses a blur with nothing to blur).
        assert_eq!((request.mask, request.mask_blur, request.outpaint), (None, None, None));
        values.start_from(InitImage { id: "img_1".into(), url: "/outputs/x.png".into(), width: 100, height: 60 });
        assert_eq!((values.width.as_str(), values.height.as_str()), ("96", "64"));
    }

    #[test]
    fn mask_and_outpaint_together_are_refused_on_the_outpaint_field() {
        let values = FormValues {
            mode: IMG2IMG.into(),
            init: Some(InitImage { id: "up_9".into(), url: String::new(), width: 64, height: 64 }),
            mask: "painted-mask".into(),
            outpaint: ["8".into(), "0".into(), "0".into(), "0".into()],
            ..Default::default()
        };
        let errors = values.to_request().unwrap().resolve(|| 0).unwrap_err();
        assert!(errors.iter().any(|e| e.field == "outpaint"), "{errors:?}");
        let bad_side = FormValues { mask: String::new(), outpaint: ["9".into(), "x".into(), "0".into(), "0".into()], ..values };
        let fields: Vec<String> = bad_side.to_request().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["outpaint.right"]);
    }

    #[test]
    fn hires_fields_are_sent_only_in_text_to_image_when_enabled() {
        let values = FormValues { hires: true, hires_scale: "big".into(), ..Default::default() };
        let fields: Vec<String> = values.to_request().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["hires.scale"]);
        let off = FormValues { hires: false, hires_scale: "big".into(), ..Default::default() };
        assert_eq!(off.to_request().unwrap().hires, None);
    }

    #[test]
    fn non_numbers_are_field_errors() {
        let values = FormValues { width: "wide".into(), seed: "x".into(), ..Default::default() };
        let fields: Vec<String> = values.to_request().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["width", "seed"]);
    }
}
