//! Owns how weights from a file reach ONNX Runtime ([`GraphWeights`]): read by ONNX Runtime from
//! the weights file itself wherever the graph can take the stored tensor (converted by nodes it
//! folds once), and otherwise packed into one in-memory "external data file" (ONNX Runtime's
//! `AddExternalInitializersFromFilesInMemory`): tensors a LoRA changes, and weights from files
//! that cannot be named to ONNX Runtime.
//!
//! Why the file itself: ONNX Runtime maps it and keeps only its own copy, so loading a checkpoint
//! holds one copy of the UNet, as loading an ONNX folder does. Handed over in memory, our buffer
//! and ONNX Runtime's copy exist together while the session is created (2x the UNet).
//!
//! Why not one external initializer per tensor: ONNX Runtime accepts those only over buffers the
//! caller owns and keeps, and the `ort` crate holds them for the session's life, so every weight
//! stayed in memory twice (ours, and the copies ONNX Runtime's optimisations make, e.g. the
//! NCHWc-reordered convolution weights). From an in-memory file, ONNX Runtime copies each tensor
//! into its own buffers, as when it reads an `.onnx` file; the file's bytes are dropped once the
//! session exists, so a loaded checkpoint costs what a loaded ONNX folder costs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::onnx_edit::{DataPlace, Placement};

/// The external data location the graph is pointed at (a name, never a file on disk).
pub const FILE_NAME: &str = "easel-weights.bin";

/// Tensors start at multiples of this many bytes in the buffer.
const ALIGN: usize = 64;

/// Bytes per element of a graph dtype (`float16` or `float32`).
fn element_size(dtype: &str) -> usize {
    if dtype == "float16" {
        2
    } else {
        4
    }
}

/// Bytes a tensor of `elements` elements of `dtype` takes in the buffer, alignment included.
pub fn packed_size(elements: usize, dtype: &str) -> usize {
    (elements * element_size(dtype)).div_ceil(ALIGN) * ALIGN
}

/// Tensors packed one after another, and where each is.
pub struct WeightsBuffer {
    bytes: Arc<[u8]>,
    filled: usize,
    places: HashMap<String, (u64, u64)>,
}

impl WeightsBuffer {
    /// An empty buffer of exactly `capacity` bytes (the sum of [`packed_size`] of every tensor to
    /// come), allocated once: it never grows, so it is never copied.
    pub fn with_capacity(capacity: usize) -> Self {
        // Collected from an exact-size iterator, the Arc is allocated once at its final size.
        let bytes: Arc<[u8]> = std::iter::repeat_n(0u8, capacity).collect();
        Self { bytes, filled: 0, places: HashMap::new() }
    }

    /// Appends the tensor `name`, from f32 values, in the graph's dtype.
    pub fn push(&mut self, name: &str, values: &[f32], dtype: &str) -> Result<(), String> {
        let size = values.len() * element_size(dtype);
        let start = self.filled;
        let end = start + packed_size(values.len(), dtype);
        let capacity = self.bytes.len();
        if end > capacity {
            return Err(format!("tensor {name} does not fit the {capacity}-byte weights buffer at {start}"));
        }
        let buffer = Arc::get_mut(&mut self.bytes).ok_or("the weights buffer is already shared")?;
        let slot = &mut buffer[start..start + size];
        if dtype == "float16" {
            for (chunk, v) in slot.chunks_exact_mut(2).zip(values) {
                chunk.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        } else {
            for (chunk, v) in slot.chunks_exact_mut(4).zip(values) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
        self.places.insert(name.to_string(), (start as u64, size as u64));
        self.filled = end;
        Ok(())
    }
}

/// The tensors of one graph that ONNX Runtime reads from a weights file on disk.
pub struct WeightsFile {
    /// The folder ONNX Runtime resolves each placement's `location` in (the file's real folder).
    pub folder: PathBuf,
    pub placements: HashMap<String, Placement>,
}

/// Where every initializer of one graph comes from.
pub struct GraphWeights {
    pub buffer: WeightsBuffer,
    pub file: Option<WeightsFile>,
}

impl From<WeightsBuffer> for GraphWeights {
    fn from(buffer: WeightsBuffer) -> Self {
        GraphWeights { buffer, file: None }
    }
}

/// What a session is created from: the graph with every initializer pointed at its place, the
/// bytes to hand to ONNX Runtime as the in-memory file [`FILE_NAME`] (none when they went into
/// the graph), and the folder it must resolve file locations in.
pub struct Attached {
    pub graph: Vec<u8>,
    pub buffer: Option<Arc<[u8]>>,
    pub folder: Option<PathBuf>,
}

impl GraphWeights {
    /// `graph` with every initializer pointed at its place (see [`Attached`]). With a weights
    /// file, the buffer's tensors are written into the graph: ONNX Runtime resolves every external
    /// location in its in-memory table once one is given, so the two cannot be mixed.
    pub fn attach(self, graph: &[u8]) -> Result<Attached, String> {
        let WeightsBuffer { bytes, places, .. } = self.buffer;
        let inline = self.file.is_some();
        let mut placements: HashMap<String, Placement> = places
            .into_iter()
            .map(|(name, (offset, length))| {
                let data = if inline {
                    DataPlace::Inline { offset: offset as usize, length: length as usize }
                } else {
                    DataPlace::External { location: FILE_NAME.to_string(), offset, length }
                };
                (name, Placement { data, source: None })
            })
            .collect();
        let folder = self.file.map(|file| {
            placements.extend(file.placements);
            file.folder
        });
        let located = super::onnx_edit::place_initializers(graph, &placements, &bytes).map_err(|e| e.to_string())?;
        let buffer = (!inline && !bytes.is_empty()).then_some(bytes);
        Ok(Attached { graph: located, buffer, folder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_packed_aligned_in_their_dtype_and_overflow_is_refused() {
        let mut buffer = WeightsBuffer::with_capacity(packed_size(3, "float32") + packed_size(2, "float16"));
        buffer.push("a", &[1.0, -2.0, 0.5], "float32").unwrap();
        buffer.push("b", &[1.0, 65504.0], "float16").unwrap();
        assert_eq!(buffer.places["a"], (0, 12));
        assert_eq!(buffer.places["b"], (64, 4));
        assert_eq!(&buffer.bytes[0..4], &1.0f32.to_le_bytes());
        assert_eq!(&buffer.bytes[64..66], &half::f16::from_f32(1.0).to_le_bytes());
        assert!(buffer.push("c", &[1.0], "float32").unwrap_err().contains("does not fit"));
    }
}
