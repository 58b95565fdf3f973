//! Owns an API-format ComfyUI graph (`{"<id>": {"class_type", "inputs"}}`, links as
//! `["<id>", slot]`): its validation as ComfyUI's `validate_prompt` reports it (`node_errors`
//! with `required_input_missing`, `bad_linked_input`, `return_type_mismatch`,
//! `invalid_input_type`, `value_smaller_than_min`, `value_bigger_than_max`, `value_not_in_list`),
//! and the translation of each output node's chain into one Easel request run in the comfyui
//! mode: loaders, LoRAs and CLIP skip become the model, `loras`, `vae` and `clip_skip`; the
//! KSampler's settings, its latent (empty, or `VAEEncode` of an uploaded picture for
//! image-to-image) and its prompts become the rest. A chain Easel cannot run is a node error that
//! names the node.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::nodes::{sampler_named, scheduler_named, InputKind, NodeSpec};
use crate::api::conditioning::{Area, Conditioning, ConditioningEntry, TextExpr, MAX_CONDITIONING_ENTRIES, MAX_CONDITIONING_TEXTS};
use crate::api::stages::MAX_STAGES;
use crate::api::{GenerateRequest, Hires, HiresRequest, LoraRef, SamplingRangeRequest, StageRequest, Upscaler};

/// Most nodes in a graph (ComfyUI's large shared workflows have a few hundred).
pub const MAX_NODES: usize = 5_000;
/// Longest chain of links from a node back to a loader: validation and translation walk chains
/// recursively, so a deeper graph is refused up front instead of overflowing the stack.
pub const MAX_CHAIN: usize = 256;

/// One node of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub class: String,
    pub inputs: Map<String, Value>,
}

/// One problem with one input (ComfyUI's error record).
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub kind: &'static str,
    pub message: String,
    pub details: String,
    pub input: Option<String>,
}

impl InputError {
    fn new(kind: &'static str, message: &str, details: String, input: Option<&str>) -> Self {
        Self { kind, message: message.to_string(), details, input: input.map(str::to_string) }
    }

    pub fn to_json(&self) -> Value {
        let mut extra = Map::new();
        if let Some(name) = &self.input {
            extra.insert("input_name".into(), json!(name));
        }
        json!({"type": self.kind, "message": self.message, "details": self.details, "extra_info": extra})
    }
}

/// Why a graph was refused as a whole (`{"error": ..., "node_errors": ...}`, HTTP 400).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: Value,
    pub node_errors: Value,
}

/// What one output node runs: its Easel request and the nodes of its chain, in run order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub node: String,
    pub request: GenerateRequest,
    /// What the door derives from the uploads the request names before it submits it.
    pub derived: Derived,
    pub chain: Vec<String>,
    /// The KSampler's id (progress is reported on it).
    pub sampler_node: String,
}

/// A validated graph: the outputs Easel runs, and the errors of those it skips.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub outputs: Vec<Output>,
    pub node_errors: Value,
}

/// Reads the nodes of a `/prompt` body's `prompt`.
pub fn parse(prompt: &Value) -> Result<BTreeMap<String, Node>, Refusal> {
    let Some(map) = prompt.as_object() else {
        return Err(refusal("invalid_prompt", "Invalid prompt", "the prompt is not an object of nodes".into(), json!({})));
    };
    let mut nodes = BTreeMap::new();
    for (id, node) in map {
        let class = node.get("class_type").and_then(Value::as_str);
        let Some(class) = class else {
            return Err(missing_class(id, "", "Node has no class_type"));
        };
        let inputs = node.get("inputs").and_then(Value::as_object).cloned().unwrap_or_default();
        nodes.insert(id.clone(), Node { class: class.to_string(), inputs });
    }
    if nodes.len() > MAX_NODES {
        let details = format!("the prompt has {} nodes; at most {MAX_NODES}", nodes.len());
        return Err(refusal("invalid_prompt", "Invalid prompt", details, json!({})));
    }
    if let Some(deepest) = longest_chain(&nodes).filter(|d| *d > MAX_CHAIN) {
        let details = format!("a chain of {deepest} linked nodes; at most {MAX_CHAIN}");
        return Err(refusal("invalid_prompt", "Invalid prompt", details, json!({})));
    }
    Ok(nodes)
}

/// The most nodes on one path of links (a cycle counts its nodes once), found without recursion;
/// `None` for an empty graph.
fn longest_chain(nodes: &BTreeMap<String, Node>) -> Option<usize> {
    // 0: not seen, 1: on the stack, 2: done (depth known).
    let mut state: HashMap<&str, (u8, usize)> = HashMap::with_capacity(nodes.len());
    let mut deepest = None;
    for start in nodes.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        let mut stack: Vec<(&str, bool)> = vec![(start.as_str(), false)];
        while let Some((id, expanded)) = stack.pop() {
            let Some(node) = nodes.get(id) else { continue };
            let links =
                || node.inputs.values().filter_map(as_link).filter_map(|(from, _)| nodes.get_key_value(&from).map(|(k, _)| k.as_str()));
            if expanded {
                let below = links().filter_map(|from| state.get(from).filter(|s| s.0 == 2).map(|s| s.1)).max().unwrap_or(0);
                state.insert(id, (2, below + 1));
                deepest = deepest.max(Some(below + 1));
                continue;
            }
            if state.contains_key(id) {
                continue;
            }
            state.insert(id, (1, 0));
            stack.push((id, true));
            for from in links() {
                if !state.contains_key(from) {
                    stack.push((from, false));
                }
            }
        }
    }
    deepest
}

fn refusal(kind: &str, message: &str, details: String, node_errors: Value) -> Refusal {
    Refusal { error: json!({"type": kind, "message": message, "details": details, "extra_info": {}}), node_errors }
}

fn missing_class(id: &str, class: &str, message: &str) -> Refusal {
    Refusal {
        error: json!({
            "type": "missing_node_type",
            "message": message,
            "details": format!("Node ID '#{id}'"),
            "extra_info": {"node_id": id, "class_type": class, "node_title": class},
        }),
        node_errors: json!({}),
    }
}

/// A link input: `["<id>", slot]` (ComfyUI also accepts a numeric id).
fn as_link(value: &Value) -> Option<(String, usize)> {
    let pair = value.as_array().filter(|a| a.len() == 2)?;
    let id = match &pair[0] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((id, usize::try_from(pair[1].as_u64()?).ok()?))
}

/// A literal as an integer (ComfyUI coerces `"20"` and `20.0`).
fn as_int(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => {
            n.as_u64().map(i128::from).or(n.as_i64().map(i128::from)).or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i128))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// ComfyUI's way of listing allowed values in an error: the list, or its length when long.
fn shown_list(values: &[String]) -> String {
    if values.len() > 20 {
        format!("(list of length {})", values.len())
    } else {
        format!("{values:?}")
    }
}

/// Validates graphs against `specs`.
pub struct Validator<'a> {
    nodes: &'a BTreeMap<String, Node>,
    specs: &'a [NodeSpec],
    /// Per node: `None` while being checked (a cycle), its errors once checked.
    checked: HashMap<String, Option<Vec<InputError>>>,
}

impl<'a> Validator<'a> {
    pub fn new(nodes: &'a BTreeMap<String, Node>, specs: &'a [NodeSpec]) -> Self {
        Self { nodes, specs, checked: HashMap::new() }
    }

    fn spec(&self, class: &str) -> Option<&'a NodeSpec> {
        self.specs.iter().find(|s| s.class == class)
    }

    /// Whether `id` and everything it depends on are valid; every invalid node's errors are kept.
    fn check(&mut self, id: &str) -> bool {
        match self.checked.get(id) {
            Some(Some(errors)) => return errors.is_empty() && self.dependencies_ok(id),
            Some(None) => return false,
            None => {}
        }
        self.checked.insert(id.to_string(), None);
        let node = &self.nodes[id];
        let spec = self.spec(&node.class).expect("classes are checked first");
        let mut errors = Vec::new();
        let mut deps_ok = true;
        for input in &spec.required {
            let name = input.name;
            let Some(value) = node.inputs.get(name) else {
                errors.push(InputError::new("required_input_missing", "Required input is missing", name.to_string(), Some(name)));
                continue;
            };
            match &input.kind {
                InputKind::Link(kind) => {
                    let Some((from, slot)) = as_link(value) else {
                        errors.push(InputError::new(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name.to_string(),
                            Some(name),
                        ));
                        continue;
                    };
                    let Some(source) = self.nodes.get(&from) else {
                        errors.push(InputError::new(
                            "bad_linked_input",
                            "Bad linked input: no such node",
                            format!("{name}: node {from}"),
                            Some(name),
                        ));
                        continue;
                    };
                    let produced = self.spec(&source.class).and_then(|s| s.outputs.get(slot)).map(|(t, _)| *t);
                    if produced != Some(kind) {
                        errors.push(InputError::new(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            format!("{name}, received_type({}) mismatch input_type({kind})", produced.unwrap_or("nothing")),
                            Some(name),
                        ));
                        continue;
                    }
                    if !self.check(&from) {
                        deps_ok = false;
                    }
                }
                InputKind::Int { min, max, .. } => match as_int(value) {
                    None => errors.push(InputError::new(
                        "invalid_input_type",
                        "Failed to convert an input value to a INT value",
                        format!("{name}, {value}"),
                        Some(name),
                    )),
                    Some(v) if v < i128::from(*min) => errors.push(InputError::new(
                        "value_smaller_than_min",
                        &format!("Value {v} smaller than min of {min}"),
                        name.to_string(),
                        Some(name),
                    )),
                    Some(v) if v > i128::from(*max) => errors.push(InputError::new(
                        "value_bigger_than_max",
                        &format!("Value {v} bigger than max of {max}"),
                        name.to_string(),
                        Some(name),
                    )),
                    Some(_) => {}
                },
                InputKind::Float { min, max, .. } => match as_float(value) {
                    None => errors.push(InputError::new(
                        "invalid_input_type",
                        "Failed to convert an input value to a FLOAT value",
                        format!("{name}, {value}"),
                        Some(name),
                    )),
                    Some(v) if v < *min => errors.push(InputError::new(
                        "value_smaller_than_min",
                        &format!("Value {v} smaller than min of {min}"),
                        name.to_string(),
                        Some(name),
                    )),
                    Some(v) if v > *max => errors.push(InputError::new(
                        "value_bigger_than_max",
                        &format!("Value {v} bigger than max of {max}"),
                        name.to_string(),
                        Some(name),
                    )),
                    Some(_) => {}
                },
                InputKind::Text { .. } | InputKind::Upload => {
                    if as_text(value).is_none() {
                        errors.push(InputError::new(
                            "invalid_input_type",
                            "Failed to convert an input value to a STRING value",
                            format!("{name}, {value}"),
                            Some(name),
                        ));
                    }
                }
                InputKind::Choice(values) => {
                    let given = as_text(value).unwrap_or_else(|| value.to_string());
                    if !values.contains(&given) {
                        errors.push(InputError::new(
                            "value_not_in_list",
                            "Value not in list",
                            format!("{name}: '{given}' not in {}", shown_list(values)),
                            Some(name),
                        ));
                    }
                }
            }
        }
        let ok = errors.is_empty() && deps_ok;
        self.checked.insert(id.to_string(), Some(errors));
        ok
    }

    fn dependencies_ok(&self, id: &str) -> bool {
        let node = &self.nodes[id];
        node.inputs.values().filter_map(as_link).all(|(from, _)| matches!(self.checked.get(&from), Some(Some(e)) if e.is_empty()))
    }
}

/// The literal value of `input` of `node`, coerced.
fn int_of(node: &Node, input: &str) -> i128 {
    node.inputs.get(input).and_then(as_int).unwrap_or(0)
}

fn float_of(node: &Node, input: &str) -> f64 {
    node.inputs.get(input).and_then(as_float).unwrap_or(0.0)
}

fn text_of(node: &Node, input: &str) -> String {
    node.inputs.get(input).and_then(as_text).unwrap_or_default()
}

/// The node an input links to, and the slot.
fn source<'a>(nodes: &'a BTreeMap<String, Node>, node: &Node, input: &str) -> (String, &'a Node, usize) {
    let (id, slot) = node.inputs.get(input).and_then(as_link).expect("validated links");
    let from = &nodes[&id];
    (id, from, slot)
}

/// Why a chain cannot run, on a node.
struct ChainError {
    node: String,
    error: InputError,
}

fn unsupported(node: &str, class: &str, what: &str) -> ChainError {
    ChainError {
        node: node.to_string(),
        error: InputError::new(
            "custom_validation_failed",
            &format!("Easel cannot run this chain yet: {what}"),
            format!("{class} #{node}"),
            None,
        ),
    }
}

/// What a MODEL or CLIP link resolves to: the checkpoint, then each LoRA node on the way with its
/// weight, the CLIP skip, and the nodes passed.
#[derive(Default)]
struct Path {
    checkpoint: Option<(String, String)>,
    loras: Vec<(String, String, f32)>,
    clip_skip: Option<u32>,
    nodes: Vec<String>,
}

fn follow(nodes: &BTreeMap<String, Node>, id: &str, node: &Node, slot: usize, path: &mut Path) -> Result<(), ChainError> {
    path.nodes.push(id.to_string());
    match node.class.as_str() {
        "CheckpointLoaderSimple" => {
            path.checkpoint = Some((id.to_string(), text_of(node, "ckpt_name")));
            Ok(())
        }
        "LoraLoader" | "LoraLoaderModelOnly" => {
            let (input, strength) = if slot == 0 { ("model", "strength_model") } else { ("clip", "strength_clip") };
            let (from_id, from, from_slot) = source(nodes, node, input);
            follow(nodes, &from_id, from, from_slot, path)?;
            path.loras.push((id.to_string(), text_of(node, "lora_name"), float_of(node, strength) as f32));
            Ok(())
        }
        "CLIPSetLastLayer" => {
            let (from_id, from, from_slot) = source(nodes, node, "clip");
            follow(nodes, &from_id, from, from_slot, path)?;
            if path.clip_skip.is_some() {
                return Err(unsupported(id, &node.class, "two CLIPSetLastLayer nodes on one CLIP"));
            }
            path.clip_skip = Some(int_of(node, "stop_at_clip_layer").unsigned_abs().max(1) as u32);
            Ok(())
        }
        other => Err(unsupported(id, other, "this node as a MODEL or CLIP source")),
    }
}

/// Pictures the door makes from uploads before a request runs: ComfyUI's image and mask nodes
/// between the loaders and the encoder, which Easel's request cannot say by itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    /// The init image is inverted first (an odd number of `ImageInvert`s).
    pub invert_init: Option<Inversion>,
    /// The mask is this channel of the mask's picture (`LoadImageMask`; `LoadImage`'s MASK is
    /// its alpha).
    pub mask_channel: Option<MaskChannel>,
    /// `ImageScaleBy` (lanczos): the request's size is the init picture's times this, each side
    /// rounded half to even as Python's `round`; the door fills it in.
    pub scale_by: Option<f64>,
    /// `ImagePadForOutpaint` into `VAEEncodeForInpaint` with the pad's own mask: the init
    /// picture padded, the mask made from its size (the door sets the request's size to the
    /// padded one).
    pub pad: Option<Pad>,
}

/// ComfyUI's `ImagePadForOutpaint`: pixels added on each side, and how far into the picture the
/// mask fades (`((feathering − d) / feathering)²` at distance `d` from a padded edge, when
/// `feathering` is under half of each side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pad {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub feathering: u32,
}

/// How an inverted 8-bit picture is written: ComfyUI inverts floats (`1 − v/255`); its encoder
/// takes them as they are (`255 − v` in 8 bits, the same within a float's last bit), but its
/// lanczos scale first turns them back into 8 bits by truncation (`⌊255 · (1 − v/255)⌋`, one
/// lower than `255 − v` for 159 of the 256 values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inversion {
    Exact,
    Truncated,
}

/// One channel of a picture as a mask: its value / 255, the alpha inverted (ComfyUI's rule: a
/// transparent pixel is repainted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskChannel {
    Red,
    Green,
    Blue,
    Alpha,
}

impl MaskChannel {
    fn parse(name: &str) -> Option<MaskChannel> {
        match name {
            "red" => Some(MaskChannel::Red),
            "green" => Some(MaskChannel::Green),
            "blue" => Some(MaskChannel::Blue),
            "alpha" => Some(MaskChannel::Alpha),
            _ => None,
        }
    }
}

/// The node and slot an input links to.
fn node_input_link(node: &Node, input: &str) -> Option<(String, usize)> {
    node.inputs.get(input).and_then(as_link)
}

/// A `LoadImage` name as an upload id (`<id>.png` is how the door names uploads).
fn upload_id(name: &str) -> String {
    name.strip_suffix(".png").unwrap_or(name).to_string()
}

/// Where a mask comes from: an upload and its channel, and the node that loads it.
struct MaskSource {
    image: String,
    channel: MaskChannel,
    nodes: Vec<String>,
}

/// The `mask` input of `node`: `LoadImageMask` (any channel) or `LoadImage`'s MASK (its alpha).
fn mask_source(nodes: &BTreeMap<String, Node>, node: &Node) -> Result<MaskSource, ChainError> {
    let (mask_id, mask, slot) = source(nodes, node, "mask");
    let channel = match (mask.class.as_str(), slot) {
        ("LoadImageMask", _) => MaskChannel::parse(&text_of(mask, "channel")),
        ("LoadImage", 1) => Some(MaskChannel::Alpha),
        _ => None,
    };
    let Some(channel) = channel else {
        return Err(unsupported(&mask_id, &mask.class, "a mask that is not a LoadImageMask's or a LoadImage's"));
    };
    Ok(MaskSource { image: text_of(mask, "image"), channel, nodes: vec![mask_id] })
}

/// How the init picture is sized before it is encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    AsIs,
    To(u32, u32),
    By(f64),
}

/// The pixels an encoder takes: a `LoadImage`'s picture, inverted any number of times, then
/// scaled at most once with lanczos and no crop (Pillow's Lanczos, which is how Easel sizes an
/// init image to the request) or padded for outpainting.
struct PixelChain {
    image: String,
    inverted: bool,
    scale: Scale,
    /// The `ImagePadForOutpaint` node next to the encoder, and its settings.
    pad: Option<(String, Pad)>,
    nodes: Vec<String>,
}

fn pixel_chain(nodes: &BTreeMap<String, Node>, encoder: &Node) -> Result<PixelChain, ChainError> {
    let (mut id, mut node, mut slot) = source(nodes, encoder, "pixels");
    let mut scale = Scale::AsIs;
    let mut passed = Vec::new();
    let mut pad = None;
    if node.class == "ImagePadForOutpaint" {
        let side = |name: &str| u32::try_from(int_of(node, name)).unwrap_or(0);
        pad = Some((
            id.clone(),
            Pad { left: side("left"), top: side("top"), right: side("right"), bottom: side("bottom"), feathering: side("feathering") },
        ));
        passed.push(id.clone());
        (id, node, slot) = source(nodes, node, "image");
    }
    if matches!(node.class.as_str(), "ImageScale" | "ImageScaleBy") {
        let lanczos = text_of(node, "upscale_method") == "lanczos";
        scale = if node.class == "ImageScale" {
            let (width, height) = (int_of(node, "width"), int_of(node, "height"));
            if !lanczos || text_of(node, "crop") != "disabled" || width <= 0 || height <= 0 || width % 8 != 0 || height % 8 != 0 {
                return Err(unsupported(
                    &id,
                    "ImageScale",
                    "scaling other than lanczos without crop to a width and height in multiples of 8",
                ));
            }
            Scale::To(width as u32, height as u32)
        } else {
            if !lanczos {
                return Err(unsupported(&id, "ImageScaleBy", "scaling other than lanczos"));
            }
            Scale::By(float_of(node, "scale_by"))
        };
        passed.push(id.clone());
        (id, node, slot) = source(nodes, node, "image");
    }
    let mut inverted = false;
    while node.class == "ImageInvert" {
        inverted = !inverted;
        passed.push(id.clone());
        (id, node, slot) = source(nodes, node, "image");
    }
    if matches!(node.class.as_str(), "ImageScale" | "ImageScaleBy" | "ImagePadForOutpaint") {
        return Err(unsupported(
            &id,
            &node.class,
            "this order of image nodes (Easel runs LoadImage, ImageInvert, then one ImageScale, ImageScaleBy or ImagePadForOutpaint)",
        ));
    }
    if pad.is_some() && scale != Scale::AsIs {
        return Err(unsupported(&id, &node.class, "a scale and an ImagePadForOutpaint on one picture"));
    }
    if node.class != "LoadImage" || slot != 0 {
        return Err(unsupported(&id, &node.class, "encoding pixels that are not a LoadImage's picture"));
    }
    passed.push(id);
    passed.reverse();
    Ok(PixelChain { image: text_of(node, "image"), inverted, scale, pad, nodes: passed })
}

/// The second KSampler of a two-pass graph, and the latent upscale before it.
struct SecondPass<'a> {
    first_id: String,
    upscale_id: String,
    upscale: &'a Node,
    second_id: String,
    second: &'a Node,
}

/// `sampler`'s latent as the second pass of ComfyUI's two-pass graph: a `LatentUpscale` or
/// `LatentUpscaleBy` of another `KSampler`'s output, both samplers with the same model, prompts,
/// CFG, sampler and scheduler; `None` when `sampler`'s latent is not an upscale.
fn second_pass_of<'a>(
    nodes: &'a BTreeMap<String, Node>,
    sampler_id: &str,
    sampler: &'a Node,
) -> Result<Option<SecondPass<'a>>, ChainError> {
    if sampler.class != "KSampler" {
        return Ok(None);
    }
    let (upscale_id, upscale, _) = source(nodes, sampler, "latent_image");
    if !matches!(upscale.class.as_str(), "LatentUpscale" | "LatentUpscaleBy") {
        return Ok(None);
    }
    let (first_id, first, _) = source(nodes, upscale, "samples");
    if first.class != "KSampler" {
        return Err(unsupported(&upscale_id, &upscale.class, "a latent upscale of latents that are not a KSampler's"));
    }
    for input in ["model", "positive", "negative"] {
        if node_input_link(first, input) != node_input_link(sampler, input) {
            return Err(unsupported(sampler_id, "KSampler", &format!("a second pass with another {input} than the first KSampler's")));
        }
    }
    for input in ["cfg", "sampler_name", "scheduler"] {
        if first.inputs.get(input) != sampler.inputs.get(input) {
            return Err(unsupported(sampler_id, "KSampler", &format!("a second pass with another {input} than the first KSampler's")));
        }
    }
    Ok(Some(SecondPass { first_id, upscale_id, upscale, second_id: sampler_id.to_string(), second: sampler }))
}

impl SecondPass<'_> {
    /// The request's hires fix for a first pass of `width` x `height`: the upscale's size as a
    /// scale Easel's `Hires::target_size` gives back exactly, the second KSampler's denoise,
    /// steps and seed.
    fn hires(&self, width: u32, height: u32, seed: Option<u64>, steps: Option<u32>) -> Result<HiresRequest, ChainError> {
        let refuse = |what: &str| unsupported(&self.upscale_id, &self.upscale.class, what);
        let method = text_of(self.upscale, "upscale_method");
        let Some(upscaler) = Upscaler::ALL.into_iter().find(|u| u.comfyui_method() == Some(method.as_str())) else {
            return Err(refuse("a latent upscale other than nearest-exact, bilinear, area, bicubic or bislerp"));
        };
        // ComfyUI's target in latents: LatentUpscaleBy rounds (Python's round) each side times
        // the factor; LatentUpscale takes width // 8 and height // 8 (at least 64 pixels).
        let (target_w, target_h) = if self.upscale.class == "LatentUpscaleBy" {
            let by = float_of(self.upscale, "scale_by");
            let side = |s: u32| ((f64::from(s / 8) * by).round_ties_even() as u32) * 8;
            (side(width), side(height))
        } else {
            let (w, h) = (int_of(self.upscale, "width"), int_of(self.upscale, "height"));
            let side = |s: i128| (s.max(64) as u32) / 8 * 8;
            // `crop: center` cuts nothing when the latents keep their aspect (common_upscale
            // compares the two aspects of the latent sides).
            let aspect = |w: u32, h: u32| f64::from(w / 8) / f64::from(h / 8);
            let uncut = match text_of(self.upscale, "crop").as_str() {
                "disabled" => true,
                "center" => w > 0 && h > 0 && aspect(width, height) == aspect(side(w), side(h)),
                _ => false,
            };
            if w == 0 || h == 0 || !uncut {
                return Err(refuse("a LatentUpscale without both a width and a height, or with a crop that cuts (another aspect)"));
            }
            (side(w), side(h))
        };
        let scale = f64::from(target_w) / f64::from(width);
        let hires = Hires { scale, strength: 0.0, steps: 0, upscaler, seed: None };
        if hires.target_size(width, height) != (target_w, target_h) {
            return Err(refuse(&format!(
                "{width}x{height} to {target_w}x{target_h}: Easel's hires fix scales both sides by one factor (in multiples of 8)"
            )));
        }
        let second_seed = u64::try_from(int_of(self.second, "seed")).ok();
        let second_steps = u32::try_from(int_of(self.second, "steps")).ok();
        Ok(HiresRequest {
            scale: Some(scale),
            strength: Some(float_of(self.second, "denoise")),
            steps: Some(if second_steps == steps { 0 } else { second_steps.unwrap_or(0) }),
            upscaler: Some(upscaler.name().to_string()),
            seed: second_seed.filter(|s| Some(*s) != seed),
        })
    }
}

/// What a sampler's conditioning input receives, walked back to its CLIPTextEncode nodes:
/// `ConditioningCombine` joins two lists, `ConditioningConcat` and `ConditioningAverage` apply
/// the first entry of `conditioning_from` to every entry of `conditioning_to` (as ComfyUI does),
/// `ConditioningSetArea` sets every entry's area and strength. The CLIPTextEncode nodes go to
/// `texts`, the other nodes to `ops` (each once, inputs first).
struct ConditioningWalk<'a> {
    nodes: &'a BTreeMap<String, Node>,
    texts: Vec<(String, &'a Node)>,
    ops: Vec<String>,
    /// Each node's list once walked: a node reached again (a graph reusing it at every level)
    /// is not walked again, as ComfyUI runs each node once.
    walked: HashMap<String, Vec<ConditioningEntry>>,
}

impl<'a> ConditioningWalk<'a> {
    fn new(nodes: &'a BTreeMap<String, Node>) -> Self {
        Self { nodes, texts: Vec::new(), ops: Vec::new(), walked: HashMap::new() }
    }

    fn list(&mut self, node: &'a Node, input: &str) -> Result<Vec<ConditioningEntry>, ChainError> {
        let (id, from, _) = source(self.nodes, node, input);
        if let Some(entries) = self.walked.get(&id) {
            return Ok(entries.clone());
        }
        let entries = self.walk(&id, from)?;
        self.walked.insert(id, entries.clone());
        Ok(entries)
    }

    fn walk(&mut self, id: &str, from: &'a Node) -> Result<Vec<ConditioningEntry>, ChainError> {
        let id = id.to_string();
        let entries = match from.class.as_str() {
            "CLIPTextEncode" => {
                if !self.texts.iter().any(|(t, _)| *t == id) {
                    self.texts.push((id.clone(), from));
                }
                return Ok(vec![ConditioningEntry { encoding: TextExpr::Text(text_of(from, "text")), strength: 1.0, area: None }]);
            }
            "ConditioningCombine" => {
                let mut list = self.list(from, "conditioning_1")?;
                list.extend(self.list(from, "conditioning_2")?);
                list
            }
            "ConditioningConcat" | "ConditioningAverage" => {
                let to = self.list(from, "conditioning_to")?;
                let first = self.list(from, "conditioning_from")?.swap_remove(0).encoding;
                let to_strength = float_of(from, "conditioning_to_strength");
                to.into_iter()
                    .map(|mut e| {
                        let (to, from_expr) = (Box::new(e.encoding), Box::new(first.clone()));
                        e.encoding = if from.class == "ConditioningConcat" {
                            TextExpr::Concat { to, from: from_expr }
                        } else {
                            TextExpr::Average { to, from: from_expr, to_strength }
                        };
                        e
                    })
                    .collect()
            }
            "ConditioningSetArea" => {
                let side = |input: &str| u32::try_from(int_of(from, input)).unwrap_or(u32::MAX);
                let area = Area { x: side("x"), y: side("y"), width: side("width"), height: side("height") };
                let strength = float_of(from, "strength") as f32;
                self.list(from, "conditioning")?.into_iter().map(|e| ConditioningEntry { area: Some(area), strength, ..e }).collect()
            }
            other => return Err(unsupported(&id, other, "conditioning that is not built from CLIPTextEncode outputs")),
        };
        // Lists and expressions only grow as they pass nodes: refuse them once past Easel's
        // limits (a graph reusing one node twice at every level would double them each time).
        if entries.len() > MAX_CONDITIONING_ENTRIES
            || entries.iter().map(|e| e.encoding.texts().len()).sum::<usize>() > MAX_CONDITIONING_TEXTS
        {
            return Err(unsupported(
                &id,
                &from.class,
                &format!("conditioning of more than {MAX_CONDITIONING_ENTRIES} entries or {MAX_CONDITIONING_TEXTS} prompts"),
            ));
        }
        if !self.ops.contains(&id) {
            self.ops.push(id);
        }
        Ok(entries)
    }
}

/// Whether a list is prompts alone (no area, strength, concat or average): then the request
/// says it with `prompt` (+ `combined_prompts`) or `negative_prompt`.
fn plain_texts(list: &[ConditioningEntry]) -> Option<Vec<String>> {
    list.iter().map(|e| e.encoding.as_text().filter(|_| e.area.is_none() && e.strength == 1.0).map(str::to_string)).collect()
}

/// The chain of one output node as an Easel request.
fn compile_output(nodes: &BTreeMap<String, Node>, output: &str) -> Result<Output, ChainError> {
    let save = &nodes[output];
    let (decode_id, decode, _) = source(nodes, save, "images");
    if decode.class != "VAEDecode" {
        return Err(unsupported(&decode_id, &decode.class, "images that do not come straight from a VAEDecode"));
    }
    let (mut sampler_id, mut sampler, _) = source(nodes, decode, "samples");
    // ComfyUI's two-pass graph (its hires fix): KSampler -> LatentUpscale(By) -> KSampler.
    let second_pass = second_pass_of(nodes, &sampler_id, sampler)?;
    if let Some(pass) = &second_pass {
        (sampler_id, sampler) = (pass.first_id.clone(), &nodes[&pass.first_id]);
    }
    // ComfyUI's KSamplerAdvanced chain: each later node over the LATENT of the one before.
    let mut later: Vec<(String, &Node)> = Vec::new();
    while second_pass.is_none() {
        let (before_id, before, _) = source(nodes, sampler, "latent_image");
        if !matches!(before.class.as_str(), "KSampler" | "KSamplerAdvanced") {
            break;
        }
        if sampler.class != "KSamplerAdvanced" || before.class != "KSamplerAdvanced" {
            return Err(unsupported(
                &sampler_id,
                &sampler.class,
                "a sampler over another sampler's latents other than in a KSamplerAdvanced chain",
            ));
        }
        if node_input_link(before, "model") != node_input_link(sampler, "model") {
            return Err(unsupported(&sampler_id, &sampler.class, "a chain stage with another model than the first sampler's"));
        }
        if later.len() == MAX_STAGES {
            return Err(unsupported(
                &sampler_id,
                &sampler.class,
                &format!("a chain of more than {} KSamplerAdvanced nodes", MAX_STAGES + 1),
            ));
        }
        later.push((sampler_id, sampler));
        (sampler_id, sampler) = (before_id, before);
    }
    later.reverse();
    let advanced = sampler.class == "KSamplerAdvanced";
    if sampler.class != "KSampler" && !advanced {
        return Err(unsupported(&sampler_id, &sampler.class, "a VAEDecode of latents that are not a KSampler's"));
    }
    // The model and the two prompts' CLIP.
    let mut model = Path::default();
    let (id, node, slot) = source(nodes, sampler, "model");
    follow(nodes, &id, node, slot, &mut model)?;
    // The prompts: each side's conditioning list, down to its CLIPTextEncode nodes.
    let mut walk = ConditioningWalk::new(nodes);
    let positive = walk.list(sampler, "positive")?;
    let negative = walk.list(sampler, "negative")?;
    let mut clip_path: Option<Path> = None;
    let mut prompts = Vec::new();
    for (text_id, text) in &walk.texts {
        let mut clip = Path::default();
        let (id, node, slot) = source(nodes, text, "clip");
        follow(nodes, &id, node, slot, &mut clip)?;
        if let Some(first) = &clip_path {
            if first.nodes != clip.nodes {
                return Err(unsupported(text_id, &text.class, "the positive and negative prompts through different CLIP models"));
            }
        }
        clip_path = Some(clip);
        prompts.push((text_id.clone(), text_of(text, "text")));
    }
    let clip = clip_path.expect("two prompts");
    let (checkpoint_id, checkpoint) = model.checkpoint.clone().expect("a model path ends at a checkpoint");
    if clip.checkpoint.as_ref().map(|c| &c.1) != Some(&checkpoint) {
        return Err(unsupported(&prompts[0].0, "CLIPTextEncode", "a CLIP from another checkpoint than the model's"));
    }
    // LoRAs: each LoRA node's weight on the model and on the CLIP (0 where the node is only on
    // one of the two paths), in the order they apply.
    let mut loras: Vec<LoraRef> = Vec::new();
    let mut lora_nodes: Vec<&str> = Vec::new();
    for (node_id, name, _) in model.loras.iter().chain(clip.loras.iter()) {
        if lora_nodes.contains(&node_id.as_str()) {
            continue;
        }
        lora_nodes.push(node_id);
        let on_model = model.loras.iter().find(|l| &l.0 == node_id).map_or(0.0, |l| l.2);
        let on_clip = clip.loras.iter().find(|l| &l.0 == node_id).map_or(0.0, |l| l.2);
        loras.push(LoraRef { name: name.clone(), weight: on_model, text_encoder_weight: (on_clip != on_model).then_some(on_clip) });
    }
    // The VAE that decodes (and encodes, for image-to-image).
    let vae_of = |node: &Node| -> Result<(String, Option<String>), ChainError> {
        let (id, from, _) = source(nodes, node, "vae");
        match from.class.as_str() {
            "CheckpointLoaderSimple" if text_of(from, "ckpt_name") == checkpoint => Ok((id, None)),
            "VAELoader" => Ok((id, Some(text_of(from, "vae_name")))),
            other => Err(unsupported(&id, other, "a VAE from another checkpoint than the model's")),
        }
    };
    let (vae_node, vae) = vae_of(decode)?;
    // The latent: empty, or an uploaded picture through VAEEncode or VAEEncodeForInpaint, under
    // a RepeatLatentBatch and a SetLatentNoiseMask (either order).
    let (mut latent_id, mut latent, _) = source(nodes, sampler, "latent_image");
    let (mut repeat, mut noise_mask, mut from_batch) = (None, None, None);
    loop {
        match latent.class.as_str() {
            "LatentFromBatch" if from_batch.is_none() && repeat.is_none() && noise_mask.is_none() => {
                from_batch = Some((latent_id.clone(), int_of(latent, "batch_index"), int_of(latent, "length")));
            }
            "RepeatLatentBatch" if repeat.is_none() => {
                repeat = Some((latent_id.clone(), u32::try_from(int_of(latent, "amount")).unwrap_or(1)));
            }
            "SetLatentNoiseMask" if noise_mask.is_none() => {
                noise_mask = Some((latent_id.clone(), mask_source(nodes, latent)?));
            }
            _ => break,
        }
        (latent_id, latent, _) = source(nodes, latent, "samples");
    }
    if let Some((id, _, _)) = from_batch.as_ref().filter(|_| latent.class != "EmptyLatentImage") {
        return Err(unsupported(id, "LatentFromBatch", "a LatentFromBatch of latents that are not an EmptyLatentImage's"));
    }
    let encoded = matches!(latent.class.as_str(), "VAEEncode" | "VAEEncodeForInpaint");
    if (repeat.is_some() || noise_mask.is_some()) && !encoded {
        return Err(unsupported(&latent_id, &latent.class, "a batch repeat or noise mask of latents that are not a VAEEncode's"));
    }
    if noise_mask.is_some() && latent.class == "VAEEncodeForInpaint" {
        return Err(unsupported(&latent_id, &latent.class, "a SetLatentNoiseMask over VAEEncodeForInpaint's own noise mask"));
    }
    // KSamplerAdvanced has no denoise (a full-strength run over its window).
    let denoise = if advanced { 1.0 } else { float_of(sampler, "denoise") };
    let mut request = GenerateRequest::default();
    let mut derived = Derived::default();
    let mut chain: Vec<String> = Vec::new();
    match latent.class.as_str() {
        "EmptyLatentImage" => {
            if denoise < 1.0 {
                return Err(unsupported(&sampler_id, "KSampler", "denoise below 1 over an empty latent (use VAEEncode of a picture)"));
            }
            request.width = u32::try_from(int_of(latent, "width")).ok();
            request.height = u32::try_from(int_of(latent, "height")).ok();
            request.batch_size = u32::try_from(int_of(latent, "batch_size")).ok();
            chain.push(latent_id.clone());
            // LatentFromBatch, clamped to the batch as ComfyUI clamps it.
            if let Some((id, index, length)) = from_batch {
                let batch = int_of(latent, "batch_size").max(1);
                let first = index.clamp(0, batch - 1);
                request.batch_size = u32::try_from(length.clamp(1, batch - first)).ok();
                request.batch_index = u32::try_from(first).ok().filter(|i| *i > 0);
                chain.push(id);
            }
        }
        "VAEEncode" | "VAEEncodeForInpaint" => {
            let pixels = pixel_chain(nodes, latent)?;
            if vae_of(latent)?.1 != vae {
                return Err(unsupported(&latent_id, &latent.class, "encoding and decoding with different VAEs"));
            }
            request.init_image = Some(upload_id(&pixels.image));
            match pixels.scale {
                Scale::To(width, height) => (request.width, request.height) = (Some(width), Some(height)),
                Scale::By(factor) => derived.scale_by = Some(factor),
                Scale::AsIs => {}
            }
            let scaled = pixels.scale != Scale::AsIs;
            derived.invert_init = pixels.inverted.then_some(if scaled { Inversion::Truncated } else { Inversion::Exact });
            request.strength = Some(denoise);
            chain.extend(pixels.nodes);
            if let Some((pad_id, pad)) = &pixels.pad {
                // The pad's grey (0.5) is not an 8-bit value: only VAEEncodeForInpaint, which greys
                // the masked pixels itself, takes the padded picture, with the pad's own mask.
                let own_mask = node_input_link(latent, "mask") == Some((pad_id.clone(), 1));
                if latent.class != "VAEEncodeForInpaint" || !own_mask {
                    return Err(unsupported(
                        pad_id,
                        "ImagePadForOutpaint",
                        "a padded picture not encoded by VAEEncodeForInpaint with its own mask",
                    ));
                }
                derived.pad = Some(*pad);
                request.mask = Some(upload_id(&pixels.image));
                request.masked_content = Some("grey".into());
                request.mask_grow = u32::try_from(int_of(latent, "grow_mask_by")).ok().filter(|g| *g > 0);
            } else if latent.class == "VAEEncodeForInpaint" {
                let mask = mask_source(nodes, latent)?;
                chain.extend(mask.nodes);
                request.mask = Some(upload_id(&mask.image));
                derived.mask_channel = Some(mask.channel);
                request.masked_content = Some("grey".into());
                request.mask_grow = u32::try_from(int_of(latent, "grow_mask_by")).ok().filter(|g| *g > 0);
            }
            chain.push(latent_id.clone());
            if let Some((set_id, mask)) = noise_mask {
                request.mask = Some(upload_id(&mask.image));
                derived.mask_channel = Some(mask.channel);
                chain.extend(mask.nodes);
                chain.push(set_id);
            }
            if let Some((id, amount)) = repeat {
                request.batch_size = Some(amount);
                chain.push(id);
            }
        }
        other => return Err(unsupported(&latent_id, other, "this node as the KSampler's latent")),
    }
    let sampler_name = text_of(sampler, "sampler_name");
    let scheduler = text_of(sampler, "scheduler");
    // Prompts alone are the prompt (and combined prompts) and the negative prompt; anything
    // more is the request's conditioning, the first prompt of each side its caption.
    let first_text = |list: &[ConditioningEntry]| list[0].encoding.texts()[0].to_string();
    request.prompt = first_text(&positive);
    request.negative_prompt = Some(first_text(&negative));
    match (plain_texts(&positive), plain_texts(&negative).filter(|n| n.len() == 1)) {
        (Some(mut texts), Some(_)) => {
            request.combined_prompts = (texts.len() > 1).then(|| texts.split_off(1));
        }
        (_, negative_plain) => {
            let negative = if negative_plain.is_some() { Vec::new() } else { negative };
            request.conditioning = Some(Conditioning { positive, negative });
        }
    }
    request.seed = u64::try_from(int_of(sampler, if advanced { "noise_seed" } else { "seed" })).ok();
    request.steps = u32::try_from(int_of(sampler, "steps")).ok();
    if advanced {
        let range = window_of(sampler);
        // The node at its defaults is a KSampler (unless a chain follows it).
        let whole = range.start_at_step == Some(0)
            && range.add_noise == Some(true)
            && range.end_at_step.zip(request.steps).is_some_and(|(end, steps)| end >= steps);
        request.sampling_range = (!whole || !later.is_empty()).then_some(range);
    }
    // A stage's own prompt on a side: one CLIPTextEncode through the first sampler's CLIP.
    let mut stage_texts: Vec<String> = Vec::new();
    let mut stage_prompt = |node_id: &str, node: &Node, side: &str| -> Result<Option<String>, ChainError> {
        if node_input_link(node, side) == node_input_link(sampler, side) {
            return Ok(None);
        }
        let mut own = ConditioningWalk::new(nodes);
        let list = own.list(node, side)?;
        let Some(text) = plain_texts(&list).filter(|t| t.len() == 1).and_then(|t| t.into_iter().next()) else {
            return Err(unsupported(
                node_id,
                &node.class,
                &format!("a chain stage whose {side} conditioning is more than one CLIPTextEncode"),
            ));
        };
        for (text_id, text_node) in &own.texts {
            let mut path = Path::default();
            let (id, from, slot) = source(nodes, text_node, "clip");
            follow(nodes, &id, from, slot, &mut path)?;
            if path.nodes != clip.nodes {
                return Err(unsupported(text_id, &text_node.class, "a chain stage's prompt through another CLIP than the first sampler's"));
            }
            if !stage_texts.contains(text_id) {
                stage_texts.push(text_id.clone());
            }
        }
        Ok(Some(text))
    };
    if !later.is_empty() {
        let mut stages = Vec::with_capacity(later.len());
        for (id, node) in &later {
            stages.push(StageRequest {
                sampling_range: window_of(node),
                seed: u64::try_from(int_of(node, "noise_seed")).ok(),
                steps: u32::try_from(int_of(node, "steps")).ok(),
                cfg_scale: Some(float_of(node, "cfg") as f32),
                sampler: Some(easel_sampler_name(&text_of(node, "sampler_name"))),
                schedule: Some(easel_schedule_name(&text_of(node, "scheduler"))),
                prompt: stage_prompt(id, node, "positive")?,
                negative_prompt: stage_prompt(id, node, "negative")?,
            });
        }
        request.stages = Some(stages);
    }
    if let Some(pass) = &second_pass {
        if request.width.zip(request.height).is_none() {
            return Err(unsupported(
                &pass.upscale_id,
                "LatentUpscale",
                "a two-pass graph whose first KSampler's latent is not an EmptyLatentImage",
            ));
        }
        request.hires = Some(pass.hires(request.width.unwrap_or(0), request.height.unwrap_or(0), request.seed, request.steps)?);
    }
    request.cfg_scale = Some(float_of(sampler, "cfg") as f32);
    request.sampler = Some(easel_sampler_name(&sampler_name));
    request.schedule = Some(easel_schedule_name(&scheduler));
    request.model = Some(checkpoint);
    request.loras = (!loras.is_empty()).then_some(loras);
    request.vae = vae;
    request.clip_skip = clip.clip_skip;
    request.compat = Some("comfyui".into());
    request.prompt_syntax = Some("comfyui".into());
    // The order the nodes run in: loaders, prompts, latent, sampler, decoder, output.
    let mut order: Vec<String> = vec![checkpoint_id];
    for id in model.nodes.iter().rev().chain(clip.nodes.iter().rev()) {
        if !order.contains(id) {
            order.push(id.clone());
        }
    }
    if !order.contains(&vae_node) {
        order.push(vae_node);
    }
    for (id, _) in &prompts {
        order.push(id.clone());
    }
    order.extend(stage_texts);
    order.extend(walk.ops);
    order.extend(chain);
    order.push(sampler_id.clone());
    order.extend(later.iter().map(|(id, _)| id.clone()));
    if let Some(pass) = &second_pass {
        order.extend([pass.upscale_id.clone(), pass.second_id.clone()]);
    }
    order.extend([decode_id, output.to_string()]);
    Ok(Output { node: output.to_string(), request, derived, chain: order, sampler_node: sampler_id })
}

/// A KSamplerAdvanced node's window in the request's words.
fn window_of(node: &Node) -> SamplingRangeRequest {
    SamplingRangeRequest {
        start_at_step: u32::try_from(int_of(node, "start_at_step")).ok(),
        end_at_step: u32::try_from(int_of(node, "end_at_step")).ok(),
        add_noise: Some(text_of(node, "add_noise") == "enable"),
        return_with_leftover_noise: Some(text_of(node, "return_with_leftover_noise") == "enable"),
    }
}

/// Easel's name for a ComfyUI sampler name (the name itself when Easel has none: the request
/// then refuses it by name).
fn easel_sampler_name(name: &str) -> String {
    sampler_named(name).map_or_else(|| name.to_string(), |s| s.name().to_string())
}

/// Easel's name for a ComfyUI scheduler name (as [`easel_sampler_name`]).
fn easel_schedule_name(name: &str) -> String {
    scheduler_named(name).map_or_else(|| name.to_string(), |s| s.name().to_string())
}

/// Validates the graph and translates every valid output; refuses it when nothing can run.
pub fn compile(nodes: &BTreeMap<String, Node>, specs: &[NodeSpec]) -> Result<Compiled, Refusal> {
    for (id, node) in nodes {
        if !specs.iter().any(|s| s.class == node.class) {
            let message = format!(
                "Node '{}' not found. Easel's ComfyUI API runs these nodes: {}",
                node.class,
                specs.iter().map(|s| s.class).collect::<Vec<_>>().join(", ")
            );
            return Err(missing_class(id, &node.class, &message));
        }
    }
    let outputs: Vec<&String> =
        nodes.iter().filter(|(_, n)| specs.iter().any(|s| s.class == n.class && s.output_node)).map(|(id, _)| id).collect();
    if outputs.is_empty() {
        return Err(refusal("prompt_no_outputs", "Prompt has no outputs", String::new(), json!({})));
    }
    let mut validator = Validator::new(nodes, specs);
    let mut node_errors: BTreeMap<String, (Vec<InputError>, Vec<String>)> = BTreeMap::new();
    let mut compiled = Vec::new();
    for output in &outputs {
        if !validator.check(output) {
            continue;
        }
        match compile_output(nodes, output) {
            Ok(o) => compiled.push(o),
            Err(e) => {
                let entry = node_errors.entry(e.node).or_default();
                entry.0.push(e.error);
                entry.1.push((*output).clone());
            }
        }
    }
    for (id, errors) in &validator.checked {
        if let Some(errors) = errors.as_ref().filter(|e| !e.is_empty()) {
            let entry = node_errors.entry(id.clone()).or_default();
            entry.0.extend(errors.iter().cloned());
            for output in &outputs {
                if depends_on(nodes, output, id) && !entry.1.contains(output) {
                    entry.1.push((*output).clone());
                }
            }
        }
    }
    let errors_json: Map<String, Value> = node_errors
        .iter()
        .map(|(id, (errors, dependent))| {
            let value = json!({
                "errors": errors.iter().map(InputError::to_json).collect::<Vec<_>>(),
                "dependent_outputs": dependent,
                "class_type": nodes.get(id).map(|n| n.class.clone()).unwrap_or_default(),
            });
            (id.clone(), value)
        })
        .collect();
    if compiled.is_empty() {
        let details: Vec<String> = node_errors
            .iter()
            .flat_map(|(id, (errors, _))| errors.iter().map(move |e| format!("{}: {} (node {id})", e.message, e.details)))
            .collect();
        return Err(Refusal {
            error: json!({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": details.join("\n"), "extra_info": {}}),
            node_errors: Value::Object(errors_json),
        });
    }
    Ok(Compiled { outputs: compiled, node_errors: Value::Object(errors_json) })
}

/// Whether `target` is `from` or one of its (transitive) inputs.
fn depends_on(nodes: &BTreeMap<String, Node>, from: &str, target: &str) -> bool {
    let mut stack = vec![from.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if id == target {
            return true;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(node) = nodes.get(&id) {
            stack.extend(node.inputs.values().filter_map(as_link).map(|(from, _)| from));
        }
    }
    false
}
