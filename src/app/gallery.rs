//! The Gallery page: every finished image, newest first, one page at a time (automatically when
//! the end of the list scrolls into view, or with "Load more"), a prompt filter the server applies
//! to the whole history,
//! and a detail view with all the settings and the actions on one image.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::browser;
use super::generate::{FormValues, FORM_STORAGE_KEY};
use super::rpc::{delete_image, list_history};
use crate::api::{ImageView, JobView};

/// Jobs per page.
const PAGE: u32 = 24;

#[component]
pub fn GalleryPage() -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let filter = RwSignal::new(String::new());
    let query = move || Some(filter.get().trim().to_string()).filter(|q| !q.is_empty());
    let first = Resource::new(query, |q| list_history(PAGE, None, q));
    let more = RwSignal::new(Vec::<JobView>::new());
    let cursor = RwSignal::new(None::<Option<i64>>);
    let loading = RwSignal::new(false);
    // A new filter starts again from its own first page.
    Effect::new(move |previous: Option<Option<String>>| {
        let current = query();
        if previous.is_some_and(|p| p != current) {
            more.set(Vec::new());
            cursor.set(None);
        }
        current
    });
    let deleted = RwSignal::new(Vec::<String>::new());
    let selected = RwSignal::new(None::<(JobView, ImageView)>);

    // `first_next` is the first page's cursor; after a "Load more" the newest page's cursor wins.
    let load_more = move |first_next: Option<i64>| {
        let Some(before) = cursor.get_untracked().unwrap_or(first_next) else { return };
        if loading.get_untracked() {
            return;
        }
        loading.set(true);
        let prompt = Some(filter.get_untracked().trim().to_string()).filter(|q| !q.is_empty());
        spawn_local(async move {
            if let Ok(page) = list_history(PAGE, Some(before), prompt).await {
                more.update(|m| m.extend(page.jobs));
                cursor.set(Some(page.next_before));
            }
            loading.set(false);
        });
    };

    // Load the next page when the end of the list scrolls into view.
    let on_scroll = leptos::leptos_dom::helpers::window_event_listener(leptos::ev::scroll, move |_| {
        if browser::near_page_bottom(300.0) {
            load_more(first.get_untracked().and_then(|r| r.ok()).and_then(|p| p.next_before));
        }
    });
    on_cleanup(move || on_scroll.remove());

    let tiles = move |jobs: Vec<JobView>| {
        let gone = deleted.get();
        jobs.into_iter()
            .flat_map(|job| job.images.clone().into_iter().map(move |image| (job.clone(), image)))
            .filter(|(_, image)| !gone.contains(&image.id))
            .map(|(job, image)| {
                let pick = (job.clone(), image.clone());
                view! {
                    <li>
                        <button type="button" class="tile" on:click=move |_| selected.set(Some(pick.clone()))>
                            <img src=image.url.clone() alt=job.request.prompt.clone() loading="lazy" width=image.width height=image.height/>
                            <span class="tile-caption">{job.request.prompt.clone()}</span>
                        </button>
                    </li>
                }
            })
            .collect_view()
    };

    view! {
        <section class="page gallery" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Gallery"</h1>
            <label for="gallery-filter">"Filter by prompt"</label>
            <input
                id="gallery-filter"
                type="search"
                placeholder="lighthouse"
                prop:value=move || filter.get()
                on:input=move |ev| filter.set(event_target_value(&ev))
            />
            <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match first.await {
                        // (a search page can be empty and still have older jobs to look through)
                        Ok(page)
                            if page.jobs.iter().all(|j| j.images.is_empty())
                                && page.next_before.is_none()
                                && more.with(Vec::is_empty) =>
                        {
                            let message = match query() {
                                Some(q) => format!("No images whose prompt contains “{q}”."),
                                None => "No images yet. Generate one!".to_string(),
                            };
                            view! { <p class="empty">{message}</p> }.into_any()
                        }
                        Ok(page) => view! {
                            <ul class="grid" aria-label="Images">
                                {move || tiles(page.jobs.clone())}
                                {move || tiles(more.get())}
                            </ul>
                            <Show when=move || cursor.get().unwrap_or(page.next_before).is_some()>
                                <button type="button" id="load-more" on:click=move |_| load_more(page.next_before) disabled=move || loading.get()>
                                    {move || if loading.get() { "Loading…" } else { "Load more" }}
                                </button>
                            </Show>
                        }
                        .into_any(),
                        Err(e) => view! { <p class="field-error">{format!("could not load the gallery: {e}")}</p> }.into_any(),
                    }
                })}
            </Suspense>
            {move || selected.get().map(|(job, image)| view! { <Detail job image selected deleted/> })}
        </section>
    }
}

/// The large view of one image with its settings and actions.
#[component]
fn Detail(
    job: JobView,
    image: ImageView,
    selected: RwSignal<Option<(JobView, ImageView)>>,
    deleted: RwSignal<Vec<String>>,
) -> impl IntoView {
    let s = job.request.clone();
    let took = match (job.started_at_ms, job.finished_at_ms) {
        (Some(a), Some(b)) => format!("{:.1} s", (b - a) as f64 / 1000.0),
        _ => "—".into(),
    };
    let rows = vec![
        ("Prompt", s.prompt.clone()),
        ("Negative prompt", s.negative_prompt.clone()),
        ("Seed", image.seed.to_string()),
        ("Sampler", s.sampler.a1111_name().to_string()),
        ("Schedule", s.schedule.name().to_string()),
        ("Steps", s.steps.to_string()),
        ("CFG scale", s.cfg_scale.to_string()),
        ("Size", format!("{}×{}", s.width, s.height)),
        ("Model", s.model.clone().unwrap_or_default()),
        ("Time taken", took),
    ];
    let infotext = image.infotext.clone();
    let reuse = s.clone();
    let image_id = image.id.clone();
    let use_settings = move |_| {
        if let Ok(text) = serde_json::to_string(&FormValues::from_settings(&reuse)) {
            browser::save(FORM_STORAGE_KEY, &text);
        }
        let navigate = leptos_router::hooks::use_navigate();
        navigate("/", Default::default());
    };
    let send_init = super::image_input::InitImage::from(&image);
    // The Generate page reads the saved form when it opens.
    let send_to_img2img = move |_| {
        let mut values = browser::load(FORM_STORAGE_KEY).and_then(|t| serde_json::from_str::<FormValues>(&t).ok()).unwrap_or_default();
        values.start_from(send_init.clone());
        if let Ok(text) = serde_json::to_string(&values) {
            browser::save(FORM_STORAGE_KEY, &text);
        }
        let navigate = leptos_router::hooks::use_navigate();
        navigate("/", Default::default());
    };
    let remove = move |_| {
        if !browser::confirm("Delete this image? This cannot be undone.") {
            return;
        }
        let id = image_id.clone();
        spawn_local(async move {
            if delete_image(id.clone()).await.is_ok() {
                deleted.update(|d| d.push(id));
                selected.set(None);
            }
        });
    };
    view! {
        <div class="detail" role="dialog" aria-modal="true" aria-label="Image details">
            <img src=image.url.clone() alt=s.prompt.clone() width=image.width height=image.height/>
            <dl>
                {rows
                    .into_iter()
                    .map(|(k, v)| view! { <dt>{k}</dt> <dd data-field=k>{v}</dd> })
                    .collect_view()}
            </dl>
            <div class="actions">
                <a class="button" href=image.url.clone() download="">"Download"</a>
                <button type="button" on:click=move |_| browser::copy_to_clipboard(&infotext)>"Copy parameters"</button>
                <button type="button" on:click=use_settings>"Use these settings"</button>
                <button type="button" on:click=send_to_img2img>"Send to img2img"</button>
                <button type="button" class="danger" on:click=remove>"Delete"</button>
                <button type="button" on:click=move |_| selected.set(None)>"Close"</button>
            </div>
        </div>
    }
}
