//! The Generate form's Import: a PNG (Easel's, A1111's or ComfyUI's), a ComfyUI workflow JSON or
//! an A1111 infotext, picked or dropped, sent to `POST /api/v1/import`; its settings fill the
//! form (in the mode that gives that tool's picture), and what could not be carried over is shown.

use leptos::prelude::*;

use crate::api::import::{ImportSource, ImportedSettings};
use crate::api::GenerationSettings;

/// What the last import said, for the line under the button.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn summary(imported: &ImportedSettings) -> String {
    let from = match imported.source {
        ImportSource::Easel => "an Easel image (exact settings)",
        ImportSource::A1111 => "AUTOMATIC1111 parameters (A1111 mode)",
        ImportSource::ComfyUi => "a ComfyUI workflow (ComfyUI mode)",
    };
    let mut text = format!("Settings imported from {from}.");
    for note in &imported.notes {
        text.push_str(&format!(" Note: {note}."));
    }
    text
}

/// Sends `file` to the import endpoint; the settings, or the server's message.
#[cfg(feature = "hydrate")]
async fn import_file(file: web_sys::File) -> Result<ImportedSettings, String> {
    let text = super::image_input::post_file("/api/v1/import", &file, &file.name()).await?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
}

/// The Import button (a file picker that also takes a dropped file) and its result line.
#[component]
pub fn ImportSettings(on_import: Callback<GenerationSettings>) -> impl IntoView {
    let message = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let _ = on_import;
    #[cfg(feature = "hydrate")]
    let take = move |file: Option<web_sys::File>| {
        let Some(file) = file else { return };
        busy.set(true);
        leptos::task::spawn_local(async move {
            match import_file(file).await {
                Ok(imported) => {
                    message.set(Some(Ok(summary(&imported))));
                    on_import.run(imported.settings);
                }
                Err(e) => message.set(Some(Err(e))),
            }
            busy.set(false);
        });
    };
    #[cfg(not(feature = "hydrate"))]
    let take = |_: Option<()>| {};
    view! {
        <div
            class="import-settings"
            on:dragover=move |ev| ev.prevent_default()
            on:drop=move |ev| {
                ev.prevent_default();
                #[cfg(feature = "hydrate")]
                take(ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)));
                #[cfg(not(feature = "hydrate"))]
                {
                    let _ = ev;
                    take(None);
                }
            }
        >
            <label class="button secondary">
                "Import settings…"
                <input
                    type="file"
                    name="import"
                    class="visually-hidden"
                    accept=".png,.json,.txt,image/png,application/json,text/plain"
                    disabled=move || busy.get()
                    on:change=move |ev| {
                        #[cfg(feature = "hydrate")]
                        {
                            use wasm_bindgen::JsCast;
                            let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
                            take(input.as_ref().and_then(|i| i.files()).and_then(|f| f.get(0)));
                            if let Some(input) = input {
                                input.set_value("");
                            }
                        }
                        #[cfg(not(feature = "hydrate"))]
                        {
                            let _ = ev;
                            take(None);
                        }
                    }
                />
            </label>
            <span class="hint">"A PNG from Easel, AUTOMATIC1111 or ComfyUI, or a ComfyUI workflow (.json): drop it here"</span>
            {move || match message.get() {
                Some(Ok(text)) => view! { <p class="import-result" role="status">{text}</p> }.into_any(),
                Some(Err(text)) => view! { <p class="field-error" role="alert">{text}</p> }.into_any(),
                None => ().into_any(),
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GenerateRequest;

    #[test]
    fn the_summary_names_the_source_and_every_note() {
        let settings = GenerateRequest { prompt: "a".into(), ..Default::default() }.resolve(|| 1).unwrap();
        let imported = ImportedSettings {
            source: ImportSource::A1111,
            settings,
            notes: vec!["Face restoration: CodeFormer (not an Easel setting; left out)".into()],
        };
        let text = summary(&imported);
        assert!(text.starts_with("Settings imported from AUTOMATIC1111 parameters (A1111 mode)."), "{text}");
        assert!(text.contains("Note: Face restoration: CodeFormer"), "{text}");
    }
}
