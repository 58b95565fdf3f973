//! Owns reading and writing NumPy `.npy` files of float32 arrays: enough of the format
//! (versions 1.0 and 2.0, little-endian `<f4`, C order; `<f8` accepted on read and narrowed to
//! f32) to exchange reference tensors with the Python tooling and to dump engine tensors for
//! inspection. Format: numpy `doc/neps/nep-0001-npy-format.rst`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Errors reading or writing an `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an .npy file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path} holds dtype {descr}; only '<f4' and '<f8' can be read")]
    Dtype { path: PathBuf, descr: String },
    #[error("{path} is stored in Fortran order; only C order is supported")]
    FortranOrder { path: PathBuf },
    #[error("shape {shape:?} has {expected} elements but {actual} values were given")]
    ShapeMismatch { shape: Vec<usize>, expected: usize, actual: usize },
}

/// Reads a float32 (or float64, narrowed) C-order array: returns (shape, values).
pub fn read_f32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| NpyError::Io { path: path.into(), source })?;
    let format_error = |reason: &str| NpyError::Format { path: path.into(), reason: reason.into() };

    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(format_error("missing the \\x93NUMPY magic"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(format_error("truncated header length"));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => return Err(format_error(&format!("unknown format version {v}"))),
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(format_error("truncated header"));
    }
    let header = std::str::from_utf8(&bytes[header_start..data_start]).map_err(|_| format_error("header is not text"))?;

    let descr = header_value(header, "descr").and_then(parse_quoted).ok_or_else(|| format_error("header has no 'descr' string"))?;
    let fortran = header_value(header, "fortran_order").ok_or_else(|| format_error("no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(NpyError::FortranOrder { path: path.into() });
    }
    let shape = parse_shape(header_value(header, "shape").ok_or_else(|| format_error("no 'shape'"))?)
        .ok_or_else(|| format_error("unreadable 'shape'"))?;
    let count: usize = shape.iter().product();

    let payload = &bytes[data_start..];
    let values = match descr.as_str() {
        "<f4" => {
            if payload.len() != count * 4 {
                return Err(format_error("data length does not match the shape"));
            }
            payload.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        "<f8" => {
            if payload.len() != count * 8 {
                return Err(format_error("data length does not match the shape"));
            }
            payload.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32).collect()
        }
        _ => return Err(NpyError::Dtype { path: path.into(), descr }),
    };
    Ok((shape, values))
}

/// Writes `data` as a C-order `<f4` array of `shape` (format 1.0, or 2.0 for huge headers).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(NpyError::ShapeMismatch { shape: shape.to_vec(), expected, actual: data.len() });
    }
    let shape_text = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad with spaces and a final newline so the data starts on a 64-byte boundary.
    let (version, prefix) = if header.len() + 11 <= usize::from(u16::MAX) { (1u8, 10) } else { (2u8, 12) };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');

    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let io_error = |source| NpyError::Io { path: path.into(), source };
    let mut file = fs::File::create(path).map_err(io_error)?;
    file.write_all(&out).map_err(io_error)
}

/// The text after `'key':` in a header dict, up to the end of the header.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let start = quoted.iter().find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[start..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// The contents of the quoted string at the start of `text`.
fn parse_quoted(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &text[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

/// Parses `(2, 3)`, `(5,)` or `()` at the start of `text`.
fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.trim_end_matches('L').parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("easel-npy-{}-{name}", std::process::id()))
    }

    #[test]
    fn round_trips_shapes_and_values() {
        for shape in [vec![], vec![3], vec![2, 3], vec![1, 4, 2, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
            let path = temp_path(&format!("{}.npy", shape.len()));
            write_f32(&path, &shape, &data).expect("write");
            let bytes = fs::read(&path).expect("read back");
            let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            assert_eq!((10 + header_len) % 64, 0, "data is 64-byte aligned");
            let (read_shape, read_data) = read_f32(&path).expect("read");
            assert_eq!(read_shape, shape);
            assert_eq!(read_data, data);
            let _ = fs::remove_file(&path);
        }
    }

    #[test]
    fn reads_float64_as_float32() {
        // A hand-built version 1.0 file as numpy writes it: np.save(p, np.array([0.5, -2.0]))
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let mut padded = header.to_string();
        padded.push_str(&" ".repeat(128 - 10 - header.len() - 1));
        padded.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for v in [0.5f64, -2.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let path = temp_path("f8.npy");
        fs::write(&path, bytes).expect("write");
        assert_eq!(read_f32(&path).expect("read"), (vec![2], vec![0.5, -2.0]));
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn rejects_other_dtypes_and_bad_shapes() {
        assert!(matches!(write_f32(temp_path("bad.npy"), &[2, 2], &[1.0]), Err(NpyError::ShapeMismatch { expected: 4, actual: 1, .. })));
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&7i64.to_le_bytes());
        let path = temp_path("i8.npy");
        fs::write(&path, bytes).expect("write");
        let err = read_f32(&path).expect_err("int64 is refused");
        assert!(err.to_string().contains("<i8"), "{err}");
        let _ = fs::remove_file(&path);
    }
}
