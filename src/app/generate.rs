//! The Generate page: the settings form (validated with the same rules as the server), and one
//! card per submitted job that follows it live over SSE (queue position, progress, preview,
//! cancel, the finished images). The form's values persist in local storage across reloads.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};

use super::browser;
use super::rpc::{cancel_job, list_active_jobs, list_models, submit_generation, SubmitOutcome};
use crate::api::{FieldError, GenerateRequest, GenerationSettings, ImageView, JobEvent, JobEventKind, JobStatus, Sampler};

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
        }
    }
}

impl FormValues {
    /// The values that reproduce `settings` (seed included).
    pub fn from_settings(s: &GenerationSettings) -> Self {
        Self {
            prompt: s.prompt.clone(),
            negative_prompt: s.negative_prompt.clone(),
            sampler: s.sampler.name().into(),
            schedule: s.schedule.name().into(),
            steps: s.steps.to_string(),
            cfg_scale: s.cfg_scale.to_string(),
            width: s.width.to_string(),
            height: s.height.to_string(),
            seed: s.seed.to_string(),
            batch_size: s.batch_size.to_string(),
            model: s.model.clone().unwrap_or_default(),
        }
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
        let steps = number("steps", &self.steps);
        let width = number("width", &self.width);
        let height = number("height", &self.height);
        let batch_size = number("batch_size", &self.batch_size);
        let seed = if self.seed.trim().is_empty() { None } else { number("seed", &self.seed) };
        let cfg_scale = match self.cfg_scale.trim().parse::<f32>() {
            Ok(x) => Some(x),
            Err(_) => {
                errors.push(FieldError {
                    field: "cfg_scale".into(),
                    message: format!("CFG scale must be a number, got {:?}", self.cfg_scale),
                });
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let small = |n: Option<u64>| n.map(|n| n.min(u64::from(u32::MAX)) as u32);
        Ok(GenerateRequest {
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
            ..Default::default()
        })
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
            if let Some(saved) = browser::load(FORM_STORAGE_KEY).and_then(|t| serde_json::from_str::<FormValues>(&t).ok()) {
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
        let values = form.get_untracked();
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

    let use_settings = Callback::new(move |settings: GenerationSettings| {
        form.set(FormValues::from_settings(&settings));
        errors.set(Vec::new());
    });

    let field_error = move |field: &'static str| {
        move || {
            errors.with(|e| e.iter().find(|e| e.field == field).map(|e| e.message.clone())).map(|m| {
                view! { <p class="field-error" id=format!("{field}-error") role="alert">{m}</p> }
            })
        }
    };
    let invalid = move |field: &'static str| move || errors.with(|e| e.iter().any(|e| e.field == field)).then_some("true");
    let text_input = move |field: &'static str, get: fn(&FormValues) -> &String, set: fn(&mut FormValues, String)| {
        view! {
            <input
                id=field
                name=field
                inputmode="decimal"
                aria-invalid=invalid(field)
                aria-describedby=format!("{field}-error")
                prop:value=move || form.with(|f| get(f).clone())
                on:input=move |ev| form.update(|f| set(f, event_target_value(&ev)))
            />
        }
    };

    view! {
        <section class="page generate" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Generate"</h1>
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
                    <label for="prompt">"Prompt"</label>
                    <textarea
                        id="prompt"
                        name="prompt"
                        rows="3"
                        placeholder="a watercolor painting of a lighthouse at dawn"
                        prop:value=move || form.with(|f| f.prompt.clone())
                        on:input=move |ev| form.update(|f| f.prompt = event_target_value(&ev))
                    ></textarea>
                    <p id="prompt-count" class="hint" aria-live="polite">
                        {move || format!("{} words", form.with(|f| f.prompt.split_whitespace().count()))}
                    </p>
                    {field_error("prompt")}
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
                                {Sampler::ALL.map(|s| view! { <option value=s.name()>{s.a1111_name()}</option> }).collect_view()}
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
                                <option value="default">"Default"</option>
                                <option
                                    value="karras"
                                    disabled=move || form.with(|f| !Sampler::parse(&f.sampler).is_some_and(Sampler::supports_karras))
                                >
                                    "Karras"
                                </option>
                            </select>
                            {field_error("schedule")}
                        </div>
                    </div>
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
                        <option value="">"Default model"</option>
                        <Suspense>
                            {move || Suspend::new(async move {
                                models
                                    .await
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|m| view! { <option value=m.name.clone()>{m.name.clone()}</option> })
                                    .collect_view()
                            })}
                        </Suspense>
                    </select>
                    {field_error("model")}
                    {field_error("form")}
                    <button type="submit" class="primary" id="generate" disabled=move || submitting.get()>
                        "Generate"
                    </button>
                    <p class="hint">"Ctrl+Enter also generates."</p>
                </form>
                <div class="jobs" aria-label="Jobs" aria-live="polite">
                    <For each=move || jobs.get() key=|j| j.id.clone() let:job>
                        <JobCard id=job.id settings=job.settings position=job.position on_use=use_settings/>
                    </For>
                </div>
            </div>
        </section>
    }
}

/// One job, followed live.
#[component]
fn JobCard(id: String, settings: GenerationSettings, position: Option<u64>, on_use: Callback<GenerationSettings>) -> impl IntoView {
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
        };
        let again = FormValues::from_settings(&settings).to_request().unwrap().resolve(|| 0).unwrap();
        assert_eq!(again, settings);
    }

    #[test]
    fn non_numbers_are_field_errors() {
        let values = FormValues { width: "wide".into(), seed: "x".into(), ..Default::default() };
        let fields: Vec<String> = values.to_request().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["width", "seed"]);
    }
}
