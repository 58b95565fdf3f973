//! Owns ComfyUI's noise: the initial noise of a batch is one draw of torch's CPU generator seeded
//! with the seed, for the whole `[B, 4, h, w]` batch (`comfy/sample.py`'s `prepare_noise`; with
//! batch indices, one `[1, 4, h, w]` draw per index up to the largest, each image taking its
//! index's); the sampler's noise comes from another generator seeded with the same seed, one
//! whole-batch draw per call (`comfy/k_diffusion/sampling.py`'s `default_noise_sampler`, as it
//! runs on the CPU).

use crate::engine::torch_rng::TorchGenerator;

/// The initial noise of a batch of `batch` images of `image` elements each. `batch_indices`
/// (ComfyUI's `batch_index` of a latent) pick which draw each image gets.
pub fn prepare_noise(seed: u64, batch: usize, image: usize, batch_indices: Option<&[usize]>) -> Vec<f32> {
    let mut generator = TorchGenerator::new(seed);
    let Some(indices) = batch_indices else {
        return generator.randn(batch * image);
    };
    let last = indices.iter().copied().max().unwrap_or(0);
    let draws: Vec<Vec<f32>> = (0..=last).map(|_| generator.randn(image)).collect();
    indices.iter().flat_map(|&i| draws[i].iter().copied()).collect()
}

/// ComfyUI's `default_noise_sampler(x, seed)`.
pub struct NoiseSampler {
    generator: TorchGenerator,
    numel: usize,
}

impl NoiseSampler {
    pub fn new(seed: u64, numel: usize) -> Self {
        Self { generator: TorchGenerator::new(seed), numel }
    }

    /// The next noise, the whole batch at once.
    pub fn step_noise(&mut self) -> Vec<f32> {
        self.generator.randn(self.numel)
    }
}

impl super::NoiseSource for NoiseSampler {
    fn draw(&mut self, _numel: usize) -> Vec<f32> {
        self.step_noise()
    }
}

/// A KSampler run's noise: [`prepare_noise`] first, then the noise sampler's draws.
pub struct ComfyNoise {
    seed: u64,
    batch: usize,
    batch_indices: Option<Vec<usize>>,
    sampler: Option<NoiseSampler>,
}

impl ComfyNoise {
    pub fn new(seed: u64, batch: usize, batch_indices: Option<Vec<usize>>) -> Self {
        Self { seed, batch, batch_indices, sampler: None }
    }
}

impl super::NoiseSource for ComfyNoise {
    fn draw(&mut self, numel: usize) -> Vec<f32> {
        match &mut self.sampler {
            Some(sampler) => sampler.step_noise(),
            None => {
                self.sampler = Some(NoiseSampler::new(self.seed, numel));
                prepare_noise(self.seed, self.batch, numel / self.batch.max(1), self.batch_indices.as_deref())
            }
        }
    }
}
