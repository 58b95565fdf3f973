//! Owns the edits Easel makes to ONNX graphs when it creates sessions: pointing a template's
//! initializers at their weights, in memory or in the weights file itself, with the conversions
//! the stored tensors need ([`place_initializers`]), and the edits of a
//! CLIP text encoder's graph, so that exports people already have (whose only output is the last
//! layer) support CLIP skip and textual inversion without a re-export:
//!
//! * **extra token rows**: a new graph input [`EXTRA_EMBEDDINGS_INPUT`] (`[rows, hidden]`) is
//!   appended to the token-embedding table (`Concat` on axis 0) before the token lookup, so ids
//!   from the vocabulary size upwards read embedding vectors;
//! * **CLIP skip N**: the final layer norm reads the residual stream after `layers − N + 1`
//!   layers instead of after the last (A1111's `hidden_states[-N]` through `final_layer_norm`).
//!
//! The edit works on the protobuf bytes: untouched messages (weights included) are copied as they
//! are; the few nodes that change are re-encoded. The residual stream is found from the graph's
//! structure (the `Add` chain after the token lookup), not from node names.

use std::collections::{HashMap, HashSet};

use super::onnx_inspect::{fields, read_varint};

/// The input that carries textual-inversion vectors (rows appended to the vocabulary).
pub const EXTRA_EMBEDDINGS_INPUT: &str = "easel_extra_token_embeddings";
const EXTENDED_TABLE: &str = "easel_extended_token_table";
const UNUSED_SUFFIX: &str = "_easel_unused";

const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_INPUT: u64 = 11;
const NODE_INPUT: u64 = 1;
const NODE_OUTPUT: u64 = 2;
const NODE_OP_TYPE: u64 = 4;
const TENSOR_DIMS: u64 = 1;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_NAME: u64 = 8;
const TENSOR_RAW_DATA: u64 = 9;
const VALUE_NAME: u64 = 1;

/// What the edited graph looks like from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct EditedEncoder {
    /// The edited model, to create a session from.
    pub bytes: Vec<u8>,
    /// Rows of the original token table: the first id of the extra rows.
    pub vocab_rows: usize,
    /// Hidden size (the width of an embedding vector).
    pub hidden: usize,
    /// ONNX element type of the table (1 = float32, 10 = float16).
    pub element: i64,
    /// Transformer layers found on the residual stream.
    pub layers: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot prepare this text encoder for {what}: {reason}")]
pub struct EditError {
    what: String,
    reason: String,
}

#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    pub(super) raw: &'a [u8],
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<String>,
    pub(super) op: String,
}

pub(super) fn parse_node(raw: &[u8]) -> Node<'_> {
    let mut node = Node { raw, inputs: Vec::new(), outputs: Vec::new(), op: String::new() };
    for (field, wire, payload) in fields(raw) {
        let text = || String::from_utf8_lossy(payload).into_owned();
        match (field, wire) {
            (NODE_INPUT, 2) => node.inputs.push(text()),
            (NODE_OUTPUT, 2) => node.outputs.push(text()),
            (NODE_OP_TYPE, 2) => node.op = text(),
            _ => {}
        }
    }
    node
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_field(out: &mut Vec<u8>, field: u64, wire: u8, payload: &[u8]) {
    put_varint(out, (field << 3) | wire as u64);
    if wire == 2 {
        put_varint(out, payload.len() as u64);
    }
    out.extend_from_slice(payload);
}

pub(super) fn put_bytes(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
    put_field(out, field, 2, payload);
}

pub(super) fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

const TENSOR_EXTERNAL_DATA: u64 = 13;
const TENSOR_DATA_LOCATION: u64 = 14;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: u64 = 1;

/// Where ONNX Runtime finds one initializer's data, stored as `source` says when that differs
/// from the graph's initializer.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub data: DataPlace,
    pub source: Option<SourceLayout>,
}

/// The bytes of one initializer.
#[derive(Debug, Clone, PartialEq)]
pub enum DataPlace {
    /// `length` bytes at `offset` in the external data file `location`.
    External { location: String, offset: u64, length: u64 },
    /// `length` bytes at `offset` of the bytes handed to [`place_initializers`], written into the
    /// graph itself (`raw_data`).
    Inline { offset: usize, length: usize },
}

/// A tensor stored in another element type or layout than the graph's initializer, and the steps
/// that turn it into the initializer. They become nodes in front of the graph that ONNX Runtime's
/// constant folding runs once at session creation, so the stored tensor is read from its file
/// and only the result is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLayout {
    /// ONNX element type as stored (1 float32, 10 float16, 11 float64, 16 bfloat16).
    pub element: i64,
    pub dims: Vec<usize>,
    pub steps: Vec<Step>,
}

/// One conversion step, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Reshape(Vec<usize>),
    /// A 2-D transpose.
    Transpose,
    /// To this ONNX element type.
    Cast(i64),
}

/// Suffix of the stored tensor's name when steps turn it into the initializer.
const STORED_SUFFIX: &str = "__easel_stored";

/// `model` with each initializer named in `places` read from its place (an external data file
/// handed over in memory, a file on disk that ONNX Runtime maps, or `inline` bytes written into
/// the graph), converted by nodes in front of the graph where its stored layout differs; every
/// other field and initializer is copied as it is. Fails unless every name in `places` is an
/// initializer of the graph.
pub fn place_initializers(model: &[u8], places: &HashMap<String, Placement>, inline: &[u8]) -> Result<Vec<u8>, EditError> {
    let fail = |reason: String| EditError { what: "weights read from their files".into(), reason };
    let mut out = Vec::with_capacity(model.len() + places.len() * 160);
    let mut located = 0;
    for (field, wire, payload) in fields(model) {
        if field != MODEL_GRAPH || wire != 2 {
            put_field(&mut out, field, wire, payload);
            continue;
        }
        // Conversion nodes first (graphs list nodes in topological order), then the graph as it
        // was with the placed initializers rewritten, then the shapes the Reshape nodes read.
        let (mut nodes, mut graph, mut shapes) = (Vec::new(), Vec::with_capacity(payload.len() + places.len() * 160), Vec::new());
        for (gf, gw, gp) in fields(payload) {
            let named = (gf == GRAPH_INITIALIZER && gw == 2).then(|| initializer_info(gp).0);
            let Some((name, place)) = named.and_then(|name| places.get(&name).map(|p| (name, p))) else {
                put_field(&mut graph, gf, gw, gp);
                continue;
            };
            let stored = match &place.source {
                Some(source) if !source.steps.is_empty() => {
                    let stored = format!("{name}{STORED_SUFFIX}");
                    conversion_nodes(&stored, &name, &source.steps, &mut nodes, &mut shapes);
                    stored
                }
                _ => name.clone(),
            };
            let mut tensor = Vec::with_capacity(gp.len() + 160);
            let layout = place.source.as_ref();
            for (tf, tw, tp) in fields(gp) {
                let replaced = matches!(tf, TENSOR_EXTERNAL_DATA | TENSOR_DATA_LOCATION | TENSOR_NAME | TENSOR_RAW_DATA)
                    || (layout.is_some() && matches!(tf, TENSOR_DIMS | TENSOR_DATA_TYPE));
                if !replaced {
                    put_field(&mut tensor, tf, tw, tp);
                }
            }
            if let Some(layout) = layout {
                for d in &layout.dims {
                    put_uint(&mut tensor, TENSOR_DIMS, *d as u64);
                }
                put_uint(&mut tensor, TENSOR_DATA_TYPE, layout.element as u64);
            }
            put_bytes(&mut tensor, TENSOR_NAME, stored.as_bytes());
            match &place.data {
                DataPlace::External { location, offset, length } => {
                    for (key, value) in [("location", location.clone()), ("offset", offset.to_string()), ("length", length.to_string())] {
                        let mut entry = Vec::new();
                        put_bytes(&mut entry, 1, key.as_bytes());
                        put_bytes(&mut entry, 2, value.as_bytes());
                        put_bytes(&mut tensor, TENSOR_EXTERNAL_DATA, &entry);
                    }
                    put_uint(&mut tensor, TENSOR_DATA_LOCATION, EXTERNAL);
                }
                DataPlace::Inline { offset, length } => {
                    let bytes = inline.get(*offset..offset + length).ok_or_else(|| fail(format!("{name}: inline bytes out of range")))?;
                    put_bytes(&mut tensor, TENSOR_RAW_DATA, bytes);
                }
            }
            put_bytes(&mut graph, gf, &tensor);
            located += 1;
        }
        let mut edited = Vec::with_capacity(nodes.len() + graph.len() + shapes.len());
        edited.extend(nodes);
        edited.extend(graph);
        edited.extend(shapes);
        put_bytes(&mut out, field, &edited);
    }
    if located != places.len() {
        return Err(fail(format!("{located} of {} weights matched an initializer of the graph", places.len())));
    }
    Ok(out)
}

/// The graph with its external data locations resolved through symbolic links, and the one
/// folder they all lie in, for a graph handed to ONNX Runtime from memory: ONNX Runtime refuses
/// external data whose real path leaves the folder it is given, and the Hugging Face cache's
/// snapshot files are links into its `blobs/` folder. `None` when nothing needs to change (no
/// external data, or every file is where it is named), or when the files resolve into more
/// than one folder or cannot be resolved (then load the graph from its file instead).
pub fn resolve_external_data(model: &[u8], folder: &std::path::Path) -> Option<(Vec<u8>, std::path::PathBuf)> {
    // Each initializer's `location` value, resolved.
    let location_of = |tensor: &[u8]| -> Option<String> {
        fields(tensor).filter(|(f, w, _)| *f == TENSOR_EXTERNAL_DATA && *w == 2).find_map(|(_, _, entry)| {
            let key = fields(entry).find(|(f, w, _)| *f == 1 && *w == 2).map(|(_, _, k)| k)?;
            let value = fields(entry).find(|(f, w, _)| *f == 2 && *w == 2).map(|(_, _, v)| v)?;
            (key == b"location").then(|| String::from_utf8_lossy(value).into_owned())
        })
    };
    let graph = fields(model).find(|(f, w, _)| *f == MODEL_GRAPH && *w == 2)?.2;
    let mut resolved: HashMap<String, (std::path::PathBuf, String)> = HashMap::new();
    for (_, _, tensor) in fields(graph).filter(|(f, w, _)| *f == GRAPH_INITIALIZER && *w == 2) {
        let Some(location) = location_of(tensor) else { continue };
        if resolved.contains_key(&location) {
            continue;
        }
        let real = std::fs::canonicalize(folder.join(&location)).ok()?;
        let (dir, name) = (real.parent()?.to_path_buf(), real.file_name()?.to_string_lossy().into_owned());
        resolved.insert(location, (dir, name));
    }
    let dirs: HashSet<&std::path::PathBuf> = resolved.values().map(|(d, _)| d).collect();
    let [dir] = dirs.into_iter().collect::<Vec<_>>()[..] else { return None };
    let unchanged = std::fs::canonicalize(folder).ok().as_ref() == Some(dir) && resolved.iter().all(|(l, (_, n))| l == n);
    if unchanged {
        return None;
    }
    let dir = dir.clone();
    let mut out = Vec::with_capacity(model.len());
    for (field, wire, payload) in fields(model) {
        if field != MODEL_GRAPH || wire != 2 {
            put_field(&mut out, field, wire, payload);
            continue;
        }
        let mut new_graph = Vec::with_capacity(payload.len());
        for (gf, gw, gp) in fields(payload) {
            let renamed = (gf == GRAPH_INITIALIZER && gw == 2).then(|| location_of(gp)).flatten().and_then(|l| resolved.get(&l));
            let Some((_, name)) = renamed else {
                put_field(&mut new_graph, gf, gw, gp);
                continue;
            };
            let mut tensor = Vec::with_capacity(gp.len());
            for (tf, tw, tp) in fields(gp) {
                let is_location = tf == TENSOR_EXTERNAL_DATA && tw == 2 && fields(tp).any(|(f, w, k)| f == 1 && w == 2 && k == b"location");
                if is_location {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, b"location");
                    put_bytes(&mut entry, 2, name.as_bytes());
                    put_bytes(&mut tensor, TENSOR_EXTERNAL_DATA, &entry);
                } else {
                    put_field(&mut tensor, tf, tw, tp);
                }
            }
            put_bytes(&mut new_graph, gf, &tensor);
        }
        put_bytes(&mut out, field, &new_graph);
    }
    Some((out, dir))
}

/// Appends to `nodes` (and the Reshape targets to `shapes`, as graph fields) the nodes that turn
/// tensor `from` into `to` by `steps`.
fn conversion_nodes(from: &str, to: &str, steps: &[Step], nodes: &mut Vec<u8>, shapes: &mut Vec<u8>) {
    let mut current = from.to_string();
    for (i, step) in steps.iter().enumerate() {
        let output = if i + 1 == steps.len() { to.to_string() } else { format!("{to}__easel_step{i}") };
        let node = match step {
            Step::Cast(element) => node_bytes(&[&current], &[&output], "Cast", Some(("to", *element))),
            Step::Transpose => {
                let mut node = node_bytes(&[&current], &[&output], "Transpose", None);
                let mut attribute = Vec::new();
                put_bytes(&mut attribute, 1, b"perm");
                put_uint(&mut attribute, 8, 1);
                put_uint(&mut attribute, 8, 0);
                put_uint(&mut attribute, 20, 7); // AttributeProto.INTS
                put_bytes(&mut node, 5, &attribute);
                node
            }
            Step::Reshape(dims) => {
                let shape_name = format!("{to}__easel_shape{i}");
                let mut tensor = Vec::new();
                put_uint(&mut tensor, TENSOR_DIMS, dims.len() as u64);
                put_uint(&mut tensor, TENSOR_DATA_TYPE, 7); // int64
                put_bytes(&mut tensor, TENSOR_NAME, shape_name.as_bytes());
                let raw: Vec<u8> = dims.iter().flat_map(|d| (*d as i64).to_le_bytes()).collect();
                put_bytes(&mut tensor, TENSOR_RAW_DATA, &raw);
                put_bytes(shapes, GRAPH_INITIALIZER, &tensor);
                node_bytes(&[&current, &shape_name], &[&output], "Reshape", None)
            }
        };
        put_bytes(nodes, GRAPH_NODE, &node);
        current = output;
    }
}

/// A node re-encoded with the string `from` replaced by `to` among its inputs (`field` 1) or
/// outputs (2).
fn rename_in_node(raw: &[u8], field_no: u64, from: &str, to: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + to.len());
    for (field, wire, payload) in fields(raw) {
        if field == field_no && wire == 2 && payload == from.as_bytes() {
            put_bytes(&mut out, field, to.as_bytes());
        } else {
            put_field(&mut out, field, wire, payload);
        }
    }
    out
}

fn node_bytes(inputs: &[&str], outputs: &[&str], op: &str, int_attribute: Option<(&str, i64)>) -> Vec<u8> {
    let mut node = Vec::new();
    for input in inputs {
        put_bytes(&mut node, NODE_INPUT, input.as_bytes());
    }
    for output in outputs {
        put_bytes(&mut node, NODE_OUTPUT, output.as_bytes());
    }
    put_bytes(&mut node, 3, format!("easel_{op}_{}", outputs[0]).as_bytes());
    put_bytes(&mut node, NODE_OP_TYPE, op.as_bytes());
    if let Some((name, value)) = int_attribute {
        let mut attribute = Vec::new();
        put_bytes(&mut attribute, 1, name.as_bytes());
        put_uint(&mut attribute, 3, value as u64);
        put_uint(&mut attribute, 20, 2); // AttributeProto.INT
        put_bytes(&mut node, 5, &attribute);
    }
    node
}

/// `ValueInfoProto` of a tensor input with a symbolic first dimension.
fn tensor_input(name: &str, element: i64, hidden: usize) -> Vec<u8> {
    let mut rows = Vec::new();
    put_bytes(&mut rows, 2, b"easel_extra_rows");
    let mut width = Vec::new();
    put_uint(&mut width, 1, hidden as u64);
    let mut shape = Vec::new();
    put_bytes(&mut shape, 1, &rows);
    put_bytes(&mut shape, 1, &width);
    let mut tensor = Vec::new();
    put_uint(&mut tensor, 1, element as u64);
    put_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    put_bytes(&mut ty, 1, &tensor);
    let mut info = Vec::new();
    put_bytes(&mut info, VALUE_NAME, name.as_bytes());
    put_bytes(&mut info, 2, &ty);
    info
}

/// Name, dims and element type of an initializer (`TensorProto`), without reading its data.
fn initializer_info(raw: &[u8]) -> (String, Vec<i64>, i64) {
    let (mut name, mut dims, mut element) = (String::new(), Vec::new(), 0);
    for (field, wire, mut payload) in fields(raw) {
        match (field, wire) {
            (TENSOR_NAME, 2) => name = String::from_utf8_lossy(payload).into_owned(),
            (TENSOR_DIMS, 0) => dims.extend(read_varint(&mut payload).ok().map(|v| v as i64)),
            (TENSOR_DIMS, 2) => {
                while !payload.is_empty() {
                    match read_varint(&mut payload) {
                        Ok(v) => dims.push(v as i64),
                        Err(_) => break,
                    }
                }
            }
            (TENSOR_DATA_TYPE, 0) => element = read_varint(&mut payload).map(|v| v as i64).unwrap_or(0),
            _ => {}
        }
    }
    (name, dims, element)
}

/// Edits a text encoder: always adds the extra-rows input; with `clip_skip` > 1 also moves the
/// final layer norm down the residual stream. `clip_skip` counts like A1111 (1 = last layer).
pub fn edit_text_encoder(model: &[u8], clip_skip: usize) -> Result<EditedEncoder, EditError> {
    let what = if clip_skip > 1 { format!("CLIP skip {clip_skip}") } else { "textual inversion".to_string() };
    let fail = |reason: String| EditError { what: what.clone(), reason };
    let model_fields: Vec<(u64, u8, &[u8])> = fields(model).collect();
    let graph = model_fields
        .iter()
        .find(|(f, w, _)| *f == MODEL_GRAPH && *w == 2)
        .map(|(_, _, p)| *p)
        .ok_or_else(|| fail("the file has no graph".into()))?;
    let graph_fields: Vec<(u64, u8, &[u8])> = fields(graph).collect();

    let nodes: Vec<Node<'_>> = graph_fields.iter().filter(|(f, w, _)| *f == GRAPH_NODE && *w == 2).map(|(_, _, p)| parse_node(p)).collect();
    let initializers: HashMap<String, (Vec<i64>, i64)> = graph_fields
        .iter()
        .filter(|(f, w, _)| *f == GRAPH_INITIALIZER && *w == 2)
        .map(|(_, _, p)| {
            let (name, dims, element) = initializer_info(p);
            (name, (dims, element))
        })
        .collect();
    let inputs: Vec<String> = graph_fields
        .iter()
        .filter(|(f, w, _)| *f == GRAPH_INPUT && *w == 2)
        .filter_map(|(_, _, p)| {
            fields(p).find(|(f, w, _)| *f == VALUE_NAME && *w == 2).map(|(_, _, n)| String::from_utf8_lossy(n).into_owned())
        })
        .collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }

    // The token lookup: a Gather of an initializer by `input_ids` (through casts and reshapes).
    let ids = inputs.iter().find(|n| n.as_str() == "input_ids").or(inputs.first()).ok_or_else(|| fail("the graph has no inputs".into()))?;
    let mut id_tensors: HashSet<&str> = HashSet::from([ids.as_str()]);
    let mut frontier = vec![ids.as_str()];
    let mut gather = None;
    while let Some(tensor) = frontier.pop() {
        for &i in consumers.get(tensor).map(Vec::as_slice).unwrap_or_default() {
            let node = &nodes[i];
            match node.op.as_str() {
                "Cast" | "Reshape" | "Unsqueeze" | "Squeeze" | "Flatten" | "Identity" => {
                    for out in &node.outputs {
                        if id_tensors.insert(out.as_str()) {
                            frontier.push(out.as_str());
                        }
                    }
                }
                "Gather"
                    if node.inputs.len() == 2
                        && id_tensors.contains(node.inputs[1].as_str())
                        && initializers.contains_key(&node.inputs[0]) =>
                {
                    gather = Some(i);
                }
                _ => {}
            }
        }
    }
    let gather = gather.ok_or_else(|| fail("no token-embedding lookup (Gather of a weight by input_ids) was found".into()))?;
    let table = nodes[gather].inputs[0].clone();
    let (dims, element) = initializers[&table].clone();
    let [vocab_rows, hidden] = dims[..] else {
        return Err(fail(format!("the token table {table} has shape {dims:?}, expected [vocab, hidden]")));
    };

    // The residual stream: from the token lookup's sum with the positions, each Add that takes
    // the stream and another computed tensor (attention, then MLP output) continues it.
    let is_initializer = |t: &str| initializers.contains_key(t);
    let first = nodes[gather].outputs[0].as_str();
    let start = consumers
        .get(first)
        .and_then(|c| c.iter().find(|&&i| nodes[i].op == "Add"))
        .map(|&i| nodes[i].outputs[0].clone())
        .ok_or_else(|| fail("the token embeddings are not added to position embeddings".into()))?;
    let mut stream = vec![start];
    let mut producers: Vec<usize> = Vec::new();
    loop {
        let current = stream.last().map(String::as_str).unwrap_or_default();
        let next: Vec<usize> = consumers
            .get(current)
            .map(|c| {
                c.iter()
                    .copied()
                    .filter(|&i| {
                        let n = &nodes[i];
                        n.op == "Add" && n.inputs.len() == 2 && n.inputs.iter().all(|t| !is_initializer(t)) && n.inputs[0] != n.inputs[1]
                    })
                    .collect()
            })
            .unwrap_or_default();
        match next.as_slice() {
            [one] if stream.len() < 1000 => {
                producers.push(*one);
                stream.push(nodes[*one].outputs[0].clone());
            }
            _ => break,
        }
    }
    if producers.len() < 2 || !producers.len().is_multiple_of(2) {
        return Err(fail(format!("the residual stream has {} additions, expected two per layer", producers.len())));
    }
    let layers = producers.len() / 2;
    if clip_skip > layers {
        return Err(fail(format!("the text encoder has {layers} layers; CLIP skip can be 1 to {layers}")));
    }

    // The edits, by node index: re-encoded nodes and nodes inserted before them.
    let mut replaced: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut inserted: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    replaced.insert(gather, rename_in_node(nodes[gather].raw, NODE_INPUT, &table, EXTENDED_TABLE));
    inserted.entry(gather).or_default().push(node_bytes(&[&table, EXTRA_EMBEDDINGS_INPUT], &[EXTENDED_TABLE], "Concat", Some(("axis", 0))));
    if clip_skip > 1 {
        let last = stream[2 * layers].clone();
        let target = stream[2 * (layers + 1 - clip_skip)].clone();
        let producer = producers[2 * layers - 1];
        replaced.insert(producer, rename_in_node(nodes[producer].raw, NODE_OUTPUT, &last, &format!("{last}{UNUSED_SUFFIX}")));
        let first_reader = consumers
            .get(last.as_str())
            .and_then(|c| c.iter().min().copied())
            .ok_or_else(|| fail("the last layer's output is unused".into()))?;
        inserted.entry(first_reader).or_default().push(node_bytes(&[&target], &[&last], "Identity", None));
    }

    let mut new_graph = Vec::with_capacity(graph.len() + 1024);
    let mut node_index = 0;
    let last_input_field = graph_fields.iter().rposition(|(f, w, _)| *f == GRAPH_INPUT && *w == 2);
    for (position, (field, wire, payload)) in graph_fields.iter().enumerate() {
        if *field == GRAPH_NODE && *wire == 2 {
            for extra in inserted.get(&node_index).map(Vec::as_slice).unwrap_or_default() {
                put_bytes(&mut new_graph, GRAPH_NODE, extra);
            }
            match replaced.get(&node_index) {
                Some(bytes) => put_bytes(&mut new_graph, GRAPH_NODE, bytes),
                None => put_field(&mut new_graph, *field, *wire, payload),
            }
            node_index += 1;
        } else {
            put_field(&mut new_graph, *field, *wire, payload);
        }
        if Some(position) == last_input_field {
            put_bytes(&mut new_graph, GRAPH_INPUT, &tensor_input(EXTRA_EMBEDDINGS_INPUT, element, hidden as usize));
        }
    }
    let mut bytes = Vec::with_capacity(model.len() + 1024);
    for (field, wire, payload) in &model_fields {
        if *field == MODEL_GRAPH && *wire == 2 {
            put_bytes(&mut bytes, MODEL_GRAPH, &new_graph);
        } else {
            put_field(&mut bytes, *field, *wire, payload);
        }
    }
    Ok(EditedEncoder { bytes, vocab_rows: vocab_rows as usize, hidden: hidden as usize, element, layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_encoder() -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/text_encoder/model.onnx")).unwrap()
    }

    #[test]
    fn finds_the_token_table_and_the_residual_stream_of_an_export() {
        let bytes = tiny_encoder();
        let plain = edit_text_encoder(&bytes, 1).unwrap();
        assert_eq!((plain.vocab_rows, plain.hidden, plain.layers, plain.element), (49408, 32, 2, 1));
        let skipped = edit_text_encoder(&bytes, 2).unwrap();
        assert!(skipped.bytes.len() > plain.bytes.len(), "an Identity node more");
        let text = String::from_utf8_lossy(&skipped.bytes);
        assert!(text.contains(EXTRA_EMBEDDINGS_INPUT) && text.contains(UNUSED_SUFFIX));
    }

    #[test]
    fn refuses_what_it_cannot_edit_with_the_reason() {
        let too_deep = edit_text_encoder(&tiny_encoder(), 3).unwrap_err().to_string();
        assert!(too_deep.contains("CLIP skip 3") && too_deep.contains("2 layers"), "{too_deep}");
        let garbage = edit_text_encoder(b"not an onnx file", 1).unwrap_err().to_string();
        assert!(garbage.contains("textual inversion"), "{garbage}");
    }
}

#[cfg(test)]
mod external_data_tests {
    use super::*;

    /// A model whose one initializer `w` is stored in `location`.
    fn model_with_external(location: &str) -> Vec<u8> {
        let mut tensor = Vec::new();
        put_uint(&mut tensor, TENSOR_DIMS, 2);
        put_uint(&mut tensor, TENSOR_DATA_TYPE, 1);
        put_bytes(&mut tensor, TENSOR_NAME, b"w");
        for (key, value) in [("location", location), ("offset", "0"), ("length", "8")] {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, key.as_bytes());
            put_bytes(&mut entry, 2, value.as_bytes());
            put_bytes(&mut tensor, TENSOR_EXTERNAL_DATA, &entry);
        }
        put_uint(&mut tensor, TENSOR_DATA_LOCATION, EXTERNAL);
        let mut graph = Vec::new();
        put_bytes(&mut graph, GRAPH_INITIALIZER, &tensor);
        let mut model = Vec::new();
        put_uint(&mut model, 1, 8);
        put_bytes(&mut model, MODEL_GRAPH, &graph);
        model
    }

    #[cfg(unix)]
    #[test]
    fn linked_external_data_is_named_where_it_really_is() {
        let root = std::env::temp_dir().join(format!("easel-external-{}", std::process::id()));
        let (snapshot, blobs) = (root.join("snapshots/abc/unet"), root.join("blobs"));
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("f00d"), [0u8; 8]).unwrap();
        std::os::unix::fs::symlink(blobs.join("f00d"), snapshot.join("weights.pb")).unwrap();
        let (bytes, folder) = resolve_external_data(&model_with_external("weights.pb"), &snapshot).expect("a link is resolved");
        assert_eq!(folder, std::fs::canonicalize(&blobs).unwrap());
        assert_eq!(bytes, model_with_external("f00d"), "only the location changed");
        // A file that is where it is named needs nothing, and a missing one cannot be resolved.
        std::fs::write(snapshot.join("plain.pb"), [0u8; 8]).unwrap();
        assert!(resolve_external_data(&model_with_external("plain.pb"), &snapshot).is_none());
        assert!(resolve_external_data(&model_with_external("missing.pb"), &snapshot).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
