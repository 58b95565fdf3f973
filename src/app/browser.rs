//! The few browser APIs the UI needs (local storage, Server-Sent Events, clipboard, confirm),
//! behind plain functions. On the server they do nothing, so pages compile and render there.

/// A value saved in the browser's local storage.
pub fn load(key: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()?.local_storage().ok()??.get_item(key).ok()?
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = key;
        None
    }
}

pub fn save(key: &str, value: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.set_item(key, value);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (key, value);
}

pub fn copy_to_clipboard(text: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(text);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}

pub fn confirm(question: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window().and_then(|w| w.confirm_with_message(question).ok()).unwrap_or(false)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = question;
        false
    }
}

/// Scrolls the page back to its top (where the Generate form starts).
pub fn scroll_to_top() {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        window.scroll_to_with_x_and_y(0.0, 0.0);
    }
}

/// An open SSE subscription; closes the stream when dropped.
pub struct EventStream {
    #[cfg(feature = "hydrate")]
    source: web_sys::EventSource,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        #[cfg(feature = "hydrate")]
        self.source.close();
    }
}

/// Subscribes to `url` and calls `on_event(name, data)` for each of the named events.
/// The stream is closed after any of `terminal` arrives (otherwise the browser would reconnect
/// when the server ends the stream, and replay it).
pub fn subscribe(
    url: &str,
    names: &[&'static str],
    terminal: &[&'static str],
    on_event: impl Fn(&str, String) + 'static,
) -> Option<EventStream> {
    #[cfg(feature = "hydrate")]
    {
        use std::rc::Rc;
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;
        let source = web_sys::EventSource::new(url).ok()?;
        let on_event = Rc::new(on_event);
        for &name in names {
            let handler = on_event.clone();
            let close = terminal.contains(&name);
            let es = source.clone();
            let callback = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                handler(name, ev.data().as_string().unwrap_or_default());
                if close {
                    es.close();
                }
            });
            source.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref()).ok()?;
            callback.forget();
        }
        Some(EventStream { source })
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, names, terminal, on_event);
        None
    }
}

/// Whether the page is scrolled to within `margin_px` of its end (the gallery loads more then).
pub fn near_page_bottom(margin_px: f64) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let Some(window) = web_sys::window() else { return false };
        let viewport = window.inner_height().ok().and_then(|h| h.as_f64()).unwrap_or(0.0);
        let scrolled = window.scroll_y().unwrap_or(0.0);
        let height = window.document().and_then(|d| d.document_element()).map(|e| f64::from(e.scroll_height())).unwrap_or(0.0);
        scrolled + viewport >= height - margin_px
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = margin_px;
        false
    }
}
