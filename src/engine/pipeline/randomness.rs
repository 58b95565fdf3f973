//! Owns a generation's random numbers by compatibility mode: the noise (the start noise of the
//! batch, then each sampler step's, from [`crate::engine::noise`]) and the draws the VAE
//! encoder's sampling takes. In diffusers mode both continue one torch CPU generator, in the
//! order diffusers' pipelines draw; in the A1111 and ComfyUI modes the noise is theirs and the VAE
//! draws come from a torch generator of their own, seeded with the seed.

use crate::api::{Compat, GenerationSettings};
use crate::engine::noise::a1111::{A1111Seeds, ImageRng};
use crate::engine::noise::comfyui::ComfyNoise;
use crate::engine::noise::NoiseSource;
use crate::engine::torch_rng::TorchGenerator;

pub struct Randomness {
    noise: Box<dyn NoiseSource>,
    /// `None`: the VAE draws continue the noise generator (diffusers).
    vae: Option<TorchGenerator>,
    /// The first start noise drawn (for `--save-noise`).
    initial: Option<Vec<f32>>,
}

impl Randomness {
    /// The random numbers of one pass over latents of `shape` (`[batch, 4, h, w]`): every pass,
    /// the hires fix's second one included, starts from the seed again, as each tool does.
    pub fn new(settings: &GenerationSettings, shape: [usize; 4]) -> Self {
        let seed = settings.seed;
        let noise: Box<dyn NoiseSource> = match settings.noise.compat {
            Compat::Diffusers => return Self { noise: Box::new(TorchGenerator::new(seed)), vae: None, initial: None },
            Compat::A1111 => Box::new(ImageRng::new(A1111Seeds::from_settings(settings), shape[0], [shape[1], shape[2], shape[3]])),
            // LatentFromBatch: the batch's images are these indices of a larger one.
            Compat::ComfyUi => {
                let indices = settings.batch_index.map(|first| (first as usize..first as usize + shape[0]).collect());
                Box::new(ComfyNoise::new(seed, shape[0], indices))
            }
        };
        Self { noise, vae: Some(TorchGenerator::new(seed)), initial: None }
    }

    /// The start noise of the batch (`numel` values), kept the first time.
    pub fn start_noise(&mut self, numel: usize) -> Vec<f32> {
        let noise = self.noise.draw(numel);
        if self.initial.is_none() {
            self.initial = Some(noise.clone());
        }
        noise
    }

    /// Where the sampler's step noise comes from.
    pub fn steps(&mut self) -> &mut dyn NoiseSource {
        self.noise.as_mut()
    }

    /// Where the VAE encoder's sampling draws come from.
    pub fn vae(&mut self) -> &mut dyn NoiseSource {
        match &mut self.vae {
            Some(vae) => vae,
            None => self.noise.as_mut(),
        }
    }

    /// The first start noise drawn, if any.
    pub fn take_initial(&mut self) -> Option<Vec<f32>> {
        self.initial.take()
    }
}
