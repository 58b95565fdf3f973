//! The Models page: pull a model from the Hugging Face hub by alias or repository id with live
//! progress (SSE), and the table of every model Easel can run (folders, hub snapshots, checkpoint
//! files) with its size, precision and source, where the default is chosen and owned models are
//! deleted; below it the LoRA and VAE files and the merge form ([`super::weight_files`]).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::browser;
use super::rpc::{
    cancel_pull, delete_model, list_models, list_pulls, list_weight_files, model_aliases, pull_model, set_default_model, set_model_vae,
};
use super::weight_files::{MergeForm, WeightFiles};
use crate::api::networks::WeightsKind;
use crate::api::pull::{human_bytes, FileState, PullState, PullStatus};
use crate::api::ModelEntry;

#[component]
pub fn ModelsPage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let models = Resource::new(move || refresh.get(), |_| list_models());
    let aliases = Resource::new(|| (), |_| model_aliases());
    let vaes = Resource::new(|| (), |_| list_weight_files(WeightsKind::Vae));
    let spec = RwSignal::new(String::new());
    let form_error = RwSignal::new(None::<String>);
    let pulls = RwSignal::new(Vec::<PullStatus>::new());
    let action_error = RwSignal::new(None::<String>);
    let reload = Callback::new(move |()| refresh.update(|n| *n += 1));
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    // Pulls still running (started in another tab, or before a reload) are shown too.
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(list) = list_pulls().await {
                pulls.update(|shown| {
                    for p in list.into_iter().filter(|p| !p.finished()) {
                        if !shown.iter().any(|s| s.id == p.id) {
                            shown.push(p);
                        }
                    }
                });
            }
        });
    });

    let start_pull = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let wanted = spec.get_untracked().trim().to_string();
        if wanted.is_empty() {
            form_error.set(Some("enter an alias such as sd15, or a repository id such as org/name".into()));
            return;
        }
        spawn_local(async move {
            match pull_model(wanted).await {
                Ok(Ok(status)) => {
                    form_error.set(None);
                    spec.set(String::new());
                    pulls.update(|shown| {
                        if !shown.iter().any(|s| s.id == status.id) {
                            shown.insert(0, status);
                        }
                    });
                }
                Ok(Err(message)) => form_error.set(Some(message)),
                Err(e) => form_error.set(Some(e.to_string())),
            }
        });
    };

    view! {
        <section class="page models" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Models"</h1>
            <form class="pull-form" on:submit=start_pull>
                <label for="pull-spec">"Pull from Hugging Face"</label>
                <div class="pull-row">
                    <input
                        id="pull-spec"
                        name="model"
                        list="model-aliases"
                        autocomplete="off"
                        placeholder="sd15, sd15-fp16 or org/name[@revision]"
                        bind:value=spec
                    />
                    <button type="submit">"Pull"</button>
                </div>
                {move || form_error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let list = aliases.await.unwrap_or_default();
                        view! {
                            <datalist id="model-aliases">
                                {list.iter().map(|a| view! { <option value=a.name.clone()>{a.target()}</option> }).collect_view()}
                            </datalist>
                            <ul class="hint alias-list">
                                {list.into_iter().map(|a| view! { <li><code>{a.name}</code>": "{a.description}</li> }).collect_view()}
                            </ul>
                        }
                    })}
                </Suspense>
            </form>
            <div class="pulls">
                <For each=move || pulls.get() key=|p| p.id.clone() let:pull>
                    <PullCard status=pull on_finished=reload />
                </For>
            </div>
            {move || action_error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            <Transition fallback=|| view! { <p class="empty">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let vae_names: Vec<String> = vaes.await.unwrap_or_default().into_iter().map(|v| v.name).collect();
                    match models.await {
                        Ok(list) if list.is_empty() => {
                            view! { <p class="empty">"No models yet: pull one above, or put a diffusers ONNX folder in the models folder."</p> }.into_any()
                        }
                        Ok(list) => view! { <ModelTable models=list vaes=vae_names reload action_error /> }.into_any(),
                        Err(e) => view! { <p class="field-error">{format!("could not list models: {e}")}</p> }.into_any(),
                    }
                })}
            </Transition>
            <WeightFiles />
            <MergeForm merged=reload />
        </section>
    }
}

#[component]
fn ModelTable(models: Vec<ModelEntry>, vaes: Vec<String>, reload: Callback<()>, action_error: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <table class="model-table">
            <thead><tr><th>"Name"</th><th>"Precision"</th><th>"Source"</th><th>"Size"</th><th>"Hash"</th><th>"VAE"</th><th></th></tr></thead>
            <tbody>
                {models.into_iter().map(|m| {
                    let (default_name, delete_name, vae_model) = (m.name.clone(), m.name.clone(), m.name.clone());
                    let choose_vae = move |ev: leptos::ev::Event| {
                        let (model, vae) = (vae_model.clone(), event_target_value(&ev));
                        spawn_local(async move {
                            match set_model_vae(model, Some(vae).filter(|v| !v.is_empty())).await {
                                Ok(()) => action_error.set(None),
                                Err(e) => action_error.set(Some(e.to_string())),
                            }
                            reload.run(());
                        });
                    };
                    let current_vae = m.vae.clone().unwrap_or_default();
                    let make_default = move |_| {
                        let name = default_name.clone();
                        spawn_local(async move {
                            match set_default_model(name).await {
                                Ok(()) => action_error.set(None),
                                Err(e) => action_error.set(Some(e.to_string())),
                            }
                            reload.run(());
                        });
                    };
                    let size = human_bytes(m.size_bytes);
                    let remove = move |_| {
                        let name = delete_name.clone();
                        if !browser::confirm(&format!("Delete {name} ({size})? This removes its files from disk.")) {
                            return;
                        }
                        spawn_local(async move {
                            match delete_model(name).await {
                                Ok(_) => action_error.set(None),
                                Err(e) => action_error.set(Some(e.to_string())),
                            }
                            reload.run(());
                        });
                    };
                    view! {
                        <tr data-model=m.name.clone() data-default=m.is_default.to_string()>
                            <td>
                                <span class="model-name" title=m.path.display().to_string()>{m.name.clone()}</span>
                                {(!m.aliases.is_empty()).then(|| view! { <span class="muted">{format!(" ({})", m.aliases.join(", "))}</span> })}
                                {m.is_default.then(|| view! { <span class="badge">"default"</span> })}
                            </td>
                            <td>{m.precision}</td>
                            <td>{m.source}</td>
                            <td>{human_bytes(m.size_bytes)}</td>
                            <td class="hash">{hash_cell(m.hash.clone())}</td>
                            <td>
                                <select class="model-vae" aria-label=format!("VAE of {}", m.name) prop:value=current_vae.clone() on:change=choose_vae>
                                    <option value="">"Its own"</option>
                                    {vaes.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                                </select>
                            </td>
                            <td class="actions">
                                {(!m.is_default).then(|| view! { <button type="button" on:click=make_default>"Make default"</button> })}
                                {m.removable.then(|| view! { <button type="button" class="danger" on:click=remove>"Delete"</button> })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// A hash cell: the hash, or why there is none yet.
pub fn hash_cell(hash: Option<String>) -> impl IntoView {
    match hash {
        Some(h) => view! { <code>{h}</code> }.into_any(),
        None => view! { <span class="muted" title="Computed the first time it is used">"not yet"</span> }.into_any(),
    }
}

fn state_text(s: &PullStatus) -> String {
    match s.state {
        PullState::Resolving => "Asking the hub…".into(),
        PullState::Downloading => format!("{} of {} ({:.0}%)", human_bytes(s.done_bytes), human_bytes(s.total_bytes), s.fraction() * 100.0),
        PullState::Done if s.downloaded_bytes == 0 => "Ready (already in the cache)".into(),
        PullState::Done => format!("Ready: {} downloaded", human_bytes(s.downloaded_bytes)),
        PullState::Failed => "Failed".into(),
        PullState::Cancelled => "Cancelled".into(),
    }
}

/// One pull, followed live over `/api/v1/models/pulls/{id}/events`.
#[component]
fn PullCard(status: PullStatus, on_finished: Callback<()>) -> impl IntoView {
    let current = RwSignal::new(status.clone());
    let stream = StoredValue::new_local(None::<browser::EventStream>);
    let url = format!("/api/v1/models/pulls/{}/events", status.id);
    Effect::new(move |_| {
        if stream.with_value(|s| s.is_some()) {
            return;
        }
        let opened =
            browser::subscribe(&url, &["progress", "done", "failed", "cancelled"], &["done", "failed", "cancelled"], move |name, data| {
                if let Ok(update) = serde_json::from_str::<PullStatus>(&data) {
                    current.set(update);
                }
                if name != "progress" {
                    on_finished.run(());
                }
            });
        stream.set_value(opened);
    });
    let title = format!("{}@{}", status.repo_id, status.revision);
    let id = status.id.clone();
    let cancel = move |_| {
        let id = id.clone();
        spawn_local(async move {
            let _ = cancel_pull(id).await;
        });
    };
    view! {
        <article class="pull-card" data-state=move || format!("{:?}", current.get().state).to_lowercase()>
            <header>
                <strong>{title}</strong>
                <span class="pull-state">{move || state_text(&current.get())}</span>
            </header>
            <progress max="1" value=move || current.get().fraction().to_string()></progress>
            <ul class="pull-files">
                {move || current.get().files.into_iter()
                    .filter(|f| matches!(f.state, FileState::Downloading | FileState::Verifying))
                    .map(|f| view! {
                        <li>{format!("{} {} / {}{}", f.path, human_bytes(f.done), human_bytes(f.size), if f.state == FileState::Verifying { " (verifying)" } else { "" })}</li>
                    })
                    .collect_view()}
            </ul>
            {move || (!current.get().finished()).then(|| view! { <button type="button" class="danger" on:click=cancel.clone()>"Cancel"</button> })}
            {move || current.get().error.map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            {move || current.get().model.map(|m| view! { <p class="hint">"Use it as model "<code>{m}</code></p> })}
        </article>
    }
}
