//! Owns torchsde's `BrownianTree` as A1111 and ComfyUI build it for the SDE samplers: a Brownian
//! motion on `[t0, t1]` (here σ_min to σ_max) resolved on demand by a dyadic tree whose every
//! node draws its Brownian-bridge noise from its own seed (numpy's `SeedSequence` over the
//! entropy and the node's spawn key), so an increment `W(tb) − W(ta)` depends only on the entropy,
//! never on the order of queries. Times are rounded to 6 decimals (torchsde's `tol = 1e-6`).
//! Arithmetic follows torchsde: times in float64, the tensors float32.

use super::seed_sequence::SeedSequence;

const POOL_SIZE: usize = 24;

/// How a node's noise is drawn from its seed (torchsde's `_randn`; A1111 swaps in its
/// `randn_local`, which for its NV source is its Philox generator).
pub type SeededRandn = fn(seed: u64, numel: usize) -> Vec<f32>;

/// torchsde's own `_randn`: a fresh torch CPU generator seeded with the node's seed.
pub fn torch_randn(seed: u64, numel: usize) -> Vec<f32> {
    super::super::torch_rng::TorchGenerator::new(seed).randn(numel)
}

/// A1111's `randn_local` with its NV source: its Philox generator seeded with the node's seed.
pub fn philox_randn(seed: u64, numel: usize) -> Vec<f32> {
    super::philox::PhiloxGenerator::new(seed).randn(numel)
}

struct Node {
    start: f64,
    end: f64,
    parent: Option<usize>,
    is_left: bool,
    midway: Option<f64>,
    spawn_key: u128,
    depth: u128,
    w_seed: u64,
    children: (usize, usize),
}

/// One `torchsde.BrownianTree(t0, zeros(numel), t1, entropy)`.
pub struct BrownianTree {
    entropy: u128,
    numel: usize,
    randn: SeededRandn,
    nodes: Vec<Node>,
    top_w: Vec<f32>,
    last: usize,
    /// Increments already computed, by node (torchsde keeps an LRU cache; values do not
    /// depend on it).
    cache: std::collections::HashMap<usize, Vec<f32>>,
}

/// Python's `round(x, 6)`: correctly rounded to 6 decimals.
fn round6(x: f64) -> f64 {
    format!("{x:.6}").parse().unwrap_or(x)
}

impl BrownianTree {
    pub fn new(t0: f64, t1: f64, numel: usize, entropy: u128, randn: SeededRandn) -> Self {
        let state = SeedSequence::new(entropy, &[], POOL_SIZE).generate_state(3);
        let top_w: Vec<f32> = randn(u64::from(state[0]), numel).into_iter().map(|v| v * ((t1 - t0).sqrt() as f32)).collect();
        let top = Node {
            start: round6(t0),
            end: round6(t1),
            parent: None,
            is_left: false,
            midway: None,
            spawn_key: 0,
            depth: 0,
            w_seed: 0,
            children: (0, 0),
        };
        Self { entropy, numel, randn, nodes: vec![top], top_w, last: 0, cache: Default::default() }
    }

    /// `W(tb) − W(ta)` for `ta ≤ tb` (clamped to the tree's interval, as torchsde does).
    pub fn increment(&mut self, ta: f64, tb: f64) -> Vec<f32> {
        let (start, end) = (self.nodes[0].start, self.nodes[0].end);
        let (ta, tb) = (ta.clamp(start, end), tb.clamp(start, end));
        if ta >= tb {
            return vec![0.0; self.numel];
        }
        let mut found = Vec::new();
        self.locate(self.last, round6(ta), round6(tb), &mut found);
        self.last = *found.last().expect("an interval covers the query");
        let mut w = self.w(found[0]);
        for &node in &found[1..] {
            let more = self.w(node);
            w.iter_mut().zip(more).for_each(|(a, b)| *a += b);
        }
        w
    }

    /// torchsde's `_loc_inner`: the existing or newly split intervals that tile `[ta, tb]`.
    fn locate(&mut self, node: usize, ta: f64, tb: f64, out: &mut Vec<usize>) {
        let (start, end) = (self.nodes[node].start, self.nodes[node].end);
        if ta < start || tb > end {
            let parent = self.nodes[node].parent.expect("the top interval covers every query");
            return self.locate(parent, ta, tb, out);
        }
        if ta == start && tb == end {
            out.push(node);
            return;
        }
        let Some(midway) = self.nodes[node].midway else {
            if ta == start {
                self.split(node, tb);
                let left = self.nodes[node].children.0;
                return self.locate(left, ta, tb, out);
            }
            self.split(node, ta);
            let right = self.nodes[node].children.1;
            return self.locate(right, ta, tb, out);
        };
        let (left, right) = self.nodes[node].children;
        if tb <= midway {
            return self.locate(left, ta, tb, out);
        }
        if ta >= midway {
            return self.locate(right, ta, tb, out);
        }
        self.locate(left, ta, midway, out);
        self.locate(right, midway, tb, out);
    }

    /// torchsde's `_split` with `halfway_tree`: split at the (rounded) middle, then on down the
    /// side holding `midway` until a split falls on it.
    fn split(&mut self, node: usize, midway: f64) {
        let (start, end) = (self.nodes[node].start, self.nodes[node].end);
        self.split_exact(node, 0.5 * (end + start));
        let here = self.nodes[node].midway.expect("just split");
        let (left, right) = self.nodes[node].children;
        if midway > here {
            self.split(right, midway);
        } else if midway < here {
            self.split(left, midway);
        }
    }

    fn split_exact(&mut self, node: usize, midway: f64) {
        let (spawn_key, depth) = match self.nodes[node].parent {
            None => (0, 0),
            Some(p) => (2 * self.nodes[p].spawn_key + u128::from(!self.nodes[node].is_left), self.nodes[p].depth + 1),
        };
        let seeds = SeedSequence::new(self.entropy, &[spawn_key, depth], POOL_SIZE).generate_state(4);
        let (start, end) = (self.nodes[node].start, self.nodes[node].end);
        let first = self.nodes.len();
        for (is_left, s, e) in [(true, start, midway), (false, midway, end)] {
            self.nodes.push(Node {
                start: round6(s),
                end: round6(e),
                parent: Some(node),
                is_left,
                midway: None,
                spawn_key: 0,
                depth: 0,
                w_seed: 0,
                children: (0, 0),
            });
        }
        let n = &mut self.nodes[node];
        n.midway = Some(round6(midway));
        n.spawn_key = spawn_key;
        n.depth = depth;
        n.w_seed = u64::from(seeds[0]);
        n.children = (first, first + 1);
    }

    /// The increment over a node's interval: the top's drawn directly, every other one from its
    /// parent's by a Brownian bridge at the parent's midpoint.
    fn w(&mut self, node: usize) -> Vec<f32> {
        if let Some(w) = self.cache.get(&node) {
            return w.clone();
        }
        let Some(parent) = self.nodes[node].parent else { return self.top_w.clone() };
        let w = self.w(parent);
        let p = &self.nodes[parent];
        let midway = p.midway.expect("a parent has split");
        let h_reciprocal = 1.0 / (p.end - p.start);
        let (left_diff, right_diff) = (midway - p.start, p.end - midway);
        let deviation = (left_diff * right_diff * h_reciprocal).sqrt() as f32;
        let noise = (self.randn)(p.w_seed, self.numel);
        let (left_diff, h_reciprocal) = (left_diff as f32, h_reciprocal as f32);
        let is_left = self.nodes[node].is_left;
        let out: Vec<f32> = w
            .iter()
            .zip(noise)
            .map(|(&w, n)| {
                let left = left_diff * w * h_reciprocal + deviation * n;
                if is_left {
                    left
                } else {
                    w - left
                }
            })
            .collect();
        // Bounded in bytes (64 MB a tree), not entries: a node's increment is a latent's size.
        if self.cache.len() >= (16 << 20) / self.numel.max(1) {
            self.cache.clear();
        }
        self.cache.insert(node, out.clone());
        out
    }
}

/// k-diffusion's `BrownianTreeNoiseSampler` over one tree per entropy value (A1111: one per image,
/// each over its image's elements; ComfyUI: one for the whole batch): the noise for a step from
/// σ to σ_next is the increment between them over `√|σ_next − σ|`.
pub struct BrownianNoise {
    trees: Vec<BrownianTree>,
}

impl BrownianNoise {
    /// Trees on `[σ_min, σ_max]` (float32 values, as the sigmas tensor holds them).
    pub fn new(sigma_min: f32, sigma_max: f32, numel: usize, entropies: &[u128], randn: SeededRandn) -> Self {
        let per_tree = numel / entropies.len().max(1);
        let trees = entropies.iter().map(|&e| BrownianTree::new(f64::from(sigma_min), f64::from(sigma_max), per_tree, e, randn)).collect();
        Self { trees }
    }

    /// The normalised increment from `sigma` to `next` for the whole batch.
    pub fn step(&mut self, sigma: f32, next: f32) -> Vec<f32> {
        let (lo, hi, sign) = if next < sigma { (next, sigma, -1.0f32) } else { (sigma, next, 1.0) };
        let scale = (next - sigma).abs().sqrt();
        self.trees.iter_mut().flat_map(|tree| tree.increment(f64::from(lo), f64::from(hi))).map(|w| w * sign / scale).collect()
    }

    /// The raw increment `W(next) − W(sigma)` (for tests).
    pub fn increment(&mut self, sigma: f32, next: f32) -> Vec<f32> {
        let (lo, hi, sign) = if next < sigma { (next, sigma, -1.0f32) } else { (sigma, next, 1.0) };
        self.trees.iter_mut().flat_map(|tree| tree.increment(f64::from(lo), f64::from(hi))).map(|w| w * sign).collect()
    }
}
