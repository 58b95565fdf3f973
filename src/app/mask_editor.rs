//! Owns the inpainting mask: a <canvas> over the init image's preview where the user paints the
//! area to repaint (Pointer Events: mouse, pen and finger), its tools (brush size, paint/erase,
//! invert, clear, a bounded undo), and its export as a black/white PNG at the image's pixel size.

use leptos::prelude::*;

/// Canvas snapshots kept for undo.
#[cfg(feature = "hydrate")]
const MAX_UNDO: usize = 20;
/// Brush diameter in screen pixels: range and default.
pub const BRUSH_MIN: u32 = 2;
pub const BRUSH_MAX: u32 = 96;
pub const BRUSH_DEFAULT: u32 = 24;
/// The paint colour (shown half transparent by the stylesheet).
#[cfg(feature = "hydrate")]
const PAINT: &str = "rgb(255, 48, 96)";

/// Undo snapshots: canvas pixels in the browser (not `Send`, so local storage); nothing on the
/// server, where a local value dropped by another thread would panic.
#[cfg(feature = "hydrate")]
type UndoStack = StoredValue<Vec<web_sys::ImageData>, LocalStorage>;
#[cfg(not(feature = "hydrate"))]
type UndoStack = StoredValue<Vec<()>>;

/// The editor's state, shared by the canvas, its tools and the form that exports it.
#[derive(Clone, Copy)]
pub struct MaskHandle {
    canvas: NodeRef<leptos::html::Canvas>,
    undo: UndoStack,
    /// The last point of the stroke in progress, in canvas pixels.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    stroke: StoredValue<Option<(f64, f64)>>,
    /// Whether any pixel is painted (no paint = no mask).
    pub painted: RwSignal<bool>,
    pub undo_depth: RwSignal<usize>,
    pub erase: RwSignal<bool>,
    pub brush: RwSignal<u32>,
}

impl MaskHandle {
    pub fn new() -> Self {
        Self {
            canvas: NodeRef::new(),
            #[cfg(feature = "hydrate")]
            undo: StoredValue::new_local(Vec::new()),
            #[cfg(not(feature = "hydrate"))]
            undo: StoredValue::new(Vec::new()),
            stroke: StoredValue::new(None),
            painted: RwSignal::new(false),
            undo_depth: RwSignal::new(0),
            erase: RwSignal::new(false),
            brush: RwSignal::new(BRUSH_DEFAULT),
        }
    }

    /// A new picture: nothing painted, nothing to undo.
    fn reset(&self) {
        self.undo.set_value(Vec::new());
        self.undo_depth.set(0);
        self.painted.set(false);
    }
}

impl Default for MaskHandle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "hydrate")]
mod ops {
    use super::*;
    use wasm_bindgen::{Clamped, JsCast};
    use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

    fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
        canvas.get_context("2d").ok().flatten()?.dyn_into().ok()
    }

    impl MaskHandle {
        fn parts(&self) -> Option<(HtmlCanvasElement, CanvasRenderingContext2d)> {
            let canvas = self.canvas.get_untracked()?;
            let ctx = context(&canvas)?;
            Some((canvas, ctx))
        }

        fn pixels(canvas: &HtmlCanvasElement, ctx: &CanvasRenderingContext2d) -> Option<web_sys::ImageData> {
            ctx.get_image_data(0.0, 0.0, f64::from(canvas.width()), f64::from(canvas.height())).ok()
        }

        /// Saves the canvas for undo (the oldest snapshot goes past [`MAX_UNDO`]).
        pub(super) fn snapshot(&self) {
            let Some((canvas, ctx)) = self.parts() else { return };
            if let Some(data) = Self::pixels(&canvas, &ctx) {
                self.undo.update_value(|u| {
                    u.push(data);
                    if u.len() > MAX_UNDO {
                        u.remove(0);
                    }
                });
                self.undo_depth.set(self.undo.with_value(Vec::len));
            }
        }

        pub(super) fn refresh_painted(&self) {
            let Some((canvas, ctx)) = self.parts() else { return };
            let any = Self::pixels(&canvas, &ctx).is_some_and(|d| d.data().0.chunks_exact(4).any(|p| p[3] > 0));
            self.painted.set(any);
        }

        pub(super) fn undo_once(&self) {
            let Some((_, ctx)) = self.parts() else { return };
            let mut last = None;
            self.undo.update_value(|u| last = u.pop());
            self.undo_depth.set(self.undo.with_value(Vec::len));
            if let Some(data) = last {
                let _ = ctx.put_image_data(&data, 0.0, 0.0);
            }
            self.refresh_painted();
        }

        pub(super) fn clear(&self) {
            let Some((canvas, ctx)) = self.parts() else { return };
            self.snapshot();
            ctx.clear_rect(0.0, 0.0, f64::from(canvas.width()), f64::from(canvas.height()));
            self.painted.set(false);
        }

        /// Painted becomes unpainted and the other way round.
        pub(super) fn invert(&self) {
            let Some((canvas, ctx)) = self.parts() else { return };
            let Some(data) = Self::pixels(&canvas, &ctx) else { return };
            self.snapshot();
            let mut px = data.data().0;
            for p in px.chunks_exact_mut(4) {
                let a = if p[3] > 0 { 0 } else { 255 };
                p.copy_from_slice(&[255, 48, 96, a]);
            }
            if let Ok(inverted) = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px), canvas.width(), canvas.height()) {
                let _ = ctx.put_image_data(&inverted, 0.0, 0.0);
            }
            self.refresh_painted();
        }

        /// The pointer's position in canvas pixels, and canvas pixels per screen pixel.
        fn point(canvas: &HtmlCanvasElement, ev: &web_sys::PointerEvent) -> ((f64, f64), f64) {
            let rect = canvas.get_bounding_client_rect();
            let scale = if rect.width() > 0.0 { f64::from(canvas.width()) / rect.width() } else { 1.0 };
            let x = (f64::from(ev.client_x()) - rect.left()) * scale;
            let y = (f64::from(ev.client_y()) - rect.top()) * scale;
            ((x, y), scale)
        }

        fn draw(&self, ctx: &CanvasRenderingContext2d, from: (f64, f64), to: (f64, f64), scale: f64) {
            let width = f64::from(self.brush.get_untracked()) * scale;
            let op = if self.erase.get_untracked() { "destination-out" } else { "source-over" };
            let _ = ctx.set_global_composite_operation(op);
            ctx.set_stroke_style_str(PAINT);
            ctx.set_fill_style_str(PAINT);
            ctx.set_line_width(width);
            ctx.set_line_cap("round");
            ctx.set_line_join("round");
            if from == to {
                ctx.begin_path();
                let _ = ctx.arc(to.0, to.1, width / 2.0, 0.0, std::f64::consts::TAU);
                ctx.fill();
            } else {
                ctx.begin_path();
                ctx.move_to(from.0, from.1);
                ctx.line_to(to.0, to.1);
                ctx.stroke();
            }
        }

        pub(super) fn pointer_down(&self, ev: &web_sys::PointerEvent) {
            if ev.pointer_type() == "mouse" && ev.button() != 0 {
                return;
            }
            let Some((canvas, ctx)) = self.parts() else { return };
            ev.prevent_default();
            let _ = canvas.set_pointer_capture(ev.pointer_id());
            self.snapshot();
            let (p, scale) = Self::point(&canvas, ev);
            self.draw(&ctx, p, p, scale);
            self.stroke.set_value(Some(p));
        }

        pub(super) fn pointer_move(&self, ev: &web_sys::PointerEvent) {
            let Some(last) = self.stroke.get_value() else { return };
            let Some((canvas, ctx)) = self.parts() else { return };
            ev.prevent_default();
            let (p, scale) = Self::point(&canvas, ev);
            self.draw(&ctx, last, p, scale);
            self.stroke.set_value(Some(p));
        }

        pub(super) fn pointer_up(&self) {
            if self.stroke.get_value().is_some() {
                self.stroke.set_value(None);
                self.refresh_painted();
            }
        }

        /// The mask as a PNG (white = painted, black = kept) at the canvas's size, which is the
        /// init image's pixel size; `None` when nothing is painted.
        pub async fn export_png(&self) -> Result<Option<web_sys::Blob>, String> {
            self.refresh_painted();
            if !self.painted.get_untracked() {
                return Ok(None);
            }
            let (canvas, ctx) = self.parts().ok_or("the mask canvas is gone")?;
            let data = Self::pixels(&canvas, &ctx).ok_or("cannot read the mask")?;
            let mut px = data.data().0;
            for p in px.chunks_exact_mut(4) {
                let v = if p[3] > 0 { 255 } else { 0 };
                p.copy_from_slice(&[v, v, v, 255]);
            }
            let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
            let out: HtmlCanvasElement = document.create_element("canvas").map_err(|e| format!("{e:?}"))?.unchecked_into();
            out.set_width(canvas.width());
            out.set_height(canvas.height());
            let out_ctx = context(&out).ok_or("no 2d context")?;
            let bw = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px), canvas.width(), canvas.height())
                .map_err(|e| format!("{e:?}"))?;
            out_ctx.put_image_data(&bw, 0.0, 0.0).map_err(|e| format!("{e:?}"))?;
            let url = out.to_data_url_with_type("image/png").map_err(|e| format!("{e:?}"))?;
            // A data: URL fetched locally is the simplest way from a canvas to a Blob.
            let window = web_sys::window().ok_or("no window")?;
            let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(&url)).await.map_err(|e| format!("{e:?}"))?;
            let response: web_sys::Response = response.unchecked_into();
            let blob =
                wasm_bindgen_futures::JsFuture::from(response.blob().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
            Ok(Some(blob.unchecked_into()))
        }
    }
}

/// The paint layer: a canvas of `width` x `height` pixels (the init image's), laid over its
/// preview by the stylesheet. A new one (a new picture) starts empty.
#[component]
pub fn MaskCanvas(handle: MaskHandle, width: u32, height: u32) -> impl IntoView {
    handle.reset();
    let down = move |ev: leptos::ev::PointerEvent| {
        #[cfg(feature = "hydrate")]
        handle.pointer_down(&ev);
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let moved = move |ev: leptos::ev::PointerEvent| {
        #[cfg(feature = "hydrate")]
        handle.pointer_move(&ev);
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let up = move |_: leptos::ev::PointerEvent| {
        #[cfg(feature = "hydrate")]
        handle.pointer_up();
    };
    view! {
        <canvas
            class="mask-canvas"
            aria-label="Mask: paint the area to repaint"
            node_ref=handle.canvas
            width=width
            height=height
            data-painted=move || handle.painted.get().to_string()
            on:pointerdown=down
            on:pointermove=moved
            on:pointerup=up
            on:pointercancel=up
        ></canvas>
    }
}

/// Brush size, paint/erase, invert, clear and undo.
#[component]
pub fn MaskTools(handle: MaskHandle) -> impl IntoView {
    type Action = fn(&MaskHandle);
    let act = move |what: Action| move |_| what(&handle);
    #[cfg(feature = "hydrate")]
    let (undo, clear, invert): (Action, Action, Action) = (MaskHandle::undo_once, MaskHandle::clear, MaskHandle::invert);
    #[cfg(not(feature = "hydrate"))]
    let (undo, clear, invert): (Action, Action, Action) = (|_| (), |_| (), |_| ());
    view! {
        <div class="mask-tools" role="group" aria-label="Mask tools">
            <label for="brush-size">{move || format!("Brush {} px", handle.brush.get())}</label>
            <input
                id="brush-size"
                type="range"
                min=BRUSH_MIN
                max=BRUSH_MAX
                step="1"
                prop:value=move || handle.brush.get().to_string()
                on:input=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse() {
                        handle.brush.set(v);
                    }
                }
            />
            <div class="presets">
                <button
                    type="button"
                    class="chip"
                    aria-pressed=move || (!handle.erase.get()).to_string()
                    on:click=move |_| handle.erase.set(false)
                >
                    "Paint"
                </button>
                <button
                    type="button"
                    class="chip"
                    aria-pressed=move || handle.erase.get().to_string()
                    on:click=move |_| handle.erase.set(true)
                >
                    "Erase"
                </button>
                <button type="button" class="chip" on:click=act(invert)>
                    "Invert"
                </button>
                <button type="button" class="chip" on:click=act(clear)>
                    "Clear"
                </button>
                <button type="button" class="chip" disabled=move || handle.undo_depth.get() == 0 on:click=act(undo)>
                    "Undo"
                </button>
            </div>
            <p class="hint" id="mask-state">
                {move || if handle.painted.get() { "Inpainting the painted area." } else { "Nothing painted: the whole image is redrawn." }}
            </p>
        </div>
    }
}
