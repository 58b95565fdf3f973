//! Owns torch-compatible CPU random numbers: a `TorchGenerator` that reproduces
//! `torch.Generator("cpu").manual_seed(seed)` followed by `torch.randn(..., generator=g)`
//! (float32, contiguous) draw for draw, so a seed gives the same latents and the same
//! ancestral-sampler noise as diffusers on a CPU generator.
//!
//! What torch does (pytorch `aten/src/ATen/core/MT19937RNGEngine.h`, `CPUGeneratorImpl.cpp`,
//! `core/DistributionsHelper.h`, `core/TransformationHelper.h`,
//! `native/cpu/DistributionTemplates.h`, `native/cpu/avx_mathfun.h`):
//!
//! * The engine is the reference MT19937 seeded with the **low 32 bits** of the seed.
//! * A float32 tensor with at least 16 elements is first filled with uniforms
//!   `(u32 & 0xFFFFFF) * 2^-24`, one engine draw each, in memory order. Then every full
//!   block of 16 turns into normals by Box–Muller over the pairs (j, j + 8):
//!   `r = sqrt(-2 ln(1 - u[j]))`, `θ = 2π·u[j+8]`, `out[j] = r cos θ`, `out[j+8] = r sin θ`.
//!   When the size is not a multiple of 16, the last 16 positions are refilled with 16 fresh
//!   uniforms and transformed again (so `numel + 16` draws in total).
//! * On x86 that transform runs through `normal_fill_16_AVX2`, whose `log256_ps` and
//!   `sincos256_ps` are Cephes float32 polynomials (not libm), and the shipped binary is
//!   compiled with FMA contraction, so several multiply–add pairs are fused. It is used on
//!   AVX-512 machines too (`normal_stub` has no AVX-512 kernel). [`NormalKernel::Avx2`]
//!   emulates it lane by lane, fusing exactly the pairs GCC fuses; it was checked bit for bit
//!   against real torch output (see `tests/parity_randn.rs`).
//! * Fewer than 16 elements take the double-precision path: each pair of normals costs two
//!   53-bit uniforms (four engine draws), `r = sqrt(-2 log1p(-u2))`, `θ = 2π·u1`; `r cos θ` is
//!   returned and `r sin θ` is **cached in the generator** and handed out by the next
//!   small-tensor draw, even in a later call. Reseeding clears the cache; the ≥ 16 path neither
//!   reads nor clears it.

/// Which float32 Box–Muller kernel to reproduce for tensors of 16 elements or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormalKernel {
    /// torch on x86-64 (AVX2 or AVX-512 CPUs): Cephes polynomials with FMA. The default,
    /// because it is what CPU torch produces on the machines SD users run.
    #[default]
    Avx2,
    /// torch's portable `normal_fill_16` (ARM builds, `ATEN_CPU_CAPABILITY=default`): libm
    /// `logf`/`cosf`/`sinf`. Matches torch only where both use the same libm.
    Scalar,
}

/// `torch.Generator("cpu")` after `manual_seed(seed)`.
#[derive(Clone)]
pub struct TorchGenerator {
    /// The seed as given (torch's `initial_seed()`); only its low 32 bits reach the engine.
    seed: u64,
    engine: Mt19937,
    /// The second value of the last double-precision Box–Muller pair, waiting for the next
    /// small-tensor draw (torch's `next_double_normal_sample`).
    cached_normal: Option<f64>,
    kernel: NormalKernel,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGenerator").field("seed", &self.seed).field("kernel", &self.kernel).finish_non_exhaustive()
    }
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        Self::with_kernel(seed, NormalKernel::default())
    }

    /// Like [`TorchGenerator::new`], reproducing a chosen float32 normal kernel.
    pub fn with_kernel(seed: u64, kernel: NormalKernel) -> Self {
        Self { seed, engine: Mt19937::new(seed as u32), cached_normal: None, kernel }
    }

    /// The seed this generator was created with (torch `initial_seed()`).
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    /// `torch.randn(shape, generator=self, dtype=torch.float32)` for a contiguous tensor of
    /// `numel` elements, in memory (C) order.
    pub fn randn(&mut self, numel: usize) -> Vec<f32> {
        if numel >= 16 {
            self.randn_blocks(numel)
        } else {
            (0..numel).map(|_| self.normal_f64() as f32).collect()
        }
    }

    /// One float32 uniform in [0, 1): 24 random bits (`uniform_real_distribution<float>`).
    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00FF_FFFF) as f32 * (1.0 / 16_777_216.0)
    }

    /// One float64 uniform in [0, 1): 53 bits of `(first << 32) | second`.
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.engine.next_u32());
        let lo = u64::from(self.engine.next_u32());
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `normal_distribution<double>` with torch's one-value cache.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// The float32 path for 16 or more elements (`normal_fill` / `normal_fill_AVX2`).
    fn randn_blocks(&mut self, numel: usize) -> Vec<f32> {
        let mut data: Vec<f32> = (0..numel).map(|_| self.uniform_f32()).collect();
        let kernel = self.kernel;
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block, kernel);
        }
        if !numel.is_multiple_of(16) {
            let tail = &mut data[numel - 16..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            box_muller_16(tail, kernel);
        }
        data
    }
}

/// Box–Muller over one block of 16 uniforms, in place: lanes j and j + 8 form a pair.
fn box_muller_16(block: &mut [f32], kernel: NormalKernel) {
    for j in 0..8 {
        let u1 = 1.0 - block[j]; // [0, 1) -> (0, 1] so the log is finite
        let u2 = block[j + 8];
        let (cos, sin, radius) = match kernel {
            NormalKernel::Avx2 => {
                // `_mm256_set1_ps(2.0f * c10::pi<double>)`: the double 2π rounded to float.
                let theta = (2.0 * std::f64::consts::PI) as f32 * u2;
                let (sin, cos) = cephes_sincos(theta);
                (cos, sin, (-2.0 * cephes_log(u1)).sqrt())
            }
            NormalKernel::Scalar => {
                // `2.0f * c10::pi<double> * u2` is computed in double, then stored as float.
                let theta = (2.0 * std::f64::consts::PI * f64::from(u2)) as f32;
                (theta.cos(), theta.sin(), (-2.0 * u1.ln()).sqrt())
            }
        };
        // `fmadd(n, std = 1, mean = 0)` is exact, so only the product rounds.
        block[j] = radius * cos;
        block[j + 8] = radius * sin;
    }
}

// The polynomial constants keep the digits of `avx_mathfun.h`, where C converts them to float.
/// `log256_ps` for one lane, with the multiply–adds that GCC fuses in torch's AVX2 build
/// written as `mul_add` (every Horner step, `y·z + e·q1` fusing the first product,
/// `y − z·½` and `x + y + e·q2`). Valid for the (0, 1] inputs Box–Muller gives it.
#[allow(clippy::excessive_precision)]
fn cephes_log(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2; // `0.707106781186547524` as float
    const P: [f32; 9] = [
        7.0376836292E-2,
        -1.1514610310E-1,
        1.1676998740E-1,
        -1.2420140846E-1,
        1.4249322787E-1,
        -1.6668057665E-1,
        2.0000714765E-1,
        -2.4999993993E-1,
        3.3333331174E-1,
    ];
    const Q1: f32 = -2.12194440e-4;
    const Q2: f32 = 0.693359375;

    let x = x.max(f32::MIN_POSITIVE); // the kernel cuts off denormals the same way
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    // Keep the mantissa, force the exponent of 0.5: m in [0.5, 1).
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    let below = m < SQRTHF;
    let mut x = m - 1.0;
    if below {
        e -= 1.0;
        x += m;
    }
    let z = x * x;
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(x, *p);
    }
    y *= x;
    y = y.mul_add(z, e * Q1);
    y = (-z).mul_add(0.5, y);
    e.mul_add(Q2, x + y)
}

/// `sincos256_ps` for one lane: returns (sin, cos), with GCC's FMA fusions (the three-part
/// argument reduction, each Horner step, `y·z − z·½` fusing the first product, and the final
/// `y2·x + x`).
#[allow(clippy::excessive_precision)]
fn cephes_sincos(theta: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516; // 4 / π
    const DP1: f32 = -0.78515625;
    const DP2: f32 = -2.4187564849853515625e-4;
    const DP3: f32 = -3.77489497744594108e-8;
    const SIN: [f32; 3] = [-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1];
    const COS: [f32; 3] = [2.443315711809948E-005, -1.388731625493765E-003, 4.166664568298827E-002];

    let sign_in = theta.to_bits() & 0x8000_0000;
    let mut x = theta.abs();
    // Octant j, rounded up to even (`cvttps` truncates).
    let mut j = (x * FOPI) as i32;
    j = (j + 1) & !1;
    let y = j as f32;
    let swap_sin = ((j & 4) as u32) << 29;
    let use_sin_poly = (j & 2) == 0;
    let sign_cos = ((!(j - 2) & 4) as u32) << 29;
    let sign_sin = sign_in ^ swap_sin;

    x = y.mul_add(DP1, x);
    x = y.mul_add(DP2, x);
    x = y.mul_add(DP3, x);

    let z = x * x;
    let mut c = COS[0];
    c = c.mul_add(z, COS[1]);
    c = c.mul_add(z, COS[2]);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;

    let mut s = SIN[0];
    s = s.mul_add(z, SIN[1]);
    s = s.mul_add(z, SIN[2]);
    s *= z;
    s = s.mul_add(x, x);

    let (sin_abs, cos_abs) = if use_sin_poly { (s, c) } else { (c, s) };
    (f32::from_bits(sin_abs.to_bits() ^ sign_sin), f32::from_bits(cos_abs.to_bits() ^ sign_cos))
}

/// The reference 32-bit Mersenne Twister (`init_genrand` seeding), as torch's `mt19937`.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; 624],
    /// Next state word to temper; 624 means "regenerate first".
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mag = if y & 1 == 0 { 0 } else { MATRIX_A };
            self.state[i] = self.state[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_first_outputs() {
        // Standard check values of MT19937 (default seed 5489).
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        assert_eq!(mt.next_u32(), 581_869_302);
        // The 10000th output of std::mt19937 (C++11 [rand.predef]).
        let mut mt = Mt19937::new(5489);
        let tenth_thousand = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(tenth_thousand, Some(4_123_659_995));
    }

    #[test]
    fn only_the_low_32_bits_of_the_seed_matter() {
        let a = TorchGenerator::new(5).randn(40);
        let b = TorchGenerator::new((1u64 << 32) + 5).randn(40);
        assert_eq!(a, b);
    }

    #[test]
    fn small_draws_hand_the_cached_value_to_the_next_call() {
        let mut one_go = TorchGenerator::new(3);
        let all = one_go.randn(4);
        let mut split = TorchGenerator::new(3);
        let mut parts = split.randn(1);
        parts.extend(split.randn(3));
        assert_eq!(all, parts);
    }

    #[test]
    fn cephes_log_and_sincos_are_close_to_libm() {
        for i in 1..=1000 {
            let u = i as f32 / 1000.0;
            assert!((cephes_log(u) - u.ln()).abs() <= 2e-7 * (1.0 + u.ln().abs()), "log {u}");
            let theta = u * std::f32::consts::TAU;
            let (s, c) = cephes_sincos(theta);
            assert!((s - theta.sin()).abs() < 3e-7, "sin {theta}");
            assert!((c - theta.cos()).abs() < 3e-7, "cos {theta}");
        }
    }

    #[test]
    fn large_draws_look_standard_normal() {
        let values = TorchGenerator::new(0).randn(64 * 64 * 4);
        let n = values.len() as f64;
        let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
        let var = values.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn a_tail_redraw_costs_sixteen_extra_uniforms() {
        // 17 elements: 17 + 16 draws, so a following draw starts 33 uniforms in.
        let mut g = TorchGenerator::new(11);
        g.randn(17);
        let after = g.randn(16);
        let mut h = TorchGenerator::new(11);
        for _ in 0..33 {
            h.uniform_f32();
        }
        assert_eq!(after, h.randn(16));
    }
}
