//! The Generate page: the prompt form. This version proves hydration with a live prompt
//! token estimate; the full form, job cards and progress arrive with the web UI issue.

use leptos::prelude::*;

#[component]
pub fn GeneratePage() -> impl IntoView {
    let (prompt, set_prompt) = signal(String::new());
    // Effects run only in the browser, after hydration: this flag is the page's "live" marker.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));
    let words = move || prompt.with(|p| p.split_whitespace().count());
    view! {
        <section class="page generate" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Generate"</h1>
            <label for="prompt">"Prompt"</label>
            <textarea
                id="prompt"
                name="prompt"
                rows="3"
                placeholder="a watercolor painting of a lighthouse at dawn"
                prop:value=prompt
                on:input=move |ev| set_prompt.set(event_target_value(&ev))
            ></textarea>
            <p id="prompt-count" class="hint" aria-live="polite">
                {move || format!("{} words", words())}
            </p>
        </section>
    }
}
