//! Owns the random numbers of each compatibility mode besides diffusers' (one torch CPU generator,
//! [`crate::engine::torch_rng`]): AUTOMATIC1111's per-image noise ([`a1111`], with its Philox
//! imitation of CUDA noise in [`philox`]) and ComfyUI's whole-batch noise ([`comfyui`]).

pub mod a1111;
pub mod comfyui;
pub mod philox;
