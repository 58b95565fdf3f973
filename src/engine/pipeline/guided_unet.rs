//! Owns one UNet evaluation under classifier-free guidance: the batch of every guidance branch
//! (the negative prompt's, then each `AND` part's) for the current conditioning call, run as
//! few UNet calls as the conditionings' lengths and the memory bound allow, and the branches
//! combined with their weights. Both loops use it: diffusers' schedulers (on the noise
//! prediction) and k-diffusion's samplers (on the denoised latents, as A1111 and ComfyUI do).

use super::area_weights::{side_average, Crop, Weighting};
use super::stages::DenoiseRun;
use crate::engine::model::{SdModel, SlotGuard};
use crate::engine::onnx_model::{spec, InputData, InputSpec};
use crate::engine::prompt::Encoding;
use crate::engine::EngineError;

pub struct GuidedUnet<'a> {
    unet: SlotGuard<'a>,
    run: &'a DenoiseRun<'a>,
    sample_in: InputSpec,
    timestep_in: InputSpec,
    context_in: InputSpec,
    /// Extra input channels per image after the latents (an inpainting UNet's 5).
    extra: usize,
    split_above: usize,
}

impl<'a> GuidedUnet<'a> {
    /// The model's UNet for `run`, its input channels checked against the request.
    pub fn new(model: &'a mut SdModel, run: &'a DenoiseRun<'a>) -> Result<Self, EngineError> {
        let [batch, channels, latent_h, latent_w] = run.latent_shape;
        let extra = run.conditioning.len() / (batch * latent_h * latent_w).max(1);
        let split_above = model.split_guidance_tokens;
        let unet = model.unet()?;
        let sample_in = spec(&unet, "sample", 0)?;
        let unet_channels = sample_in.dims.get(1).copied().unwrap_or(-1);
        if unet_channels > 0 && unet_channels as usize != channels + extra {
            return Err(EngineError::InvalidRequest(if unet_channels as usize > channels {
                format!("this UNet takes {unet_channels} input channels (an inpainting model); give it an init image and a mask")
            } else {
                format!("this UNet takes {unet_channels} input channels; an inpainting request needs an inpainting model (9 channels)")
            }));
        }
        let timestep_in = spec(&unet, "timestep", 1)?;
        let context_in = spec(&unet, "encoder_hidden_states", 2)?;
        Ok(Self { unet, run, sample_in, timestep_in, context_in, extra, split_above })
    }

    /// Every branch's UNet output for the scaled latents `scaled` (`[batch, 4, h, w]`) at
    /// `timestep`, with the conditioning of call `call`; the unconditional branch first when
    /// guidance is on.
    pub fn branch_outputs(&mut self, scaled: &[f32], timestep: f64, call: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        let [batch, channels, latent_h, latent_w] = self.run.latent_shape;
        let plane = latent_h * latent_w;
        let extra = self.extra;
        let model_input: Vec<f32> = if extra == 0 {
            scaled.to_vec()
        } else {
            // Per image: its scaled latents, then its conditioning channels.
            let mut joined = Vec::with_capacity(batch * (channels + extra) * plane);
            for (one, cond) in scaled.chunks(channels * plane).zip(self.run.conditioning.chunks(extra * plane)) {
                joined.extend_from_slice(one);
                joined.extend_from_slice(cond);
            }
            joined
        };
        // One UNet call per run of branches whose conditionings have the same length (A1111
        // runs the halves of guidance separately when the prompt and the negative prompt have
        // different chunk counts). Above `SdModel::split_guidance_tokens` latent positions
        // (default [`super::stages::SPLIT_GUIDANCE_TOKENS`]) every branch is its own call: the
        // UNet's self-attention holds a positions² matrix per head and image (17 GB for a pair
        // at 1024², which does not fit in 24 GB), and each branch's result is the same.
        let text = self.run.text;
        let branches = text.branches(call);
        let dim = text.dim();
        let tokens_of = |e: &Encoding| e.len() / dim;
        let split = branches.len() > 1 && plane > self.split_above;
        // ComfyUI's entries with an area run on that crop of the latents.
        let crops: Vec<Option<Crop>> = match text.regions() {
            Some(regions) => regions
                .iter()
                .map(|(_, region)| match region.area {
                    None => Ok(None),
                    Some(area) => Crop::of(area, latent_h, latent_w).map(Some).ok_or_else(|| {
                        EngineError::InvalidRequest(format!("a conditioning area starts outside the {latent_w}x{latent_h} latents"))
                    }),
                })
                .collect::<Result<_, _>>()?,
            None => vec![None; branches.len()],
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for j in 0..branches.len() {
            match groups.last_mut() {
                Some(group) if !split && tokens_of(branches[group[0]].1) == tokens_of(branches[j].1) && crops[group[0]] == crops[j] => {
                    group.push(j)
                }
                _ => groups.push(vec![j]),
            }
        }
        // The images of the batch go in slices small enough that one call's attention holds no
        // more than the pair at the split size does (`2 * split_above²` positions² per call): a
        // batch of 8 at 512² is then 8 calls of one image's pair, not one call of 16, which
        // would need ~17 GB for its score matrices. Each image's result is the same either way.
        let budget = 2 * self.split_above.max(1).pow(2);
        let image_len = (channels + extra) * plane;
        let mut outputs: Vec<Vec<f32>> = vec![Vec::with_capacity(scaled.len()); branches.len()];
        for group in &groups {
            let tokens = tokens_of(branches[group[0]].1);
            let crop = crops[group[0]];
            let (run_h, run_w) = crop.map_or((latent_h, latent_w), |c| (c.h, c.w));
            let run_plane = run_h * run_w;
            let per_slice = (budget / (group.len() * run_plane * run_plane).max(1)).clamp(1, batch.max(1));
            for first in (0..batch).step_by(per_slice) {
                let images = per_slice.min(batch - first);
                let per_call = images * group.len();
                let whole = &model_input[first * image_len..(first + images) * image_len];
                let cropped = crop.map(|c| c.cut(whole, latent_w, plane));
                let slice = cropped.as_deref().unwrap_or(whole);
                let sample: Vec<f32> = slice.iter().copied().cycle().take(slice.len() * group.len()).collect();
                let mut context = Vec::with_capacity(per_call * tokens * dim);
                for &j in group {
                    for _ in 0..images {
                        context.extend_from_slice(branches[j].1);
                    }
                }
                let (_, out) = self.unet.run(
                    vec![
                        (&self.sample_in, InputData::Float { shape: vec![per_call, channels + extra, run_h, run_w], data: &sample }),
                        (&self.timestep_in, InputData::Timestep { value: timestep, batch: per_call }),
                        (&self.context_in, InputData::Float { shape: vec![per_call, tokens, dim], data: &context }),
                    ],
                    "out_sample",
                )?;
                let out_len = images * channels * run_plane;
                for (k, &j) in group.iter().enumerate() {
                    let one = &out[k * out_len..(k + 1) * out_len];
                    match crop {
                        Some(c) => outputs[j].extend(c.paste(one, latent_h, latent_w)),
                        None => outputs[j].extend_from_slice(one),
                    }
                }
            }
        }
        Ok(outputs)
    }

    /// Whether the unconditional branch runs (it is then the first of [`Self::branch_outputs`]).
    pub fn guided(&self) -> bool {
        self.run.text.guided
    }

    /// The branches combined: `u + Σ_j w_j·g·(c_j − u)` (diffusers' `u + g·(c − u)` for one part
    /// of weight 1, bit for bit; A1111's composable guidance for `AND` parts); the only branch
    /// without guidance.
    pub fn guide(&self, branches: Vec<Vec<f32>>, call: usize) -> Vec<f32> {
        self.guide_scaled(branches, call, 1.0)
    }

    /// [`Self::guide`] at the request's scale times `multiplier` (A1111's CFG++ samplers guide at
    /// 1/12.5 of it); each branch's factor is `weight · (scale · multiplier)` taken in float64 and
    /// rounded once, as the tools multiply Python floats before the float32 tensor.
    pub fn guide_scaled(&self, branches: Vec<Vec<f32>>, call: usize, multiplier: f64) -> Vec<f32> {
        self.guide_keeping_uncond(branches, call, multiplier).0
    }

    /// [`Self::guide_scaled`], and the unconditional prediction it combined (the negative
    /// side's average with ComfyUI's conditioning lists), when guided.
    pub fn guide_keeping_uncond(&self, mut branches: Vec<Vec<f32>>, call: usize, multiplier: f64) -> (Vec<f32>, Option<Vec<f32>>) {
        if let Some(sides) = self.sides(&branches) {
            // ComfyUI's `cfg_function` over the two sides' averages: `u + (c − u)·g`.
            let (uncond, cond) = sides;
            let Some(u) = uncond else { return (cond, None) };
            let scale = (f64::from(self.run.cfg_scale) * multiplier) as f32;
            return (u.iter().zip(&cond).map(|(&u, &c)| u + (c - u) * scale).collect(), Some(u));
        }
        if !self.run.text.guided {
            return (branches.swap_remove(0), None);
        }
        let uncond = branches[0].clone();
        let weights: Vec<f32> = self.run.text.branches(call).iter().map(|(w, _)| *w).collect();
        let mut sum = branches[0].clone();
        for (j, weight) in weights.iter().enumerate().skip(1) {
            let scale = (f64::from(*weight) * (f64::from(self.run.cfg_scale) * multiplier)) as f32;
            for ((acc, &u), &c) in sum.iter_mut().zip(&branches[0]).zip(&branches[j]) {
                *acc += scale * (c - u);
            }
        }
        (sum, Some(uncond))
    }

    /// With ComfyUI's conditioning lists: each side's per-pixel average of its branches (the
    /// negative one only when guided).
    fn sides(&self, branches: &[Vec<f32>]) -> Option<(Option<Vec<f32>>, Vec<f32>)> {
        let regions = self.run.text.regions()?;
        let [_, _, latent_h, latent_w] = self.run.latent_shape;
        let weightings: Vec<Option<Weighting>> = regions.iter().map(|(_, r)| Weighting::of(r, latent_h, latent_w)).collect();
        let side = |negative: bool| -> Vec<f32> {
            let members: Vec<(&[f32], &Weighting)> = regions
                .iter()
                .zip(&weightings)
                .zip(branches)
                .filter(|(((n, _), w), _)| *n == negative && w.is_some())
                .map(|((_, w), out)| (out.as_slice(), w.as_ref().expect("filtered")))
                .collect();
            side_average(&members, latent_h, latent_w)
        };
        Some((self.run.text.guided.then(|| side(true)), side(false)))
    }
}
