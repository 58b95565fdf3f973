//! Owns LoRA files: reading the kohya/A1111 format (`lora_unet_…`, `lora_te_…`, `.alpha`, LoCon
//! convolutions) and the diffusers/PEFT format (`unet.….lora_A.weight`), matching each layer to the
//! graph initializer it changes, and that change: `weight * alpha / rank * up @ down`, in the
//! initializer's layout. Also the name and hash A1111 writes in `Lora hashes`.
//!
//! Untrusted input: read through [`Checkpoint`] (bounded header, no pickles), every layer's shapes
//! checked against the initializer before anything is computed; a file for another architecture
//! or of a kind not supported (LoHa, LoKr, DoRA, full diffs) is refused by name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::{transpose, Checkpoint, CheckpointError, TemplateInitializer, WeightPatch};
use super::file_hash;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error(transparent)]
    File(#[from] CheckpointError),
    #[error("{path} is not a LoRA: {why}")]
    NotALora { path: PathBuf, why: String },
    #[error("{path} is {what}, which Easel does not apply yet; use a plain LoRA (lora_down/lora_up or lora_A/lora_B)")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path} is a LoRA for {arch}, not for SD 1.x")]
    OtherArchitecture { path: PathBuf, arch: String },
    #[error("{path}: layer {layer} does not fit this model ({why}); the LoRA was made for another architecture")]
    Mismatch { path: PathBuf, layer: String, why: String },
    #[error("cannot hash {path}: {message}")]
    Hash { path: PathBuf, message: String },
}

/// The two parts of SD 1.x a LoRA changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Unet,
    TextEncoder,
}

/// One layer: `up [out, rank(,1,1)] @ down [rank, in(, kh, kw)]`, scaled by `alpha / rank`.
struct Layer {
    down: Vec<f32>,
    down_shape: Vec<usize>,
    up: Vec<f32>,
    up_shape: Vec<usize>,
    alpha: Option<f32>,
}

impl Layer {
    fn rank(&self) -> usize {
        self.down_shape[0]
    }

    fn out_features(&self) -> usize {
        self.up_shape[0]
    }

    fn in_elements(&self) -> usize {
        self.down_shape[1..].iter().product()
    }

    /// `scale * up @ down` as an `[out, in·kh·kw]` row-major matrix.
    fn delta(&self, scale: f32) -> Vec<f32> {
        let (out, rank, inner) = (self.out_features(), self.rank(), self.in_elements());
        let scale = scale * self.alpha.map_or(1.0, |a| a / rank as f32);
        let mut delta = vec![0.0f32; out * inner];
        for o in 0..out {
            let row = &mut delta[o * inner..(o + 1) * inner];
            for r in 0..rank {
                let u = self.up[o * rank + r] * scale;
                if u == 0.0 {
                    continue;
                }
                for (d, x) in row.iter_mut().zip(&self.down[r * inner..(r + 1) * inner]) {
                    *d += u * x;
                }
            }
        }
        delta
    }
}

/// A LoRA file, read and checked.
pub struct Lora {
    pub path: PathBuf,
    /// The file name without extension: what `<lora:NAME:w>` and `loras[].name` use.
    pub name: String,
    /// The name A1111 writes in `Lora hashes`: the trainer's `ss_output_name`, else [`Self::name`].
    pub alias: String,
    /// First 12 hex digits of the trainer's `sshs_model_hash`, else of the sha256 of the tensor
    /// bytes (A1111's and sd-scripts' "addnet" hash).
    pub short_hash: String,
    layers: HashMap<(Component, String), Layer>,
}

/// A module path in the one spelling both formats can be compared in: dots as underscores.
fn flat(module: &str) -> String {
    module.replace('.', "_")
}

/// Splits a LoRA key into (component, flat module, part) where part is `down`, `up` or `alpha`.
fn parse_key(key: &str) -> Option<(Component, String, &'static str)> {
    let (component, rest) = if let Some(rest) = key.strip_prefix("lora_unet_") {
        (Component::Unet, rest)
    } else if let Some(rest) = key.strip_prefix("lora_te_") {
        (Component::TextEncoder, rest)
    } else if let Some(rest) = key.strip_prefix("unet.") {
        (Component::Unet, rest)
    } else if let Some(rest) = key.strip_prefix("text_encoder.") {
        (Component::TextEncoder, rest)
    } else {
        return None;
    };
    for (suffix, part) in [
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".alpha", "alpha"),
    ] {
        if let Some(module) = rest.strip_suffix(suffix) {
            return Some((component, flat(module), part));
        }
    }
    None
}

/// Marks of LoRA variants that are not plain low-rank pairs.
const UNSUPPORTED: [(&str, &str); 9] = [
    ("hada_w1_a", "a LoHa"),
    ("lokr_w1", "a LoKr"),
    ("lokr_w1_a", "a LoKr"),
    ("dora_scale", "a DoRA"),
    ("diff", "a full-difference LoRA"),
    ("diff_b", "a full-difference LoRA"),
    ("oft_blocks", "an OFT"),
    ("oft_diag", "an OFT"),
    ("on_input", "an IA3"),
];

/// The kind of layer file a key belongs to when it is one Easel refuses, matched on the key's last
/// dotted part (`lora_unet_x.hada_w1_a`), so a full model's `diffusion_model` key never matches.
fn unsupported_kind(key: &str) -> Option<&'static str> {
    let last = key.rsplit('.').next().unwrap_or(key);
    UNSUPPORTED.iter().find(|(part, _)| last == *part).map(|(_, what)| *what)
}

impl Lora {
    /// Reads and checks `path` (see the module doc).
    pub fn open(path: &Path) -> Result<Self, LoraError> {
        let file = Checkpoint::open(path)?;
        let path = path.to_path_buf();
        let keys: Vec<&str> = file.keys().collect();
        if let Some(what) = keys.iter().find_map(|k| unsupported_kind(k)) {
            return Err(LoraError::Unsupported { path, what: what.to_string() });
        }
        if keys.iter().any(|k| k.starts_with("lora_te1_") || k.starts_with("lora_te2_")) {
            return Err(LoraError::OtherArchitecture { path, arch: "SDXL (two text encoders: lora_te1_/lora_te2_)".into() });
        }
        if keys.iter().any(|k| k.starts_with("lora_transformer_") || k.starts_with("transformer.")) {
            return Err(LoraError::OtherArchitecture { path, arch: "a transformer model (SD3/Flux)".into() });
        }
        let mut parts: HashMap<(Component, String), LayerKeys> = HashMap::new();
        let mut unknown = Vec::new();
        for key in &keys {
            match parse_key(key) {
                Some((component, module, part)) => {
                    let entry = parts.entry((component, module)).or_default();
                    let slot = match part {
                        "down" => &mut entry.0,
                        "up" => &mut entry.1,
                        _ => &mut entry.2,
                    };
                    *slot = Some(key.to_string());
                }
                None => unknown.push(*key),
            }
        }
        if parts.is_empty() {
            let kind = super::checkpoint::classify(&file.shapes());
            return Err(LoraError::NotALora { path, why: format!("it has no LoRA layers ({kind})") });
        }
        let mut layers = HashMap::with_capacity(parts.len());
        for ((component, module), (down, up, alpha)) in parts {
            let (Some(down), Some(up)) = (down, up) else {
                return Err(LoraError::NotALora { path, why: format!("layer {module} lacks its down or up matrix") });
            };
            let (down_shape, up_shape) = (file.shape(&down).unwrap_or(&[]).to_vec(), file.shape(&up).unwrap_or(&[]).to_vec());
            let rank = down_shape.first().copied().unwrap_or(0);
            let fits = rank > 0
                && down_shape.len() >= 2
                && up_shape.len() >= 2
                && up_shape[1] == rank
                && up_shape[2..].iter().all(|&d| d == 1)
                && (down_shape.len() == up_shape.len());
            if !fits {
                return Err(LoraError::NotALora { path, why: format!("layer {module} has shapes down {down_shape:?}, up {up_shape:?}") });
            }
            let alpha = match alpha {
                Some(key) => file.read(&key)?.first().copied(),
                None => None,
            };
            layers.insert((component, module), Layer { down: file.read(&down)?, down_shape, up: file.read(&up)?, up_shape, alpha });
        }
        if !unknown.is_empty() {
            tracing::warn!(lora = %path.display(), ignored = unknown.len(), first = unknown[0], "LoRA keys Easel does not know were ignored");
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let alias = file.metadata.get("ss_output_name").filter(|s| !s.trim().is_empty()).cloned().unwrap_or_else(|| name.clone());
        let hash = match file.metadata.get("sshs_model_hash").filter(|h| h.len() >= 12 && h.chars().all(|c| c.is_ascii_hexdigit())) {
            Some(h) => h.to_ascii_lowercase(),
            None => file_hash::cached_sha256_from(&path, file.data_start)
                .map_err(|e| LoraError::Hash { path: path.clone(), message: e.to_string() })?,
        };
        Ok(Self { path, name, alias, short_hash: hash[..12].to_string(), layers })
    }

    /// How many layers the file has.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }
}

/// The component and flat module names a template initializer answers to (its diffusers and its
/// LDM spelling), or `None` for initializers no LoRA changes (biases, norms, the VAE).
fn module_names(init: &TemplateInitializer) -> Option<(Component, [String; 2])> {
    let diffusers = init.diffusers.strip_suffix(".weight")?;
    let ldm = init.ldm.strip_suffix(".weight")?;
    if let Some(module) = diffusers.strip_prefix("unet.") {
        let ldm = ldm.strip_prefix("model.diffusion_model.").unwrap_or(ldm);
        Some((Component::Unet, [flat(module), flat(ldm)]))
    } else {
        diffusers.strip_prefix("text_encoder.").map(|module| (Component::TextEncoder, [flat(module), flat(module)]))
    }
}

/// The down, up and alpha key of one LoRA layer, as found in the file.
type LayerKeys = (Option<String>, Option<String>, Option<String>);

/// The 12-digit hash `Lora hashes` gives the LoRA at `path`, if computed before (see
/// [`file_hash`]); reads only the file's 8-byte header length.
pub fn known_short_hash(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut length = [0u8; 8];
    std::fs::File::open(path).ok()?.read_exact(&mut length).ok()?;
    let data_start = u64::from_le_bytes(length).checked_add(8)?;
    file_hash::known_sha256_from(path, data_start).map(|h| h[..12].to_string())
}

/// A LoRA set's change to the weights of one component.
pub struct LoraPatch<'a> {
    set: &'a LoraSet,
    component: Component,
}

impl WeightPatch for LoraPatch<'_> {
    fn changes(&self, init: &TemplateInitializer) -> bool {
        self.set.changes(self.component, init)
    }

    fn delta(&self, init: &TemplateInitializer) -> Option<Vec<f32>> {
        self.set.delta(self.component, init)
    }
}

/// LoRAs chosen for one model, each with its UNet and text-encoder weight.
#[derive(Clone, Default)]
pub struct LoraSet {
    pub entries: Vec<(Arc<Lora>, f32, f32)>,
}

impl LoraSet {
    /// Entries whose weight for `component` is not zero.
    fn active(&self, component: Component) -> impl Iterator<Item = (&Lora, f32)> {
        self.entries.iter().filter_map(move |(lora, unet, text)| {
            let w = if component == Component::Unet { *unet } else { *text };
            (w != 0.0).then_some((lora.as_ref(), w))
        })
    }

    /// Whether any LoRA changes `component`.
    pub fn touches(&self, component: Component) -> bool {
        self.active(component).next().is_some()
    }

    /// Checks every layer of every LoRA against the initializers of the graphs it changes: each
    /// layer must find its initializer, with a fitting shape. Run before any session is built.
    pub fn check(&self, graphs: &[(Component, &[TemplateInitializer])]) -> Result<(), LoraError> {
        for (lora, _, _) in &self.entries {
            let mut matched = 0;
            for ((component, module), layer) in &lora.layers {
                let Some((_, inits)) = graphs.iter().find(|(c, _)| c == component) else { continue };
                let init = inits.iter().find(|i| module_names(i).is_some_and(|(c, names)| c == *component && names.contains(module)));
                let Some(init) = init else { continue };
                matched += 1;
                let elements: usize = init.diffusers_shape.iter().product();
                if init.diffusers_shape.first() != Some(&layer.out_features()) || layer.out_features() * layer.in_elements() != elements {
                    return Err(LoraError::Mismatch {
                        path: lora.path.clone(),
                        layer: module.clone(),
                        why: format!("{} x {} against a {:?} weight", layer.out_features(), layer.in_elements(), init.diffusers_shape),
                    });
                }
            }
            let relevant = lora.layers.keys().filter(|(c, _)| graphs.iter().any(|(g, _)| g == c)).count();
            if relevant > 0 && matched == 0 {
                let first = lora.layers.keys().next().map(|(_, m)| m.clone()).unwrap_or_default();
                return Err(LoraError::Mismatch {
                    path: lora.path.clone(),
                    layer: first,
                    why: "no layer of this model has that name".into(),
                });
            }
            if matched < relevant {
                tracing::warn!(lora = %lora.name, matched, relevant, "some LoRA layers match no layer of this model and were skipped");
            }
        }
        Ok(())
    }

    /// The layers of the active LoRAs that change `init` (as `component`), with their weights.
    fn layers_for<'a>(&'a self, component: Component, init: &'a TemplateInitializer) -> impl Iterator<Item = (&'a Layer, f32)> + 'a {
        let names = module_names(init).filter(|(c, _)| *c == component).map(|(_, names)| names);
        let elements: usize = init.diffusers_shape.iter().product();
        self.active(component).filter_map(move |(lora, weight)| {
            let names = names.as_ref()?;
            let layer = names.iter().find_map(|n| lora.layers.get(&(component, n.clone())))?;
            (layer.out_features() * layer.in_elements() == elements).then_some((layer, weight))
        })
    }

    /// Whether the set changes `init` (as `component`), without computing the change.
    pub fn changes(&self, component: Component, init: &TemplateInitializer) -> bool {
        self.layers_for(component, init).next().is_some()
    }

    /// The change the set makes to `init` in the graph's layout (transposed like the initializer),
    /// or `None` when no LoRA touches it.
    pub fn delta(&self, component: Component, init: &TemplateInitializer) -> Option<Vec<f32>> {
        let mut total: Option<Vec<f32>> = None;
        for (layer, weight) in self.layers_for(component, init) {
            let delta = layer.delta(weight);
            match &mut total {
                Some(sum) => sum.iter_mut().zip(&delta).for_each(|(s, d)| *s += d),
                None => total = Some(delta),
            }
        }
        let total = total?;
        Some(if init.transpose { transpose(&total, init.diffusers_shape[0], init.diffusers_shape[1]) } else { total })
    }

    /// The set as a change to the weights of `component` (see [`WeightPatch`]).
    pub fn patch(&self, component: Component) -> LoraPatch<'_> {
        LoraPatch { set: self, component }
    }

    /// `Lora hashes` as A1111 writes it: `alias: hash` for each LoRA used, `:` and `,` removed
    /// from the alias, joined by `, `; `None` when the set is empty.
    pub fn infotext_hashes(&self) -> Option<String> {
        let parts: Vec<String> =
            self.entries.iter().map(|(lora, _, _)| format!("{}: {}", lora.alias.replace([':', ','], ""), lora.short_hash)).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Identity of the set (paths and weights), to know when sessions must be rebuilt.
    pub fn identity(&self) -> Vec<(PathBuf, u32, u32)> {
        self.entries.iter().map(|(l, u, t)| (l.path.clone(), u.to_bits(), t.to_bits())).collect()
    }
}

/// LoRA files already read, by path (a file changed on disk is read again).
#[derive(Default)]
pub struct LoraCache {
    loaded: HashMap<PathBuf, (Option<std::time::SystemTime>, Arc<Lora>)>,
}

impl LoraCache {
    /// The LoRA at `path`, read once.
    pub fn get(&mut self, path: &Path) -> Result<Arc<Lora>, LoraError> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if let Some((stamp, lora)) = self.loaded.get(path) {
            if *stamp == modified {
                return Ok(lora.clone());
            }
        }
        let lora = Arc::new(Lora::open(path)?);
        if self.loaded.len() >= 32 {
            self.loaded.clear();
        }
        self.loaded.insert(path.to_path_buf(), (modified, lora.clone()));
        Ok(lora)
    }

    /// A set from `(file, unet weight, text-encoder weight)` entries.
    pub fn set(&mut self, entries: &[(PathBuf, f32, f32)]) -> Result<LoraSet, LoraError> {
        let entries = entries.iter().map(|(path, u, t)| Ok((self.get(path)?, *u, *t))).collect::<Result<_, LoraError>>()?;
        Ok(LoraSet { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_both_formats_meet_in_one_spelling() {
        assert_eq!(
            parse_key("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"),
            Some((Component::Unet, "down_blocks_0_attentions_0_proj_in".into(), "down"))
        );
        assert_eq!(
            parse_key("unet.down_blocks.0.attentions.0.proj_in.lora_B.weight"),
            Some((Component::Unet, "down_blocks_0_attentions_0_proj_in".into(), "up"))
        );
        assert_eq!(
            parse_key("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"),
            Some((Component::TextEncoder, "text_model_encoder_layers_0_mlp_fc1".into(), "alpha"))
        );
        assert_eq!(parse_key("something_else.weight"), None);
    }

    #[test]
    fn a_layer_changes_its_weight_by_scaled_up_times_down() {
        // rank 2, out 2, in 3; alpha 1 -> scale 0.5.
        let layer = Layer {
            down: vec![1.0, 0.0, 2.0, 0.0, 1.0, 0.0],
            down_shape: vec![2, 3],
            up: vec![1.0, 1.0, 0.0, 2.0],
            up_shape: vec![2, 2],
            alpha: Some(1.0),
        };
        // up @ down = [[1,1,2],[0,2,0]]; x 0.5 alpha/rank x 2 weight.
        assert_eq!(layer.delta(2.0), vec![1.0, 1.0, 2.0, 0.0, 2.0, 0.0]);
    }
}
