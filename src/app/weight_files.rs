//! The Models page's single-file weights: the LoRA, VAE and embedding files Easel found (its own
//! folders and extra models dirs), and the checkpoint merge form (A1111's checkpoint merger).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::generate::field_error;
use super::models::hash_cell;
use super::rpc::{list_embeddings, list_weight_files, merge_checkpoints};
use crate::api::networks::{MergeSpec, WeightsFileView, WeightsKind, MERGE_MODES};
use crate::api::pull::human_bytes;
use crate::api::FieldError;

/// The LoRA, VAE and embedding files, one table each.
#[component]
pub fn WeightFiles() -> impl IntoView {
    let loras = Resource::new(|| (), |_| list_weight_files(WeightsKind::Lora));
    let vaes = Resource::new(|| (), |_| list_weight_files(WeightsKind::Vae));
    let embeddings = Resource::new(|| (), |_| list_embeddings());
    // `files` with where each is (`None`: not known, for embeddings).
    let table = |title: &'static str, kind: &'static str, files: Vec<(WeightsFileView, Option<&'static str>)>| {
        view! {
            <h2>{title}</h2>
            {if files.is_empty() {
                view! { <p class="empty">{format!("None yet: put .safetensors files in the models folder's {kind}/ folder.")}</p> }.into_any()
            } else {
                view! {
                    <table class="weights-table" data-kind=kind>
                        <thead><tr><th>"Name"</th><th>"Size"</th><th>"Hash"</th><th>"Where"</th></tr></thead>
                        <tbody>
                            {files.into_iter().map(|(f, place)| view! {
                                <tr data-file=f.name.clone()>
                                    <td>{f.name.clone()}</td>
                                    <td>{human_bytes(f.size_bytes)}</td>
                                    <td class="hash">{hash_cell(f.hash.clone())}</td>
                                    <td>{place.unwrap_or("models folder or an extra one")}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        }
    };
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let placed = |files: Vec<WeightsFileView>| {
                    files
                        .into_iter()
                        .map(|f| {
                            let place = if f.read_only { "another tool's folder (read-only)" } else { "models folder" };
                            (f, Some(place))
                        })
                        .collect::<Vec<_>>()
                };
                let (loras, vaes) = (placed(loras.await.unwrap_or_default()), placed(vaes.await.unwrap_or_default()));
                // Embeddings by the name prompts use.
                let embeddings = embeddings
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| (WeightsFileView { name: e.name, size_bytes: e.bytes, read_only: false, hash: e.hash }, None))
                    .collect();
                view! {
                    {table("LoRAs", "loras", loras)}
                    {table("VAEs", "vae", vaes)}
                    {table("Embeddings", "embeddings", embeddings)}
                }
            })}
        </Transition>
    }
}

/// Merge two checkpoints into a new one; `merged` runs with the new file's name when done.
#[component]
pub fn MergeForm(merged: Callback<()>) -> impl IntoView {
    let checkpoints = Resource::new(|| (), |_| list_weight_files(WeightsKind::Checkpoint));
    let (a, b, base) = (RwSignal::new(String::new()), RwSignal::new(String::new()), RwSignal::new(String::new()));
    let mode = RwSignal::new(MERGE_MODES[0].to_string());
    let alpha = RwSignal::new("0.3".to_string());
    let name = RwSignal::new(String::new());
    let overwrite = RwSignal::new(false);
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let busy = RwSignal::new(false);
    let done = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(alpha_value) = alpha.get_untracked().trim().parse::<f64>() else {
            errors.set(vec![FieldError::new("alpha", "alpha must be a number")]);
            return;
        };
        let add_difference = mode.get_untracked() == MERGE_MODES[1];
        let spec = MergeSpec {
            a: a.get_untracked(),
            b: b.get_untracked(),
            base: add_difference.then(|| base.get_untracked()),
            mode: mode.get_untracked(),
            alpha: alpha_value,
            name: name.get_untracked(),
            overwrite: overwrite.get_untracked(),
        };
        let problems = spec.problems();
        if !problems.is_empty() {
            errors.set(problems);
            return;
        }
        busy.set(true);
        done.set(None);
        spawn_local(async move {
            match merge_checkpoints(spec).await {
                Ok(Ok(outcome)) => {
                    errors.set(Vec::new());
                    done.set(Some(format!(
                        "Wrote {} ({}, {} of {} tensors merged) in {:.1} s",
                        outcome.name,
                        human_bytes(outcome.size_bytes),
                        outcome.merged,
                        outcome.tensors,
                        outcome.seconds
                    )));
                    merged.run(());
                }
                Ok(Err(fields)) => errors.set(fields),
                Err(e) => errors.set(vec![FieldError::new("name", e.to_string())]),
            }
            busy.set(false);
        });
    };
    let picker = move |id: &'static str, value: RwSignal<String>| {
        view! {
            <select id=id prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev))>
                <option value="">"Choose…"</option>
                <Suspense>
                    {move || Suspend::new(async move {
                        checkpoints
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| view! { <option value=c.name.clone()>{c.name.clone()}</option> })
                            .collect_view()
                    })}
                </Suspense>
            </select>
            {field_error(errors, id)}
        }
    };
    view! {
        <form class="merge-form" on:submit=submit>
            <h2>"Merge checkpoints"</h2>
            <p class="hint">
                "AUTOMATIC1111's checkpoint merger: weighted sum (1 - alpha)·A + alpha·B, or add difference A + alpha·(B - C). "
                "An inpainting model can only be A. The result is written to the models folder's checkpoints/."
            </p>
            <label for="a">"A (primary)"</label>
            {picker("a", a)}
            <label for="b">"B (secondary)"</label>
            {picker("b", b)}
            <label for="mode">"Mode"</label>
            <select id="mode" prop:value=move || mode.get() on:change=move |ev| mode.set(event_target_value(&ev))>
                <option value=MERGE_MODES[0]>"Weighted sum"</option>
                <option value=MERGE_MODES[1]>"Add difference"</option>
            </select>
            <Show when=move || mode.get() == MERGE_MODES[1]>
                <label for="base">"C (base of B)"</label>
                {picker("base", base)}
            </Show>
            <label for="alpha">"Alpha"</label>
            <input id="alpha" type="number" min="-1" max="2" step="0.05" bind:value=alpha />
            {field_error(errors, "alpha")}
            <label for="merge-name">"New checkpoint name"</label>
            <input id="merge-name" autocomplete="off" placeholder="my-merge" bind:value=name />
            {field_error(errors, "name")}
            <label class="check">
                <input type="checkbox" bind:checked=overwrite />
                "Replace a checkpoint of that name"
            </label>
            <button type="submit" prop:disabled=move || busy.get()>{move || if busy.get() { "Merging…" } else { "Merge" }}</button>
            {move || done.get().map(|m| view! { <p class="hint merge-done" role="status">{m}</p> })}
        </form>
    }
}
