//! The web UI: the HTML shell, the top-level `App` with its router and navigation, and one module
//! per page. Compiled twice: on the server for SSR (`ssr`) and to wasm for hydration (`hydrate`).
//! It talks to the server only through its server functions ([`rpc`]) and the SSE endpoints,
//! and reads the wire types of [`crate::api`].

mod browser;
mod gallery;
pub mod generate;
mod image_input;
mod import_settings;
mod mask_editor;
mod models;
mod networks;
mod prompt_box;
mod queue;
pub mod rpc;
mod weight_files;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::StaticSegment;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/easel.css"/>
        <Title text="Easel"/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Easel"</a>
                <nav aria-label="Main">
                    <A href="/">"Generate"</A>
                    <A href="/gallery">"Gallery"</A>
                    <A href="/queue">"Queue"</A>
                    <A href="/models">"Models"</A>
                </nav>
            </header>
            <main id="main">
                <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    <Route path=StaticSegment("") view=generate::GeneratePage/>
                    <Route path=StaticSegment("gallery") view=gallery::GalleryPage/>
                    <Route path=StaticSegment("models") view=models::ModelsPage/>
                    <Route path=StaticSegment("queue") view=queue::QueuePage/>
                </Routes>
            </main>
        </Router>
    }
}
