//! Owns fusing a UNet's attention into ONNX Runtime's `MultiHeadAttention` when its session is
//! created: the exported form of `scaled_dot_product_attention` (per-head Reshape and Transpose
//! of Q, K and V, the scale split over Q and K, MatMul, Softmax, MatMul, Transpose, Reshape)
//! becomes one `com.microsoft.MultiHeadAttention` over the same Q, K and V projections. The CPU
//! kernel never holds the `[heads, positions, positions]` score matrix, so a 512x512 UNet call
//! needs 2.4 GB less and runs faster (docs/benchmarks.md), and 1024x1024 fits at all; the
//! result differs from the unfused graph by about 6e-6.
//!
//! Only the attention core changes: every weight keeps its name (LoRAs and checkpoint templates
//! address weights by name), the projections stay as they are, and nodes only the old core used
//! are dropped. A graph without the pattern (another exporter's attention) is left alone.

use std::collections::{HashMap, HashSet};

use super::onnx_edit::{parse_node, put_bytes, put_field, put_uint, Node};
use super::onnx_inspect::{fields, read_varint};

const MODEL_OPSET_IMPORT: u64 = 8;
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_OUTPUT: u64 = 12;
const GRAPH_VALUE_INFO: u64 = 13;
const NODE_INPUT: u64 = 1;
const NODE_OUTPUT: u64 = 2;
const NODE_NAME: u64 = 3;
const NODE_OP_TYPE: u64 = 4;
const NODE_ATTRIBUTE: u64 = 5;
const NODE_DOMAIN: u64 = 7;
const ATTRIBUTE_NAME: u64 = 1;
const ATTRIBUTE_I: u64 = 3;
const ATTRIBUTE_T: u64 = 5;
const ATTRIBUTE_INTS: u64 = 8;
const ATTRIBUTE_TYPE: u64 = 20;
const ATTRIBUTE_TYPE_INT: u64 = 2;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_INT64_DATA: u64 = 7;
const TENSOR_NAME: u64 = 8;
const TENSOR_RAW_DATA: u64 = 9;
const INT64: u64 = 7;
const VALUE_NAME: u64 = 1;
const CONTRIB_DOMAIN: &str = "com.microsoft";

/// Whether UNet attention is fused: yes, unless `EASEL_FUSED_ATTENTION=0` (for measuring the
/// difference, and as a way out should an execution provider lack the fused operator).
pub fn enabled() -> bool {
    std::env::var("EASEL_FUSED_ATTENTION").map_or(true, |v| v.trim() != "0")
}

/// The graph with its attention fused, and how many attention blocks were.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedGraph {
    pub bytes: Vec<u8>,
    pub fused: usize,
}

/// One attention core found in the graph: its Q, K, V projections, its output and head count,
/// and the node whose output the fused node takes over.
struct Core {
    query: String,
    key: String,
    value: String,
    output: String,
    heads: i64,
    last: usize,
}

/// The model with every exported attention core fused, or `None` when the graph has none (or
/// cannot be read as a model): then the original is used as it is.
pub fn fuse_attention(model: &[u8]) -> Option<FusedGraph> {
    let model_fields: Vec<(u64, u8, &[u8])> = fields(model).collect();
    let graph = model_fields.iter().find(|(f, w, _)| *f == MODEL_GRAPH && *w == 2).map(|(_, _, p)| *p)?;
    let graph_fields: Vec<(u64, u8, &[u8])> = fields(graph).collect();
    let nodes: Vec<Node<'_>> = graph_fields.iter().filter(|(f, w, _)| *f == GRAPH_NODE && *w == 2).map(|(_, _, p)| parse_node(p)).collect();
    let constants = int_constants(&graph_fields, &nodes);
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for output in &node.outputs {
            producer.insert(output.as_str(), i);
        }
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let finder = Finder { nodes: &nodes, producer: &producer, consumers: &consumers, constants: &constants };
    let cores: Vec<Core> = nodes.iter().enumerate().filter(|(_, n)| n.op == "Softmax").filter_map(|(i, _)| finder.core(i)).collect();
    if cores.is_empty() {
        return None;
    }

    // The fused node replaces each core's last node; then every node whose outputs nothing live
    // reads is dropped (one pass from the end: ONNX lists nodes in topological order).
    let replaced: HashMap<usize, Vec<u8>> = cores.iter().map(|c| (c.last, fused_node(c))).collect();
    let mut live: HashSet<String> =
        graph_fields.iter().filter(|(f, w, _)| *f == GRAPH_OUTPUT && *w == 2).filter_map(|(_, _, p)| value_name(p)).collect();
    let mut keep = vec![false; nodes.len()];
    for i in (0..nodes.len()).rev() {
        let inputs: Vec<String> = match replaced.get(&i) {
            Some(bytes) => parse_node(bytes).inputs,
            None => nodes[i].inputs.clone(),
        };
        if nodes[i].outputs.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(inputs.into_iter().filter(|n| !n.is_empty()));
        }
    }

    let mut new_graph = Vec::with_capacity(graph.len());
    let mut node_index = 0;
    for (field, wire, payload) in &graph_fields {
        match (*field, *wire) {
            (GRAPH_NODE, 2) => {
                if keep[node_index] {
                    match replaced.get(&node_index) {
                        Some(bytes) => put_bytes(&mut new_graph, GRAPH_NODE, bytes),
                        None => put_field(&mut new_graph, *field, *wire, payload),
                    }
                }
                node_index += 1;
            }
            // Shape hints of tensors no node produces any more are dropped with them.
            (GRAPH_VALUE_INFO, 2) if value_name(payload).is_none_or(|n| !live.contains(&n)) => {}
            _ => put_field(&mut new_graph, *field, *wire, payload),
        }
    }
    let mut bytes = Vec::with_capacity(model.len());
    let mut has_contrib = false;
    for (field, wire, payload) in &model_fields {
        if *field == MODEL_OPSET_IMPORT && *wire == 2 && opset_domain(payload) == CONTRIB_DOMAIN {
            has_contrib = true;
        }
    }
    for (field, wire, payload) in &model_fields {
        if *field == MODEL_GRAPH && *wire == 2 {
            put_bytes(&mut bytes, MODEL_GRAPH, &new_graph);
        } else {
            put_field(&mut bytes, *field, *wire, payload);
        }
    }
    if !has_contrib {
        let mut opset = Vec::new();
        put_bytes(&mut opset, 1, CONTRIB_DOMAIN.as_bytes());
        put_uint(&mut opset, 2, 1);
        put_bytes(&mut bytes, MODEL_OPSET_IMPORT, &opset);
    }
    Some(FusedGraph { bytes, fused: cores.len() })
}

struct Finder<'g, 'a> {
    nodes: &'g [Node<'a>],
    producer: &'g HashMap<&'g str, usize>,
    consumers: &'g HashMap<&'g str, Vec<usize>>,
    constants: &'g HashMap<String, Vec<i64>>,
}

impl Finder<'_, '_> {
    /// The node producing `tensor` when it is an `op`.
    fn made_by(&self, tensor: &str, op: &str) -> Option<usize> {
        self.producer.get(tensor).copied().filter(|&i| self.nodes[i].op == op)
    }

    /// The only node reading `tensor`, when it is an `op`.
    fn only_reader(&self, tensor: &str, op: &str) -> Option<usize> {
        match self.consumers.get(tensor).map(Vec::as_slice) {
            Some([one]) if self.nodes[*one].op == op => Some(*one),
            _ => None,
        }
    }

    /// `Transpose(Reshape(projection, [batch, -1, heads, head_size]), perm)`: the projection's
    /// tensor and the head count.
    fn split_heads(&self, tensor: &str, perm: &[i64]) -> Option<(String, i64)> {
        let transpose = self.made_by(tensor, "Transpose")?;
        if ints_attribute(self.nodes[transpose].raw, "perm")? != perm {
            return None;
        }
        let reshape = self.made_by(&self.nodes[transpose].inputs[0], "Reshape")?;
        let shape = &self.nodes[reshape].inputs[1];
        let heads = match self.constants.get(shape.as_str()) {
            Some(dims) if dims.len() == 4 => dims[2],
            _ => {
                let concat = self.made_by(shape, "Concat")?;
                let parts = &self.nodes[concat].inputs;
                match (parts.len(), self.constants.get(parts.get(2)?.as_str())) {
                    (4, Some(value)) if value.len() == 1 => value[0],
                    _ => return None,
                }
            }
        };
        (heads > 0).then(|| (self.nodes[reshape].inputs[0].clone(), heads))
    }

    /// The scaled head split of Q or K: `Mul(split, scale)` in either order.
    fn scaled_heads(&self, tensor: &str, perm: &[i64]) -> Option<(String, i64)> {
        let mul = self.made_by(tensor, "Mul")?;
        let inputs = &self.nodes[mul].inputs;
        inputs.iter().find_map(|t| self.split_heads(t, perm))
    }

    /// The attention core around the Softmax at `softmax`, if it is one.
    fn core(&self, softmax: usize) -> Option<Core> {
        let scores = self.made_by(&self.nodes[softmax].inputs[0], "MatMul")?;
        let [q, k] = &self.nodes[scores].inputs[..] else { return None };
        let (query, q_heads) = self.scaled_heads(q, &[0, 2, 1, 3])?;
        let (key, k_heads) = self.scaled_heads(k, &[0, 2, 3, 1])?;
        let mix = self.only_reader(&self.nodes[softmax].outputs[0], "MatMul")?;
        if self.nodes[mix].inputs[0] != self.nodes[softmax].outputs[0] {
            return None;
        }
        let (value, v_heads) = self.split_heads(&self.nodes[mix].inputs[1], &[0, 2, 1, 3])?;
        let merge = self.only_reader(&self.nodes[mix].outputs[0], "Transpose")?;
        if ints_attribute(self.nodes[merge].raw, "perm")? != [0, 2, 1, 3] {
            return None;
        }
        let last = self.only_reader(&self.nodes[merge].outputs[0], "Reshape")?;
        if q_heads != k_heads || q_heads != v_heads {
            return None;
        }
        Some(Core { query, key, value, output: self.nodes[last].outputs[0].clone(), heads: q_heads, last })
    }
}

/// `MultiHeadAttention(query, key, value)` with `num_heads`, writing the core's output.
fn fused_node(core: &Core) -> Vec<u8> {
    let mut node = Vec::new();
    for input in [&core.query, &core.key, &core.value] {
        put_bytes(&mut node, NODE_INPUT, input.as_bytes());
    }
    put_bytes(&mut node, NODE_OUTPUT, core.output.as_bytes());
    put_bytes(&mut node, NODE_NAME, format!("easel_attention_{}", core.output).as_bytes());
    put_bytes(&mut node, NODE_OP_TYPE, b"MultiHeadAttention");
    let mut heads = Vec::new();
    put_bytes(&mut heads, ATTRIBUTE_NAME, b"num_heads");
    put_uint(&mut heads, ATTRIBUTE_I, core.heads as u64);
    put_uint(&mut heads, ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT);
    put_bytes(&mut node, NODE_ATTRIBUTE, &heads);
    put_bytes(&mut node, NODE_DOMAIN, CONTRIB_DOMAIN.as_bytes());
    node
}

/// Every small int64 tensor the graph defines as a constant: `Constant` nodes and initializers.
fn int_constants(graph_fields: &[(u64, u8, &[u8])], nodes: &[Node<'_>]) -> HashMap<String, Vec<i64>> {
    let mut constants = HashMap::new();
    for (_, _, payload) in graph_fields.iter().filter(|(f, w, _)| *f == GRAPH_INITIALIZER && *w == 2) {
        if let Some((name, values)) = int64_tensor(payload) {
            constants.insert(name, values);
        }
    }
    for node in nodes.iter().filter(|n| n.op == "Constant" && n.outputs.len() == 1) {
        let value = attributes(node.raw)
            .find(|(name, _)| name == "value")
            .and_then(|(_, raw)| fields(raw).find(|(f, w, _)| *f == ATTRIBUTE_T && *w == 2).map(|(_, _, t)| t))
            .and_then(int64_tensor);
        if let Some((_, values)) = value {
            constants.insert(node.outputs[0].clone(), values);
        }
    }
    constants
}

/// The name and values of an int64 `TensorProto` of at most 8 values, read from `raw_data` or
/// `int64_data`.
fn int64_tensor(raw: &[u8]) -> Option<(String, Vec<i64>)> {
    let (mut name, mut element, mut values) = (String::new(), 0, Vec::new());
    for (field, wire, mut payload) in fields(raw) {
        match (field, wire) {
            (TENSOR_NAME, 2) => name = String::from_utf8_lossy(payload).into_owned(),
            (TENSOR_DATA_TYPE, 0) => element = read_varint(&mut payload).ok()?,
            (TENSOR_RAW_DATA, 2) if payload.len() <= 64 && payload.len() % 8 == 0 => {
                values.extend(payload.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))))
            }
            (TENSOR_INT64_DATA, 0) => values.push(read_varint(&mut payload).ok()? as i64),
            (TENSOR_INT64_DATA, 2) if payload.len() <= 80 => {
                while !payload.is_empty() {
                    values.push(read_varint(&mut payload).ok()? as i64);
                }
            }
            _ => {}
        }
    }
    (element == INT64 && !values.is_empty() && values.len() <= 8).then_some((name, values))
}

/// A node's attributes as (name, raw `AttributeProto`).
fn attributes(node: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    fields(node).filter(|(f, w, _)| *f == NODE_ATTRIBUTE && *w == 2).map(|(_, _, raw)| {
        let name = fields(raw)
            .find(|(f, w, _)| *f == ATTRIBUTE_NAME && *w == 2)
            .map(|(_, _, n)| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        (name, raw)
    })
}

/// The `ints` of the attribute `name` (packed or not).
fn ints_attribute(node: &[u8], name: &str) -> Option<Vec<i64>> {
    let (_, raw) = attributes(node).find(|(n, _)| n == name)?;
    let mut values = Vec::new();
    for (field, wire, mut payload) in fields(raw) {
        match (field, wire) {
            (ATTRIBUTE_INTS, 0) => values.push(read_varint(&mut payload).ok()? as i64),
            (ATTRIBUTE_INTS, 2) => {
                while !payload.is_empty() {
                    values.push(read_varint(&mut payload).ok()? as i64);
                }
            }
            _ => {}
        }
    }
    Some(values)
}

fn value_name(raw: &[u8]) -> Option<String> {
    fields(raw).find(|(f, w, _)| *f == VALUE_NAME && *w == 2).map(|(_, _, n)| String::from_utf8_lossy(n).into_owned())
}

fn opset_domain(raw: &[u8]) -> String {
    fields(raw).find(|(f, w, _)| *f == 1 && *w == 2).map(|(_, _, d)| String::from_utf8_lossy(d).into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_unet() -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/unet/model.onnx")).unwrap()
    }

    #[test]
    fn every_attention_of_the_tiny_unet_is_fused_and_no_score_matrix_is_left() {
        let original = tiny_unet();
        let fused = fuse_attention(&original).expect("the export's attention is found");
        // The tiny UNet has 16 transformer blocks, each with self- and cross-attention.
        assert_eq!(fused.fused, 32);
        let count = |bytes: &[u8], op: &str| {
            let model: Vec<_> = fields(bytes).collect();
            let graph = model.iter().find(|(f, _, _)| *f == MODEL_GRAPH).unwrap().2;
            fields(graph).filter(|(f, _, _)| *f == GRAPH_NODE).filter(|(_, _, p)| parse_node(p).op == op).count()
        };
        assert_eq!(count(&original, "Softmax"), 32);
        assert_eq!((count(&fused.bytes, "Softmax"), count(&fused.bytes, "MultiHeadAttention")), (0, 32));
        // Fusing twice finds nothing more.
        assert!(fuse_attention(&fused.bytes).is_none());
    }

    #[test]
    fn a_graph_without_the_pattern_is_left_alone() {
        let text_encoder =
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/text_encoder/model.onnx")).unwrap();
        // CLIP's attention is exported differently (causal mask, no split scale).
        assert!(fuse_attention(&text_encoder).is_none());
        assert!(fuse_attention(b"not a model").is_none());
    }
}
