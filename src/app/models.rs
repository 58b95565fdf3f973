//! The Models page: the models Easel can run (filled in by the models issue).

use leptos::prelude::*;

#[component]
pub fn ModelsPage() -> impl IntoView {
    view! {
        <section class="page models">
            <h1>"Models"</h1>
            <p class="empty">"Models appear here once the model registry lands."</p>
        </section>
    }
}
