//! Owns A1111's "NV" noise: its Philox4x32-10 generator, which gives on any machine the numbers
//! CUDA's `torch.randn` gives on an NVIDIA GPU (A1111's default noise). Each `randn` call uses
//! the generator's offset as the counter's first word (then moves it on by one), the element
//! index as the third, and the 64-bit seed as the key; the first two output words go through a
//! Box–Muller transform whose arithmetic A1111 does in float64, rounded to float32 at the end.

/// Philox round multipliers.
const M: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
/// Key increments between rounds (Weyl sequence).
const W: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// `(counter, key)` through the 10 rounds of Philox4x32.
fn philox4x32_10(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W[0]), k[1].wrapping_add(W[1])];
        }
        let p0 = u64::from(c[0]) * u64::from(M[0]);
        let p2 = u64::from(c[2]) * u64::from(M[1]);
        c = [(p2 >> 32) as u32 ^ c[1] ^ k[0], p2 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// Uniform in (0, 1) from a 32-bit word, then the Box–Muller sine branch, as A1111 computes them:
/// the scale constants are float32 values, the arithmetic float64.
fn box_muller(x: u32, y: u32) -> f32 {
    let a = 2.328_306_4e-10_f32;
    let b = (2.328_306_4e-10_f64 * 6.283_185_5_f64) as f32;
    let u = f64::from(x) * f64::from(a) + f64::from(a / 2.0);
    let v = f64::from(y) * f64::from(b) + f64::from(b / 2.0);
    ((-2.0 * u.ln()).sqrt() * v.sin()) as f32
}

/// A1111's `rng_philox.Generator`.
#[derive(Debug, Clone)]
pub struct PhiloxGenerator {
    seed: u64,
    offset: u32,
}

impl PhiloxGenerator {
    pub fn new(seed: u64) -> Self {
        Self { seed, offset: 0 }
    }

    /// `numel` normal values in C order; the next call continues from a new offset.
    pub fn randn(&mut self, numel: usize) -> Vec<f32> {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let offset = self.offset;
        self.offset = self.offset.wrapping_add(1);
        (0..numel)
            .map(|i| {
                let out = philox4x32_10([offset, 0, i as u32, 0], key);
                box_muller(out[0], out[1])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_gives_the_vector_a1111_documents() {
        // From the docstring of A1111's modules/rng_philox.py: Generator(0).randn((3, 4)).
        let want: [f64; 12] = [
            -0.92466259,
            -0.42534415,
            -2.6438457,
            0.14518388,
            -0.12086647,
            -0.57972564,
            -0.62285122,
            -0.32838709,
            -1.07454231,
            -0.36314407,
            -1.67105067,
            2.26550497,
        ];
        let got = PhiloxGenerator::new(0).randn(12);
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?}");
        }
    }
}
