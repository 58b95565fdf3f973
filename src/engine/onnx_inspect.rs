//! Reads what a model list needs from an ONNX file without loading it: the element type of the
//! graph inputs and the operator types, by walking the protobuf and seeking past weights. Used to
//! tell fp32, fp16 and int8 exports apart for models that carry no `easel-model.json`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// What was found in the graph.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GraphSummary {
    /// `(input name, ONNX element type)`; 1 = float32, 10 = float16, 16 = bfloat16.
    pub inputs: Vec<(String, i64)>,
    pub op_types: std::collections::BTreeSet<String>,
}

impl GraphSummary {
    /// `int8` when the graph has integer-quantised operators, otherwise the element type of
    /// `input` (`float16`, `float32`), or `unknown`.
    pub fn precision(&self, input: &str) -> &'static str {
        const QUANTIZED: [&str; 6] =
            ["MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulNBits"];
        if QUANTIZED.iter().any(|op| self.op_types.contains(*op)) {
            return "int8";
        }
        match self.inputs.iter().find(|(name, _)| name == input).map(|(_, t)| *t) {
            Some(1) => "float32",
            Some(10) => "float16",
            Some(16) => "bfloat16",
            _ => "unknown",
        }
    }
}

const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INPUT: u64 = 11;
const NODE_OP_TYPE: u64 = 4;
const VALUE_NAME: u64 = 1;
const VALUE_TYPE: u64 = 2;
const TYPE_TENSOR: u64 = 1;
const TENSOR_ELEM_TYPE: u64 = 1;
/// Nodes and inputs are small; anything bigger is not what we are looking for.
const MAX_SMALL_MESSAGE: u64 = 1 << 20;

pub fn summarize(path: &Path) -> std::io::Result<GraphSummary> {
    let mut reader = BufReader::new(File::open(path)?);
    let end = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let mut summary = GraphSummary::default();
    while reader.stream_position()? < end {
        let (field, wire) = read_key(&mut reader)?;
        if field == MODEL_GRAPH && wire == 2 {
            let len = read_varint(&mut reader)?;
            let graph_end = reader.stream_position()? + len;
            read_graph(&mut reader, graph_end, &mut summary)?;
            break;
        }
        skip(&mut reader, wire)?;
    }
    Ok(summary)
}

fn read_graph(reader: &mut BufReader<File>, end: u64, summary: &mut GraphSummary) -> std::io::Result<()> {
    while reader.stream_position()? < end {
        let (field, wire) = read_key(reader)?;
        if wire == 2 && (field == GRAPH_NODE || field == GRAPH_INPUT) {
            let len = read_varint(reader)?;
            if len > MAX_SMALL_MESSAGE {
                reader.seek_relative(len as i64)?;
                continue;
            }
            let mut bytes = vec![0u8; len as usize];
            reader.read_exact(&mut bytes)?;
            if field == GRAPH_NODE {
                if let Some(op) = string_field(&bytes, NODE_OP_TYPE) {
                    summary.op_types.insert(op);
                }
            } else if let Some(name) = string_field(&bytes, VALUE_NAME) {
                let elem = message_field(&bytes, VALUE_TYPE)
                    .and_then(|t| message_field(t, TYPE_TENSOR))
                    .and_then(|t| varint_field(t, TENSOR_ELEM_TYPE))
                    .unwrap_or(0);
                summary.inputs.push((name, elem as i64));
            }
        } else {
            skip(reader, wire)?;
        }
    }
    Ok(())
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an ONNX protobuf: {what}"))
}

pub(crate) fn read_varint(reader: &mut impl Read) -> std::io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8];
        reader.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("varint too long"))
}

fn read_key(reader: &mut impl Read) -> std::io::Result<(u64, u8)> {
    let key = read_varint(reader)?;
    Ok((key >> 3, (key & 7) as u8))
}

fn skip(reader: &mut BufReader<File>, wire: u8) -> std::io::Result<()> {
    match wire {
        0 => read_varint(reader).map(|_| ()),
        1 => reader.seek_relative(8),
        2 => {
            let len = read_varint(reader)?;
            reader.seek_relative(len as i64)
        }
        5 => reader.seek_relative(4),
        other => Err(invalid(&format!("wire type {other}"))),
    }
}

/// The fields of an in-memory message: `(field, wire type, payload)` where the payload of a
/// varint is its encoding and that of a length-delimited field is its bytes.
pub(crate) fn fields(mut bytes: &[u8]) -> impl Iterator<Item = (u64, u8, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let (field, wire) = read_key(&mut bytes).ok()?;
        let payload: &[u8];
        match wire {
            0 => {
                let start = bytes;
                read_varint(&mut bytes).ok()?;
                payload = &start[..start.len() - bytes.len()];
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                (payload, bytes) = bytes.split_at_checked(n)?;
            }
            2 => {
                let len = usize::try_from(read_varint(&mut bytes).ok()?).ok()?;
                (payload, bytes) = bytes.split_at_checked(len)?;
            }
            _ => return None,
        }
        Some((field, wire, payload))
    })
}

fn message_field(bytes: &[u8], wanted: u64) -> Option<&[u8]> {
    fields(bytes).find(|(f, w, _)| *f == wanted && *w == 2).map(|(_, _, p)| p)
}

fn string_field(bytes: &[u8], wanted: u64) -> Option<String> {
    message_field(bytes, wanted).map(|p| String::from_utf8_lossy(p).into_owned())
}

fn varint_field(bytes: &[u8], wanted: u64) -> Option<u64> {
    fields(bytes).find(|(f, w, _)| *f == wanted && *w == 0).and_then(|(_, _, mut p)| read_varint(&mut p).ok())
}

const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_DIMS: u64 = 1;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_FLOAT_DATA: u64 = 4;
const TENSOR_NAME: u64 = 8;
const TENSOR_RAW_DATA: u64 = 9;
const TENSOR_EXTERNAL_DATA: u64 = 13;

/// One initializer's values as f32, with its dims and ONNX element type (1 float32, 10 float16).
pub struct InitializerValues {
    pub dims: Vec<usize>,
    pub element: i64,
    pub values: Vec<f32>,
}

/// The values of the initializers named in `wanted`, from the ONNX file at `path` (inline raw
/// data, `float_data`, or an external data file beside it, bounds-checked). Float32, float16 and
/// bfloat16 only; others are an error naming the initializer.
pub fn initializer_values(
    path: &Path,
    wanted: &std::collections::HashSet<&str>,
) -> Result<std::collections::HashMap<String, InitializerValues>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let graph = message_field(&bytes, MODEL_GRAPH).ok_or("the file has no graph")?;
    let mut found = std::collections::HashMap::new();
    for (_, _, tensor) in fields(graph).filter(|(f, w, _)| *f == GRAPH_INITIALIZER && *w == 2) {
        let Some(name) = string_field(tensor, TENSOR_NAME) else { continue };
        if !wanted.contains(name.as_str()) {
            continue;
        }
        let mut dims = Vec::new();
        let mut float_data = Vec::new();
        let (mut raw, mut external) = (None, Vec::new());
        for (field, wire, mut payload) in fields(tensor) {
            match (field, wire) {
                (TENSOR_DIMS, 0) => dims.push(read_varint(&mut payload).unwrap_or(0) as usize),
                (TENSOR_DIMS, 2) => {
                    while let Ok(d) = read_varint(&mut payload) {
                        dims.push(d as usize);
                    }
                }
                (TENSOR_FLOAT_DATA, 5) => float_data.push(f32::from_le_bytes(payload.try_into().unwrap_or([0; 4]))),
                (TENSOR_FLOAT_DATA, 2) => float_data.extend(payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
                (TENSOR_RAW_DATA, 2) => raw = Some(payload.to_vec()),
                (TENSOR_EXTERNAL_DATA, 2) => {
                    if let (Some(k), Some(v)) = (string_field(payload, 1), string_field(payload, 2)) {
                        external.push((k, v));
                    }
                }
                _ => {}
            }
        }
        let element = varint_field(tensor, TENSOR_DATA_TYPE).unwrap_or(0) as i64;
        let count: usize = dims.iter().product();
        let width = match element {
            1 => 4,
            10 | 16 => 2,
            other => return Err(format!("initializer {name} has element type {other}; only float weights can be patched")),
        };
        let raw = match (raw, external.is_empty()) {
            (Some(raw), _) => Some(raw),
            (None, false) => {
                let get = |key: &str| external.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                let location = get("location").ok_or_else(|| format!("initializer {name}: external data without a location"))?;
                if location.contains("..") || Path::new(&location).is_absolute() {
                    return Err(format!("initializer {name}: external data location {location:?} leaves the model folder"));
                }
                let offset: u64 = get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                let length = (count * width) as u64;
                let file = path.parent().unwrap_or(Path::new(".")).join(&location);
                let mut f = File::open(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let size = f.metadata().map_err(|e| e.to_string())?.len();
                if offset.checked_add(length).is_none_or(|end| end > size) {
                    return Err(format!("initializer {name}: {length} bytes at {offset} are past the end of {}", file.display()));
                }
                f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; length as usize];
                f.read_exact(&mut buf).map_err(|e| e.to_string())?;
                Some(buf)
            }
            (None, true) => None,
        };
        let values: Vec<f32> = match (raw, element) {
            (Some(raw), 1) => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            (Some(raw), 10) => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            (Some(raw), _) => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            (None, _) => float_data,
        };
        if values.len() != count {
            return Err(format!("initializer {name} holds {} values for dims {dims:?}", values.len()));
        }
        found.insert(name, InitializerValues { dims, element, values });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tiny_unet_inputs_and_ops() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/unet/model.onnx");
        let summary = summarize(&path).unwrap();
        let names: Vec<&str> = summary.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sample", "timestep", "encoder_hidden_states"]);
        assert_eq!(summary.precision("sample"), "float32");
        assert!(summary.op_types.contains("Conv"), "{:?}", summary.op_types);
    }

    #[test]
    fn quantized_ops_mean_int8() {
        let mut summary = GraphSummary::default();
        summary.inputs.push(("sample".into(), 10));
        assert_eq!(summary.precision("sample"), "float16");
        summary.op_types.insert("MatMulInteger".into());
        assert_eq!(summary.precision("sample"), "int8");
    }
}
