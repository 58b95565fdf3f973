//! The inference engine: Stable Diffusion 1.x on ONNX Runtime, as a library.
//!
//! **Invariant:** the engine knows nothing of HTTP, SQL or Leptos, and it is the only module that
//! touches `ort`. One call does the work: [`pipeline::generate`] takes a loaded [`model::SdModel`],
//! resolved settings, the source images, a [`CancelToken`] and a progress sink, and returns images.

pub mod cancel;
pub mod checkpoint;
pub mod clip_tokenizer;
pub mod comfy_prompt;
pub mod cv_blur;
mod error;
pub mod execution;
pub mod file_hash;
pub mod imageops;
pub mod infotext;
pub mod kdiffusion;
pub mod latent_bislerp;
pub mod latent_resize_aa;
pub mod lora;
pub mod merge;
pub mod model;
pub mod noise;
pub mod npy;
pub mod onnx_attention;
pub mod onnx_edit;
pub mod onnx_inspect;
pub mod onnx_model;
pub mod pil_alpha;
pub mod pipeline;
pub mod png_meta;
pub mod preview;
pub mod prompt;
pub mod runtime;
pub mod scheduler;
pub mod templates;
pub mod timesteps;
pub mod torch_file;
pub mod torch_rng;
pub mod weights_buffer;

pub use cancel::CancelToken;
pub use error::EngineError;
