//! The inference engine: Stable Diffusion on ONNX Runtime, as a library.
//!
//! **Invariant:** the engine knows nothing of HTTP, SQL or Leptos, and it is the only module that
//! touches `ort`. Callers give it a model, a request, a cancel token and a progress sink.

pub mod runtime;
