//! The Queue page: everything queued and running, in run order, with cancel; refreshed every
//! two seconds.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::rpc::{cancel_job, list_active_jobs};
use crate::api::JobStatus;

#[component]
pub fn QueuePage() -> impl IntoView {
    let tick = RwSignal::new(0u32);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let jobs = Resource::new(move || tick.get(), |_| list_active_jobs());
    Effect::new(move |_| {
        set_interval(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(2));
    });
    view! {
        <section class="page queue" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Queue"</h1>
            <Transition fallback=|| view! { <p class="empty">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let active = jobs.await.unwrap_or_default();
                    if active.is_empty() {
                        return view! { <p class="empty">"Nothing queued."</p> }.into_any();
                    }
                    view! {
                        <ul class="queue-list">
                            {active.into_iter().map(|job| {
                                let id = job.id.clone();
                                view! {
                                    <li data-status=job.status.as_str()>
                                        <span>{format!("{} — {}", job.status, job.request.prompt)}</span>
                                        {(job.status == JobStatus::Running).then(|| format!(" step {}/{}", job.progress.step, job.progress.total))}
                                        <button type="button" class="danger" on:click=move |_| {
                                            let id = id.clone();
                                            spawn_local(async move {
                                                let _ = cancel_job(id).await;
                                                tick.update(|t| *t += 1);
                                            });
                                        }>"Cancel"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any()
                })}
            </Transition>
        </section>
    }
}
