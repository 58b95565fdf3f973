//! Owns the init image of image-to-image on the Generate page: the drop zone, paste (Ctrl+V) and
//! file picker, the upload to `POST /api/v1/uploads` from the browser, and the preview (with the
//! mask editor laid over it as children).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::api::{GenerateRequest, ImageView};

/// The picture a job starts from: an upload or a gallery image (the server accepts either id),
/// with a URL to preview it (empty when there is none, e.g. an upload after a reload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitImage {
    pub id: String,
    pub url: String,
    pub width: u32,
    pub height: u32,
}

impl InitImage {
    /// The width and height a request gets from this picture: the server's own rule for an
    /// absent size ([`GenerateRequest::size_from_image`]).
    pub fn request_size(&self) -> (u32, u32) {
        let mut r = GenerateRequest::default();
        r.size_from_image(self.width, self.height);
        (r.width.unwrap_or(self.width), r.height.unwrap_or(self.height))
    }
}

/// A generated image as an init image: the server takes its gallery id as it is.
impl From<&ImageView> for InitImage {
    fn from(image: &ImageView) -> Self {
        Self { id: image.id.clone(), url: image.url.clone(), width: image.width, height: image.height }
    }
}

/// The message of an upload error response (`{error, fields: [{field, message}]}`), or a generic
/// one with the status when the body is not that shape.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn upload_error_message(status: u16, body: &str) -> String {
    #[derive(Deserialize)]
    struct Field {
        message: String,
    }
    #[derive(Deserialize)]
    struct Body {
        error: String,
        #[serde(default)]
        fields: Vec<Field>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) if !b.fields.is_empty() => b.fields.into_iter().map(|f| f.message).collect::<Vec<_>>().join("; "),
        Ok(b) => b.error,
        Err(_) => format!("upload failed (HTTP {status})"),
    }
}

#[cfg(feature = "hydrate")]
fn js_error(e: wasm_bindgen::JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Posts `blob` as the `file` part of a form to `url`; same-origin, so the `easel_token` cookie
/// goes along when a token is configured. The answer's text, or the server's message.
#[cfg(feature = "hydrate")]
pub async fn post_file(url: &str, blob: &web_sys::Blob, file_name: &str) -> Result<String, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let form = web_sys::FormData::new().map_err(js_error)?;
    form.append_with_blob_and_filename("file", blob, file_name).map_err(js_error)?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&form);
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| format!("could not reach the server: {}", js_error(e)))?;
    let response: web_sys::Response = response.dyn_into().map_err(js_error)?;
    let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?.as_string().unwrap_or_default();
    if response.ok() {
        Ok(text)
    } else {
        Err(upload_error_message(response.status(), &text))
    }
}

/// Uploads `blob` for image-to-image or a mask.
#[cfg(feature = "hydrate")]
pub async fn upload(blob: &web_sys::Blob, file_name: &str) -> Result<crate::api::UploadView, String> {
    let text = post_file("/api/v1/uploads", blob, file_name).await?;
    serde_json::from_str::<crate::api::UploadView>(&text).map_err(|e| format!("unexpected upload answer: {e}"))
}

/// Uploads a picked, dropped or pasted file and previews it through an object URL.
#[cfg(feature = "hydrate")]
fn upload_file(file: web_sys::File, busy: RwSignal<bool>, error: RwSignal<Option<String>>, on_change: Callback<InitImage>) {
    busy.set(true);
    error.set(None);
    leptos::task::spawn_local(async move {
        let name = file.name();
        match upload(&file, &name).await {
            Ok(up) => {
                let url = web_sys::Url::create_object_url_with_blob(&file).unwrap_or_default();
                on_change.run(InitImage { id: up.id, url, width: up.width, height: up.height });
            }
            Err(e) => error.set(Some(e)),
        }
        busy.set(false);
    });
}

#[cfg(feature = "hydrate")]
fn first_file(files: Option<web_sys::FileList>) -> Option<web_sys::File> {
    files.and_then(|f| f.get(0))
}

/// The drop zone, the file picker and the preview of `init`. `children` (the mask editor) is
/// laid over the preview.
#[component]
pub fn ImageInput(init: Signal<Option<InitImage>>, on_change: Callback<InitImage>, children: ChildrenFn) -> impl IntoView {
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let dragging = RwSignal::new(false);
    let _ = on_change;

    // Ctrl+V anywhere on the page with a picture on the clipboard (text pastes are left alone).
    #[cfg(feature = "hydrate")]
    {
        let paste = leptos::leptos_dom::helpers::window_event_listener(leptos::ev::paste, move |ev| {
            let file = ev.clipboard_data().and_then(|d| first_file(d.files())).filter(|f| f.type_().starts_with("image/"));
            if let Some(file) = file {
                ev.prevent_default();
                upload_file(file, busy, error, on_change);
            }
        });
        on_cleanup(move || paste.remove());
    }

    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        #[cfg(feature = "hydrate")]
        if let Some(file) = first_file(ev.data_transfer().and_then(|d| d.files())) {
            upload_file(file, busy, error, on_change);
        }
    };
    let on_pick = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            if let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                if let Some(file) = first_file(input.files()) {
                    upload_file(file, busy, error, on_change);
                }
                input.set_value("");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };

    view! {
        <div
            class="drop-zone"
            class:dragging=move || dragging.get()
            on:dragover=move |ev| {
                ev.prevent_default();
                dragging.set(true);
            }
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
        >
            {move || match init.get() {
                Some(image) => {
                    let children = children.clone();
                    view! {
                        <div class="init-stack" style=format!("aspect-ratio: {} / {}", image.width.max(1), image.height.max(1))>
                            {if image.url.is_empty() {
                                view! { <p class="init-placeholder hint">{format!("Image {} ({}×{})", image.id, image.width, image.height)}</p> }
                                    .into_any()
                            } else {
                                view! { <img class="init-preview" src=image.url.clone() alt="Init image" width=image.width height=image.height/> }
                                    .into_any()
                            }}
                            {children()}
                        </div>
                        <p class="hint" id="init-size">{format!("{}×{} px", image.width, image.height)}</p>
                    }
                    .into_any()
                }
                None => view! { <p class="hint">"Drop an image here, paste it (Ctrl+V), or pick a file."</p> }.into_any(),
            }}
            <label for="init-file" class="button file-button">
                {move || if init.with(Option::is_some) { "Replace image…" } else { "Choose image…" }}
            </label>
            <input id="init-file" class="visually-hidden" type="file" accept="image/png,image/jpeg,image/webp" on:change=on_pick/>
            <Show when=move || busy.get()>
                <p class="hint" aria-live="polite">"Uploading…"</p>
            </Show>
            {move || error.get().map(|m| view! { <p class="field-error" id="upload-error" role="alert">{m}</p> })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_errors_show_the_field_messages() {
        let body = r#"{"error":"invalid","fields":[{"field":"file","message":"not a PNG, JPEG or WebP picture"}]}"#;
        assert_eq!(upload_error_message(422, body), "not a PNG, JPEG or WebP picture");
        assert_eq!(upload_error_message(413, r#"{"error":"the upload is larger than 20 MB"}"#), "the upload is larger than 20 MB");
        assert_eq!(upload_error_message(502, "<html>"), "upload failed (HTTP 502)");
    }

    #[test]
    fn request_size_follows_the_server_rule() {
        let image = InitImage { id: "u".into(), url: String::new(), width: 100, height: 30 };
        assert_eq!(image.request_size(), (96, crate::api::request::MIN_SIZE));
    }
}
