//! Owns where a generation's noise comes from ([`NoiseSource`]), per compatibility mode:
//! diffusers' one torch CPU generator ([`crate::engine::torch_rng`]), AUTOMATIC1111's per-image
//! noise ([`a1111`], with its Philox imitation of CUDA noise in [`philox`]) and ComfyUI's
//! whole-batch noise ([`comfyui`]).

pub mod a1111;
pub mod brownian;
pub mod comfyui;
pub mod philox;
pub mod seed_sequence;

use crate::engine::torch_rng::TorchGenerator;

/// A generation's noise, draw after draw: the first draw is the batch's initial noise, each later
/// one the noise a sampler step asks for, always for the whole batch (`numel` values, C order).
pub trait NoiseSource: Send {
    fn draw(&mut self, numel: usize) -> Vec<f32>;
}

/// diffusers: every draw continues one torch CPU generator.
impl NoiseSource for TorchGenerator {
    fn draw(&mut self, numel: usize) -> Vec<f32> {
        self.randn(numel)
    }
}
