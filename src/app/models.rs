//! The Models page: the models Easel can run, with size and precision (pulling arrives with the
//! models issue).

use leptos::prelude::*;

use super::api::list_models;

#[component]
pub fn ModelsPage() -> impl IntoView {
    let models = Resource::new(|| (), |_| list_models());
    view! {
        <section class="page models">
            <h1>"Models"</h1>
            <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match models.await {
                        Ok(list) if list.is_empty() => {
                            view! { <p class="empty">"No models found in the models folder."</p> }.into_any()
                        }
                        Ok(list) => view! {
                            <table>
                                <thead><tr><th>"Name"</th><th>"Precision"</th><th>"Source"</th><th>"Size"</th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|m| view! {
                                        <tr>
                                            <td>{m.name.clone()}{m.is_default.then_some(" (default)")}</td>
                                            <td>{m.precision}</td>
                                            <td>{m.source}</td>
                                            <td>{format!("{:.1} MB", m.size_bytes as f64 / 1e6)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any(),
                        Err(e) => view! { <p class="field-error">{format!("could not list models: {e}")}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}
