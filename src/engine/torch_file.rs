//! Owns reading the tensors out of a PyTorch `torch.save` file (a ZIP archive holding a pickle
//! and raw storages) **without unpickling**: the pickle is read by a small interpreter that
//! builds plain values (dicts, lists, strings, numbers, tensors) and never calls anything. Only
//! the globals `torch.save` writes for tensors, parameters and ordered dicts are accepted; any
//! other global is refused by name. Every size is bounded.

use std::collections::HashMap;

/// Largest file read (textual-inversion embeddings are kilobytes to a few megabytes).
pub const MAX_FILE_BYTES: usize = 64 << 20;
const MAX_PICKLE_OPS: usize = 1 << 20;
const MAX_ITEMS: usize = 1 << 16;
const MAX_TENSOR_ELEMENTS: usize = 16 << 20;
/// Values (tensor elements included) the whole file may produce, memo copies counted: a small
/// pickle that references one value many times cannot make the reader build a huge one.
const MAX_VALUES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("not a PyTorch zip file ({0}); files saved by torch 1.6 or newer are zip archives")]
    NotZip(&'static str),
    #[error("the zip entry {0} is compressed; torch.save stores entries uncompressed")]
    Compressed(String),
    #[error("the pickle is damaged: {0}")]
    Pickle(String),
    #[error("the pickle uses {0}, which is not a tensor or a dict; Easel does not run pickled code, so it cannot read this file")]
    Refused(String),
    #[error("{0}")]
    Tensor(String),
}

/// A value of the pickle, as data.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Tensor(Tensor),
    /// A module-level name the pickle refers to (only allowed ones get here).
    Global(String),
    /// An object built from an allowed class, with its state (e.g. `ParameterDict.__dict__`).
    Object {
        class: String,
        state: Box<Value>,
    },
    /// A storage reference: dtype and the zip entry key.
    Storage {
        dtype: DType,
        key: String,
    },
}

impl Value {
    /// The value under string key `key` of a dict (or of an object's state dict).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v),
            Value::Object { state, .. } => state.get(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F64 => 8,
        }
    }
}

/// A tensor converted to float32, row-major.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Converts little-endian bytes of `dtype` to float32.
pub fn to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    bytes.chunks_exact(dtype.size()).map(|b| element_f32(b, dtype)).collect()
}

/// One little-endian element of `dtype` (`bytes` holds exactly one) as float32.
fn element_f32(b: &[u8], dtype: DType) -> f32 {
    match (dtype, b) {
        (DType::F32, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        (DType::F64, b) => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
        (DType::F16, &[a, b]) => half::f16::from_le_bytes([a, b]).to_f32(),
        (DType::BF16, &[a, b]) => half::bf16::from_le_bytes([a, b]).to_f32(),
        _ => f32::NAN,
    }
}

/// Reads a `torch.save` file: the unpickled top-level value with its tensors loaded.
pub fn read(bytes: &[u8]) -> Result<Value, TorchFileError> {
    let entries = zip_entries(bytes)?;
    let (pickle_name, pickle) =
        entries.iter().find(|(name, _)| name.ends_with("/data.pkl")).ok_or(TorchFileError::NotZip("no data.pkl entry"))?;
    let prefix = &pickle_name[..pickle_name.len() - "data.pkl".len()];
    let storages: HashMap<&str, &[u8]> =
        entries.iter().filter_map(|(name, data)| name.strip_prefix(prefix)?.strip_prefix("data/").map(|key| (key, *data))).collect();
    Unpickler { data: pickle, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), storages: &storages, budget: MAX_VALUES }
        .run()
}

/// The stored entries of a zip archive: (name, bytes).
fn zip_entries(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, TorchFileError> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if bytes.len() < 22 || u32_at(0) != Some(0x0403_4b50) {
        return Err(TorchFileError::NotZip("no zip header"));
    }
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..=bytes.len() - 22)
        .rev()
        .find(|&at| u32_at(at) == Some(0x0605_4b50))
        .ok_or(TorchFileError::NotZip("no end of central directory"))?;
    let count = u16_at(eocd + 10).ok_or(TorchFileError::NotZip("truncated"))?;
    let mut at = u32_at(eocd + 16).ok_or(TorchFileError::NotZip("truncated"))?;
    if count > MAX_ITEMS {
        return Err(TorchFileError::NotZip("too many entries"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let bad = TorchFileError::NotZip("damaged central directory");
        if u32_at(at) != Some(0x0201_4b50) {
            return Err(bad);
        }
        let (Some(method), Some(size), Some(name_len), Some(extra_len), Some(comment_len), Some(local)) =
            (u16_at(at + 10), u32_at(at + 20), u16_at(at + 28), u16_at(at + 30), u16_at(at + 32), u32_at(at + 42))
        else {
            return Err(bad);
        };
        let name = String::from_utf8_lossy(bytes.get(at + 46..at + 46 + name_len).ok_or(bad)?).into_owned();
        if method != 0 {
            return Err(TorchFileError::Compressed(name));
        }
        let bad = TorchFileError::NotZip("damaged local header");
        if u32_at(local) != Some(0x0403_4b50) {
            return Err(bad);
        }
        let (Some(local_name), Some(local_extra)) = (u16_at(local + 26), u16_at(local + 28)) else {
            return Err(bad);
        };
        let start = local + 30 + local_name + local_extra;
        let data = bytes.get(start..start + size).ok_or(bad)?;
        entries.push((name, data));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// Globals the interpreter accepts, and what each becomes.
const ALLOWED_GLOBALS: &[&str] = &[
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.nn.parameter.Parameter",
    "torch.nn.modules.container.ParameterDict",
    "collections.OrderedDict",
    "builtins.set",
    "__builtin__.set",
    "copyreg._reconstructor",
    "builtins.object",
    "__builtin__.object",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.DoubleStorage",
];

fn storage_dtype(name: &str) -> Option<DType> {
    match name {
        "torch.FloatStorage" => Some(DType::F32),
        "torch.HalfStorage" => Some(DType::F16),
        "torch.BFloat16Storage" => Some(DType::BF16),
        "torch.DoubleStorage" => Some(DType::F64),
        _ => None,
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    storages: &'a HashMap<&'a str, &'a [u8]>,
    /// Values still allowed (see [`MAX_VALUES`]).
    budget: usize,
}

/// How many values `value` holds, counting each tensor element; `None` above `limit`.
fn size_within(value: &Value, limit: usize) -> Option<usize> {
    let children: &[Value] = match value {
        Value::Tensor(t) => return (t.data.len() < limit).then_some(t.data.len() + 1),
        Value::Tuple(items) | Value::List(items) => items,
        Value::Dict(items) => {
            let mut total = 1;
            for (k, v) in items {
                total += size_within(k, limit.checked_sub(total)?)?;
                total += size_within(v, limit.checked_sub(total)?)?;
            }
            return (total <= limit).then_some(total);
        }
        Value::Object { state, .. } => return size_within(state, limit.checked_sub(1)?).map(|n| n + 1),
        _ => return (limit >= 1).then_some(1),
    };
    let mut total = 1;
    for item in children {
        total += size_within(item, limit.checked_sub(total)?)?;
    }
    (total <= limit).then_some(total)
}

fn damaged(what: impl Into<String>) -> TorchFileError {
    TorchFileError::Pickle(what.into())
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TorchFileError> {
        let out = self.data.get(self.pos..self.pos + n).ok_or_else(|| damaged("truncated"))?;
        self.pos += n;
        Ok(out)
    }

    fn uint(&mut self, n: usize) -> Result<usize, TorchFileError> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().rev().fold(0usize, |acc, &b| (acc << 8) | b as usize))
    }

    fn line(&mut self) -> Result<String, TorchFileError> {
        let end = self.data[self.pos..].iter().position(|&b| b == b'\n').ok_or_else(|| damaged("unterminated line"))?;
        let text = String::from_utf8_lossy(&self.data[self.pos..self.pos + end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value, TorchFileError> {
        self.stack.pop().ok_or_else(|| damaged("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, TorchFileError> {
        let mark = self.marks.pop().ok_or_else(|| damaged("no mark"))?;
        if mark > self.stack.len() {
            return Err(damaged("bad mark"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn push(&mut self, value: Value) -> Result<(), TorchFileError> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(damaged("too deep"));
        }
        self.spend(1)?;
        self.stack.push(value);
        Ok(())
    }

    fn spend(&mut self, values: usize) -> Result<(), TorchFileError> {
        self.budget = self.budget.checked_sub(values).ok_or_else(|| damaged("it builds more values than an embedding has"))?;
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), TorchFileError> {
        let full = format!("{module}.{name}");
        if !ALLOWED_GLOBALS.contains(&full.as_str()) {
            return Err(TorchFileError::Refused(full));
        }
        self.push(Value::Global(full))
    }

    fn run(mut self) -> Result<Value, TorchFileError> {
        for _ in 0..MAX_PICKLE_OPS {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.push(Value::Int(v))?
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| damaged("int"))?) as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.uint(1)?;
                    let bytes = self.take(n)?.to_vec();
                    if n > 8 {
                        return Err(damaged("integer too large"));
                    }
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= (b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().map_err(|_| damaged("float"))?);
                    self.push(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d | b'U' | b'T' => {
                    let n = match op {
                        0x8c | b'U' => self.uint(1)?,
                        0x8d => self.uint(8)?,
                        _ => self.uint(4)?,
                    };
                    let text = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(text))?
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => self.uint(1)?,
                        b'B' => self.uint(4)?,
                        _ => self.uint(8)?,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                // Sets (a module's `_non_persistent_buffers_set`) are read as lists.
                0x8f => self.push(Value::List(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(damaged("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = pairs(items)?;
                    self.push(Value::Dict(dict))?
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![(key, value)])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let items = pairs(items)?;
                    self.extend_dict(items)?
                }
                b'q' | b'r' | 0x94 => {
                    let index = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len(),
                    };
                    let top = self.stack.last().ok_or_else(|| damaged("memo of nothing"))?.clone();
                    if self.memo.len() >= MAX_ITEMS {
                        return Err(damaged("memo too large"));
                    }
                    self.memo.insert(index, top);
                }
                b'h' | b'j' => {
                    let index = if op == b'h' { self.uint(1)? } else { self.uint(4)? };
                    let value = self.memo.get(&index).ok_or_else(|| damaged("unknown memo entry"))?;
                    let size = size_within(value, self.budget).ok_or_else(|| damaged("it builds more values than an embedding has"))?;
                    let value = value.clone();
                    self.spend(size)?;
                    self.push(value)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(damaged("STACK_GLOBAL of non-strings"));
                    };
                    self.global(&module, &name)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent(pid)?;
                    self.push(storage)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    if let Value::Tensor(t) = &value {
                        self.spend(t.data.len())?;
                    }
                    self.push(value)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let object = self.pop()?;
                    let built = match object {
                        Value::Object { class, .. } => Value::Object { class, state: Box::new(state) },
                        // A tensor's BUILD sets Python attributes (hooks); the data is unchanged.
                        other => other,
                    };
                    self.push(built)?
                }
                other => return Err(damaged(format!("unsupported opcode 0x{other:02x}"))),
            }
        }
        Err(damaged("too many operations"))
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), TorchFileError> {
        match self.stack.last_mut() {
            Some(Value::List(list)) if list.len() + items.len() <= MAX_ITEMS => {
                list.extend(items);
                Ok(())
            }
            _ => Err(damaged("APPEND to a non-list")),
        }
    }

    fn extend_dict(&mut self, items: Vec<(Value, Value)>) -> Result<(), TorchFileError> {
        match self.stack.last_mut() {
            Some(Value::Dict(dict)) if dict.len() + items.len() <= MAX_ITEMS => {
                dict.extend(items);
                Ok(())
            }
            _ => Err(damaged("SETITEM on a non-dict")),
        }
    }

    /// `('storage', storage_type, key, location, numel)`.
    fn persistent(&self, pid: Value) -> Result<Value, TorchFileError> {
        let Value::Tuple(items) = pid else { return Err(damaged("persistent id is not a tuple")) };
        match items.as_slice() {
            [Value::Str(kind), Value::Global(class), Value::Str(key), _, _] if kind == "storage" => {
                let dtype = storage_dtype(class).ok_or_else(|| TorchFileError::Refused(class.clone()))?;
                Ok(Value::Storage { dtype, key: key.clone() })
            }
            _ => Err(damaged("unknown persistent id")),
        }
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, TorchFileError> {
        let Value::Global(name) = callable else { return Err(damaged("call of a non-global")) };
        let Value::Tuple(args) = args else { return Err(damaged("call arguments are not a tuple")) };
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" => self.rebuild_tensor(&args),
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" | "torch.nn.parameter.Parameter" => {
                args.into_iter().next().ok_or_else(|| damaged("parameter without data"))
            }
            "torch._tensor._rebuild_from_type_v2" => match args.as_slice() {
                [func, _, Value::Tuple(inner), ..] => self.reduce(func.clone(), Value::Tuple(inner.clone())),
                _ => Err(damaged("bad _rebuild_from_type_v2")),
            },
            "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
            "builtins.set" | "__builtin__.set" => Ok(args.into_iter().next().unwrap_or(Value::List(Vec::new()))),
            "copyreg._reconstructor" => match args.first() {
                Some(Value::Global(class)) => Ok(Value::Object { class: class.clone(), state: Box::new(Value::None) }),
                _ => Err(damaged("bad _reconstructor")),
            },
            "torch.nn.modules.container.ParameterDict" => Ok(Value::Object { class: name, state: Box::new(Value::None) }),
            other => Err(TorchFileError::Refused(format!("a call of {other}"))),
        }
    }

    /// `(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, TorchFileError> {
        let ints = |v: &Value| -> Result<Vec<usize>, TorchFileError> {
            match v {
                Value::Tuple(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::Int(n) if *n >= 0 => Ok(*n as usize),
                        _ => Err(damaged("bad tensor size")),
                    })
                    .collect(),
                _ => Err(damaged("bad tensor size")),
            }
        };
        let [Value::Storage { dtype, key }, Value::Int(offset), size, stride, ..] = args else {
            return Err(damaged("bad _rebuild_tensor_v2 arguments"));
        };
        let (shape, stride) = (ints(size)?, ints(stride)?);
        if shape.len() != stride.len() {
            return Err(damaged("size and stride differ in length"));
        }
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= MAX_TENSOR_ELEMENTS);
        let numel = numel.ok_or_else(|| TorchFileError::Tensor(format!("tensor of shape {shape:?} is too large")))?;
        let bytes = self.storages.get(key.as_str()).ok_or_else(|| damaged(format!("storage {key} is missing")))?;
        let width = dtype.size();
        let offset = usize::try_from(*offset).map_err(|_| damaged("negative storage offset"))?;
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; shape.len()];
        for _ in 0..numel {
            let at = index.iter().zip(&stride).try_fold(offset, |acc, (i, s)| acc.checked_add(i.checked_mul(*s)?));
            let element = at.and_then(|at| bytes.get(at.checked_mul(width)?..at.checked_mul(width)? + width));
            let element = element.ok_or_else(|| TorchFileError::Tensor(format!("tensor reads past storage {key}")))?;
            data.push(element_f32(element, *dtype));
            for d in (0..shape.len()).rev() {
                index[d] += 1;
                if index[d] < shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Value::Tensor(Tensor { shape, data }))
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, TorchFileError> {
    if !items.len().is_multiple_of(2) {
        return Err(damaged("odd number of dict items"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored (uncompressed) zip of `entries`, as torch.save writes them.
    fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let local = out.len() as u32;
            let header = |sig: u32, out: &mut Vec<u8>, central_fields: bool| {
                out.extend(sig.to_le_bytes());
                if central_fields {
                    out.extend(20u16.to_le_bytes());
                }
                out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method 0, time, date
                out.extend(0u32.to_le_bytes()); // crc (not checked)
                out.extend((data.len() as u32).to_le_bytes());
                out.extend((data.len() as u32).to_le_bytes());
                out.extend((name.len() as u16).to_le_bytes());
                out.extend(0u16.to_le_bytes());
            };
            header(0x0403_4b50, &mut out, false);
            out.extend(name.as_bytes());
            out.extend(*data);
            header(0x0201_4b50, &mut central, true);
            central.extend([0u8; 6]); // comment length, disk, internal attributes
            central.extend(0u32.to_le_bytes()); // external attributes
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let at = out.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_a_dict_of_a_tensor() {
        // {"w": _rebuild_tensor_v2(storage('storage', FloatStorage, '0', 'cpu', 2), 0, (2,), (1,), False, OrderedDict())}
        let mut p = vec![0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'w'];
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ");
        p.extend(b"K\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR");
        p.extend(b"u.");
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = stored_zip(&[("archive/data.pkl", &p), ("archive/data/0", &data)]);
        let value = read(&file).unwrap();
        let Some(Value::Tensor(t)) = value.get("w") else { panic!("{value:?}") };
        assert_eq!((t.shape.clone(), t.data.clone()), (vec![2], vec![1.5, -2.0]));
    }

    #[test]
    fn refuses_code_and_bounds_repetition() {
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.";
        let err = read(&stored_zip(&[("a/data.pkl", evil)])).unwrap_err().to_string();
        assert!(err.contains("os.system") && err.contains("does not run pickled code"), "{err}");
        // A list memoised, then a list of 60,000 copies of it, nested a few times: refused
        // before it grows, not built.
        let mut p = vec![0x80, 2, b']', b'(', b'K', 1];
        p.extend(std::iter::repeat_n(b'K', 1).chain([2]).cycle().take(2 * 30_000));
        p.extend(b"eq\x00");
        for _ in 0..4 {
            p.push(b']');
            p.push(b'(');
            p.extend(std::iter::repeat_n([b'h', 0], 30_000).flatten());
            p.extend(b"eq\x00");
        }
        p.push(b'.');
        let err = read(&stored_zip(&[("a/data.pkl", &p)])).unwrap_err().to_string();
        assert!(err.contains("more values"), "{err}");
        assert!(read(b"PK\x03\x04 not really").is_err());
    }
}
