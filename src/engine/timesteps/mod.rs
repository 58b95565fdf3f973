//! Owns AUTOMATIC1111's timestep samplers (`modules/sd_samplers_timesteps.py`): DDIM, DDIM CFG++,
//! PLMS and UniPC, which call the guided noise prediction `ε(x, t)` on variance-preserving
//! latents (the UNet input is `x` itself; no σ scaling, no k-diffusion wrapper). Their timesteps
//! are A1111's `range(0, 1000, 1000 // steps) + 1`, clipped to 999: DDIM and PLMS walk them from
//! the last down to the second (the last update lands on the first timestep's ᾱ, never on 0);
//! UniPC takes their count as its steps in continuous time. One file per sampler.
//!
//! Arithmetic is float32 in torch's order on A1111's float32 tensors, so results agree with
//! A1111's own functions to float32 rounding (`tests/kdiffusion_parity.rs`).

mod ddim;
mod ddim_cfg_pp;
mod plms;
mod unipc;

use super::EngineError;
use crate::api::Sampler;

/// The model as a timestep sampler sees it: the guided noise prediction for the whole batch at
/// one training timestep.
pub trait EpsModel {
    /// The noise prediction at `t`, guidance at the request's scale times `scale` (A1111's
    /// `cond_scale_miltiplier`: 1, or 1/12.5 for CFG++).
    /// `t` is a training timestep (fractional for UniPC, which runs in continuous time).
    fn eps(&mut self, x: &[f32], t: f64, scale: f64) -> Result<Vec<f32>, EngineError>;
    /// The unconditional branch's noise prediction of the last call (A1111's
    /// `last_noise_uncond`); `None` without guidance, where it is the guided one.
    fn last_uncond(&self) -> Option<&[f32]>;
}

/// What a timestep sampler reports after each step (A1111's callback): the latents the step
/// produced and its prediction of the clean latents.
pub struct Step<'a> {
    pub i: usize,
    pub x: &'a [f32],
    pub pred_x0: &'a [f32],
}

/// A run's inputs besides the latents.
pub struct Run<'a> {
    pub model: &'a mut dyn EpsModel,
    /// ᾱ of every training timestep (float32, as the model holds it).
    pub alphas_cumprod: &'a [f32],
    pub on_step: &'a mut dyn FnMut(Step<'_>),
}

/// A1111's timestep samplers Easel runs (their names live with [`Sampler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestepSampler {
    /// `sd_samplers_timesteps_impl.ddim` at A1111's default `eta_ddim` of 0.
    Ddim,
    /// `sd_samplers_timesteps_impl.ddim_cfgpp` at eta 0.
    DdimCfgPp,
    /// `sd_samplers_timesteps_impl.plms`.
    Plms,
    /// `sd_samplers_timesteps_impl.unipc` with A1111's UniPC defaults.
    UniPc,
}

impl TimestepSampler {
    /// The timestep sampler a request's sampler names in the a1111 mode, if it is one.
    pub fn for_sampler(sampler: Sampler) -> Option<TimestepSampler> {
        match sampler {
            Sampler::Ddim => Some(TimestepSampler::Ddim),
            Sampler::DdimCfgPp => Some(TimestepSampler::DdimCfgPp),
            Sampler::Pndm => Some(TimestepSampler::Plms),
            Sampler::Unipc => Some(TimestepSampler::UniPc),
            _ => None,
        }
    }

    /// How many model calls a run over `timesteps` makes (PLMS's first step makes two; UniPC
    /// one per timestep).
    pub fn model_calls(self, timesteps: &[u32]) -> usize {
        let steps = timesteps.len().saturating_sub(1);
        match self {
            TimestepSampler::Ddim | TimestepSampler::DdimCfgPp => steps,
            TimestepSampler::Plms => steps + usize::from(steps > 0),
            TimestepSampler::UniPc => timesteps.len(),
        }
    }

    /// Runs the sampler from `x` (variance-preserving latents at the last of `timesteps`; for
    /// `img2img`, UniPC starts just above the last walked timestep as A1111's does).
    pub fn sample(self, x: Vec<f32>, timesteps: &[u32], img2img: bool, run: &mut Run<'_>) -> Result<Vec<f32>, EngineError> {
        let table = || Alphas::new(run.alphas_cumprod, timesteps);
        match self {
            TimestepSampler::Ddim => ddim::sample(x, timesteps, &table()?, run),
            TimestepSampler::DdimCfgPp => ddim_cfg_pp::sample(x, timesteps, &table()?, run),
            TimestepSampler::Plms => plms::sample(x, timesteps, &table()?, run),
            TimestepSampler::UniPc => unipc::sample(x, timesteps, img2img, run),
        }
    }
}

/// A1111's `CompVisSampler.get_timesteps` for `steps` (without "discard penultimate sigma", off
/// by default): `clip(range(0, 1000, 1000 // steps) + 1, 0, 999)`. The count is
/// `ceil(1000 / (1000 // steps))`, which is more than `steps` where 1000 is not a multiple.
pub fn timesteps(steps: usize) -> Vec<u32> {
    let stride = 1000 / steps.clamp(1, 1000);
    (0..1000).step_by(stride).map(|t| (t as u32 + 1).min(999)).collect()
}

/// A1111's image-to-image with a timestep sampler (`CompVisSampler.sample_img2img`): of the
/// timesteps for `steps`, the first `t_enc` (from `setup_img2img_steps`) are walked, and the
/// latents are noised to the timestep after them, `t_enc` (as A1111 does: the first model call
/// is then one timestep below the noise level). Returns (the timesteps walked, ᾱ the latents are
/// noised to).
pub fn img2img(steps: usize, t_enc: usize, alphas_cumprod: &[f32]) -> Result<(Vec<u32>, f32), EngineError> {
    let all = timesteps(steps);
    let noised_at = *all.get(t_enc).ok_or_else(|| EngineError::InvalidRequest(format!("no timestep {t_enc} of {}", all.len())))?;
    let alpha = *alphas_cumprod
        .get(noised_at as usize)
        .ok_or_else(|| EngineError::InvalidRequest(format!("timestep {noised_at} is past the model's schedule")))?;
    Ok((all[..t_enc].to_vec(), alpha))
}

/// `x · √ᾱ + noise · √(1 − ᾱ)` in float32 (A1111's `xi` for image-to-image).
pub fn noised(latents: &[f32], noise: &[f32], alpha: f32) -> Vec<f32> {
    let (keep, add) = (alpha.sqrt(), (1.0 - alpha).sqrt());
    latents.iter().zip(noise).map(|(x, n)| x * keep + n * add).collect()
}

/// The per-step coefficients both samplers read: for each index of the timesteps, ᾱ there, ᾱ at
/// the previous timestep (ᾱ₀ for the first, A1111's left pad with timestep 0) and `√(1 − ᾱ)`.
struct Alphas {
    at: Vec<f32>,
    prev: Vec<f32>,
    sqrt_one_minus: Vec<f32>,
}

impl Alphas {
    fn new(alphas_cumprod: &[f32], timesteps: &[u32]) -> Result<Self, EngineError> {
        let lookup = |t: u32| {
            alphas_cumprod.get(t as usize).copied().ok_or_else(|| {
                EngineError::InvalidRequest(format!("timestep {t} is past the model's schedule of {}", alphas_cumprod.len()))
            })
        };
        let at = timesteps.iter().map(|&t| lookup(t)).collect::<Result<Vec<f32>, _>>()?;
        let mut prev = vec![lookup(0)?];
        prev.extend(timesteps.iter().take(timesteps.len().saturating_sub(1)).map(|&t| lookup(t)).collect::<Result<Vec<f32>, _>>()?);
        let sqrt_one_minus = at.iter().map(|a| (1.0 - a).sqrt()).collect();
        Ok(Self { at, prev, sqrt_one_minus })
    }

    /// `(x − √(1 − ᾱ_t)·ε) / √ᾱ_t` and `√ᾱ_prev · pred_x0 + √(1 − ᾱ_prev) · ε` at `index`:
    /// A1111's `get_x_prev_and_pred_x0` (DDIM's step at eta 0).
    fn step(&self, x: &[f32], eps: &[f32], index: usize) -> (Vec<f32>, Vec<f32>) {
        self.step_towards(x, eps, eps, index)
    }

    /// [`Self::step`] with the direction to the next latents along `towards` (CFG++: the
    /// unconditional prediction) while `pred_x0` comes from `eps`.
    fn step_towards(&self, x: &[f32], eps: &[f32], towards: &[f32], index: usize) -> (Vec<f32>, Vec<f32>) {
        let (root_at, root_prev) = (self.at[index].sqrt(), self.prev[index].sqrt());
        let s1m = self.sqrt_one_minus[index];
        let dir = (1.0 - self.prev[index]).sqrt();
        let pred_x0: Vec<f32> = x.iter().zip(eps).map(|(x, e)| (x - s1m * e) / root_at).collect();
        let next = pred_x0.iter().zip(towards).map(|(p, e)| root_prev * p + dir * e).collect();
        (next, pred_x0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_are_a1111s() {
        assert_eq!(timesteps(20), (0..20).map(|i| i * 50 + 1).collect::<Vec<u32>>());
        // 1000 // 30 = 33: 31 timesteps, 991 the last.
        let t = timesteps(30);
        assert_eq!((t.len(), t[0], t[1], *t.last().unwrap()), (31, 1, 34, 991));
        assert_eq!(timesteps(1), vec![1]);
        assert_eq!(*timesteps(1000).last().unwrap(), 999);
    }

    #[test]
    fn image_to_image_walks_the_first_t_enc_timesteps() {
        let ac: Vec<f32> = (0..1000).map(|i| 1.0 - i as f32 / 1000.0).collect();
        let (walked, alpha) = img2img(20, 10, &ac).unwrap();
        assert_eq!(walked, (0..10).map(|i| i * 50 + 1).collect::<Vec<u32>>());
        assert_eq!(alpha, ac[501]);
        assert_eq!(img2img(20, 19, &ac).unwrap().0.len(), 19);
    }
}
