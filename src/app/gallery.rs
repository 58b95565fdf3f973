//! The Gallery page: everything generated, newest first (filled in by the web UI issue).

use leptos::prelude::*;

#[component]
pub fn GalleryPage() -> impl IntoView {
    view! {
        <section class="page gallery">
            <h1>"Gallery"</h1>
            <p class="empty">"No images yet."</p>
        </section>
    }
}
