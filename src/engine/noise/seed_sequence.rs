//! Owns numpy's `SeedSequence` (the entropy pool behind `numpy.random`'s spawnable seeds), which
//! torchsde's Brownian tree uses to give every node of its tree its own seeds: the entropy and
//! spawn key as 32-bit words, hashed and mixed into the pool, then `generate_state`.

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

/// A non-negative integer as numpy coerces it: its 32-bit words, least significant first
/// (`[0]` for 0).
fn words(mut n: u128) -> Vec<u32> {
    if n == 0 {
        return vec![0];
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(n as u32);
        n >>= 32;
    }
    out
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

/// `numpy.random.SeedSequence(entropy, spawn_key, pool_size)`.
pub struct SeedSequence {
    pool: Vec<u32>,
}

impl SeedSequence {
    pub fn new(entropy: u128, spawn_key: &[u128], pool_size: usize) -> Self {
        let mut assembled = words(entropy);
        let spawn: Vec<u32> = spawn_key.iter().flat_map(|&k| words(k)).collect();
        if !spawn.is_empty() && assembled.len() < pool_size {
            assembled.resize(pool_size, 0);
        }
        assembled.extend(spawn);
        let mut pool = vec![0u32; pool_size];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(assembled.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        for src in 0..pool_size {
            for dst in 0..pool_size {
                if src != dst {
                    let h = hashmix(pool[src], &mut hash_const);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        for &word in assembled.iter().skip(pool_size) {
            for slot in pool.iter_mut() {
                let h = hashmix(word, &mut hash_const);
                *slot = mix(*slot, h);
            }
        }
        Self { pool }
    }

    /// `generate_state(n)` as 32-bit words.
    pub fn generate_state(&self, n: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        (0..n)
            .map(|i| {
                let mut value = self.pool[i % self.pool.len()] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                value = value.wrapping_mul(hash_const);
                value ^ (value >> XSHIFT)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_numpy() {
        // numpy 2.4: SeedSequence(entropy=…, spawn_key=…, pool_size=24).generate_state(n).
        assert_eq!(SeedSequence::new(42, &[], 24).generate_state(3), [387750627, 2536650517, 4078839648]);
        assert_eq!(SeedSequence::new(42, &[0, 0], 24).generate_state(4), [2102017995, 2891809698, 2144110403, 379559146]);
        assert_eq!(SeedSequence::new(43, &[5, 3], 24).generate_state(4), [2493149172, 1907691107, 907383733, 4168281853]);
        assert_eq!(SeedSequence::new((1 << 40) + 7, &[123456, 17], 24).generate_state(4), [1651718344, 2863569004, 3985070257, 3427223922]);
    }
}
