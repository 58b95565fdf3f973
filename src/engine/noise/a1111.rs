//! Owns AUTOMATIC1111's noise: one generator per image seeded with that image's seed (so an
//! image's noise does not depend on the batch it is in), from the `randn_source` A1111 is set to
//! (`nv`, its Philox imitation of CUDA noise, the default; or `cpu`, torch's CPU generator);
//! variation seeds mixed in by A1111's slerp; "resize seed from" (the noise of a smaller image
//! pasted centred into the full-size draw); and eta noise seed delta (ENSD), which reseeds every
//! image's generator with `seed + ENSD` once the initial noise is drawn, for the sampler's noise.

pub use crate::api::RandnSource;

use super::philox::PhiloxGenerator;
use crate::engine::torch_rng::TorchGenerator;

/// One image's generator.
#[derive(Debug, Clone)]
enum Generator {
    Nv(PhiloxGenerator),
    Cpu(Box<TorchGenerator>),
}

impl Generator {
    fn new(source: RandnSource, seed: u64) -> Self {
        match source {
            RandnSource::Nv => Generator::Nv(PhiloxGenerator::new(seed)),
            RandnSource::Cpu => Generator::Cpu(Box::new(TorchGenerator::new(seed))),
        }
    }

    fn randn(&mut self, numel: usize) -> Vec<f32> {
        match self {
            Generator::Nv(g) => g.randn(numel),
            Generator::Cpu(g) => g.randn(numel),
        }
    }
}

/// What A1111's noise for one batch depends on (`processing.py`'s seeds and options).
#[derive(Debug, Clone, PartialEq)]
pub struct A1111Seeds {
    pub source: RandnSource,
    /// The batch's first seed: image `i` uses `seed + i`, or `seed` for every image when
    /// variation seeds are mixed in (A1111's rule).
    pub seed: u64,
    /// Variation seed and strength (0: none); image `i` uses `subseed + i`.
    pub subseed: Option<(u64, f32)>,
    /// "Resize seed from" width and height in pixels (0: off).
    pub resize_from: (u32, u32),
    /// Eta noise seed delta (0: off).
    pub eta_noise_seed_delta: u64,
}

impl A1111Seeds {
    /// A request's A1111 noise settings.
    pub fn from_settings(settings: &crate::api::GenerationSettings) -> Self {
        let n = &settings.noise;
        A1111Seeds {
            source: n.randn_source.unwrap_or_default(),
            seed: settings.seed,
            subseed: n.subseed.map(|s| (s, n.subseed_strength)),
            resize_from: n.seed_resize_from.unwrap_or((0, 0)),
            eta_noise_seed_delta: n.eta_noise_seed_delta,
        }
    }

    /// Every image's seed, as A1111 writes `all_seeds`.
    pub fn image_seeds(&self, batch: usize) -> Vec<u64> {
        let varied = self.subseed.is_some_and(|(_, strength)| strength != 0.0);
        (0..batch as u64).map(|i| if varied { self.seed } else { self.seed.wrapping_add(i) }).collect()
    }

    /// Every image's variation seed (`all_subseeds`), when variation is on.
    pub fn image_subseeds(&self, batch: usize) -> Option<Vec<u64>> {
        let (subseed, _) = self.subseed.filter(|(_, strength)| *strength != 0.0)?;
        Some((0..batch as u64).map(|i| subseed.wrapping_add(i)).collect())
    }
}

/// A1111's `create_random_tensors(shape, seeds)` with no variation: each seed's first draw of
/// `numel` values from a fresh generator, one after another.
pub fn first_draws(source: RandnSource, seeds: &[u64], numel: usize) -> Vec<f32> {
    seeds.iter().flat_map(|s| Generator::new(source, *s).randn(numel)).collect()
}

/// A1111's `ImageRNG`: the initial noise of a batch, then one draw per image for every noise the
/// sampler asks for.
pub struct ImageRng {
    seeds: A1111Seeds,
    /// One image's shape: `[4, h, w]`.
    shape: [usize; 3],
    image_seeds: Vec<u64>,
    generators: Vec<Generator>,
    drawn_first: bool,
}

impl ImageRng {
    pub fn new(seeds: A1111Seeds, batch: usize, shape: [usize; 3]) -> Self {
        let image_seeds = seeds.image_seeds(batch);
        let generators = image_seeds.iter().map(|s| Generator::new(seeds.source, *s)).collect();
        Self { seeds, shape, image_seeds, generators, drawn_first: false }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The initial noise, `[batch, 4, h, w]` in C order (A1111's `ImageRNG.first`).
    pub fn first(&mut self) -> Vec<f32> {
        self.drawn_first = true;
        let [c, h, w] = self.shape;
        let (from_w, from_h) = self.seeds.resize_from;
        let small = (from_h > 0 && from_w > 0).then_some([c, from_h as usize / 8, from_w as usize / 8]).filter(|s| *s != self.shape);
        let noise_shape = small.unwrap_or(self.shape);
        let subseeds = self.seeds.image_subseeds(self.image_seeds.len());
        let strength = self.seeds.subseed.map_or(0.0, |(_, s)| s);
        let source = self.seeds.source;
        let mut out = Vec::with_capacity(self.image_seeds.len() * self.numel());
        for i in 0..self.image_seeds.len() {
            let noise_numel: usize = noise_shape.iter().product();
            // A resized seed draws its small noise from a fresh generator; otherwise the image's
            // own generator makes the noise.
            let mut noise = match small {
                Some(_) => Generator::new(source, self.image_seeds[i]).randn(noise_numel),
                None => self.generators[i].randn(noise_numel),
            };
            if let Some(subseeds) = &subseeds {
                let subnoise = Generator::new(source, subseeds[i]).randn(noise_numel);
                noise = slerp(strength, &noise, &subnoise, noise_shape);
            }
            if let Some(small) = small {
                let numel = self.numel();
                let mut full = self.generators[i].randn(numel);
                paste_centred(&mut full, [c, h, w], &noise, small);
                noise = full;
            }
            out.extend(noise);
        }
        if self.seeds.eta_noise_seed_delta != 0 {
            let delta = self.seeds.eta_noise_seed_delta;
            self.generators = self.image_seeds.iter().map(|s| Generator::new(source, s.wrapping_add(delta))).collect();
        }
        out
    }

    /// The next sampler noise: one draw per image from its generator, `[batch, 4, h, w]`.
    pub fn step_noise(&mut self) -> Vec<f32> {
        let numel = self.numel();
        self.generators.iter_mut().flat_map(|g| g.randn(numel)).collect()
    }
}

/// The first draw is [`ImageRng::first`], every later one [`ImageRng::step_noise`] (A1111's
/// `ImageRNG.next`).
impl super::NoiseSource for ImageRng {
    fn draw(&mut self, numel: usize) -> Vec<f32> {
        let noise = if self.drawn_first { self.step_noise() } else { self.first() };
        debug_assert_eq!(noise.len(), numel, "A1111 noise is drawn for the whole batch");
        noise
    }
}

/// `small` (`[c, sh, sw]`) pasted centred into `full` (`[c, h, w]`), cropped where it is larger,
/// as A1111 places a resized seed's noise.
fn paste_centred(full: &mut [f32], [c, h, w]: [usize; 3], small: &[f32], [_, sh, sw]: [usize; 3]) {
    // Python's floor division: a negative odd difference rounds down.
    let (dx, dy) = ((w as isize - sw as isize).div_euclid(2), (h as isize - sh as isize).div_euclid(2));
    let cw = if dx >= 0 { sw } else { (sw as isize + 2 * dx) as usize };
    let ch = if dy >= 0 { sh } else { (sh as isize + 2 * dy) as usize };
    let (tx, ty) = (dx.max(0) as usize, dy.max(0) as usize);
    let (sx, sy) = ((-dx).max(0) as usize, (-dy).max(0) as usize);
    for k in 0..c {
        for y in 0..ch {
            for x in 0..cw {
                full[(k * h + ty + y) * w + tx + x] = small[(k * sh + sy + y) * sw + sx + x];
            }
        }
    }
}

/// A1111's `slerp(strength, noise, subnoise)` over one image's `[c, h, w]` noise: each `(c, w)`
/// column along `h` is normalised, and the two are spherically interpolated by the angle between
/// them (linearly, with A1111's weights, when they are nearly parallel on average).
fn slerp(val: f32, low: &[f32], high: &[f32], [c, h, w]: [usize; 3]) -> Vec<f32> {
    let at = |k: usize, y: usize, x: usize| (k * h + y) * w + x;
    let norm = |t: &[f32], k: usize, x: usize| (0..h).map(|y| t[at(k, y, x)].powi(2)).sum::<f32>().sqrt();
    let mut dots = vec![0f32; c * w];
    for k in 0..c {
        for x in 0..w {
            let (nl, nh) = (norm(low, k, x), norm(high, k, x));
            dots[k * w + x] = (0..h).map(|y| (low[at(k, y, x)] / nl) * (high[at(k, y, x)] / nh)).sum();
        }
    }
    let mean = dots.iter().sum::<f32>() / dots.len() as f32;
    let mut out = vec![0f32; low.len()];
    if mean > 0.9995 {
        for (o, (l, hi)) in out.iter_mut().zip(low.iter().zip(high)) {
            *o = l * val + hi * (1.0 - val);
        }
        return out;
    }
    for k in 0..c {
        for x in 0..w {
            let omega = dots[k * w + x].acos();
            let so = omega.sin();
            let (a, b) = (((1.0 - val) * omega).sin() / so, (val * omega).sin() / so);
            for y in 0..h {
                let i = at(k, y, x);
                out[i] = a * low[i] + b * high[i];
            }
        }
    }
    out
}
