//! One ONNX sub-model (text encoder, UNet, VAE) behind a small typed interface.
//!
//! Exporters disagree on input types: `input_ids` int32 (diffusers script) or int64 (optimum);
//! `timestep` float32, float16 or int64, rank 0 or rank 1; fp16 models take and return float16
//! everywhere. This module reads each input's element type and rank from the session and converts
//! Easel's f32/i64 values to what the graph wants, and every float output back to f32, so the
//! pipeline never sees the difference.

use std::path::{Path, PathBuf};

use half::f16;
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::runtime::Runtime;
use super::EngineError;

/// A value to feed one input, before conversion to the input's declared type.
pub enum InputData<'a> {
    /// Float data (converted to float16 or float32 as declared).
    Float { shape: Vec<usize>, data: &'a [f32] },
    /// Integer data (converted to int32 or int64 as declared).
    Int { shape: Vec<usize>, data: &'a [i64] },
    /// One scalar timestep, shaped to the input's rank: `[]`, or `[batch]` (repeated).
    Timestep { value: f64, batch: usize },
}

/// What the session says about one input.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    pub element: TensorElementType,
    pub rank: usize,
    /// The declared dimensions (-1 where dynamic).
    pub dims: Vec<i64>,
}

pub struct OnnxModel {
    /// Which part of the pipeline this is, for error messages (`"unet"`, ...).
    pub role: &'static str,
    pub path: PathBuf,
    session: Session,
    inputs: Vec<InputSpec>,
    output_names: Vec<String>,
    /// Attention blocks fused into `MultiHeadAttention` when the session was created (UNet).
    pub fused_attention: usize,
}

/// ONNX Runtime's session option naming the folder external data locations are resolved in when
/// a graph is loaded from memory.
const EXTERNAL_DATA_FOLDER: &str = "session.model_external_initializers_file_folder_path";

/// Where the graph of a session comes from.
pub enum GraphBytes<'a> {
    /// The file at the model's path (external data beside it is read by ONNX Runtime).
    File,
    Memory(&'a [u8]),
}

impl OnnxModel {
    /// Creates the session. External data files next to `model.onnx` are read from disk by ONNX Runtime.
    pub fn load(runtime: &Runtime, role: &'static str, path: &Path, threads: usize) -> Result<Self, EngineError> {
        Self::create(runtime, role, path, threads, |mut builder| builder.commit_from_file(path))
    }

    /// Creates a session from a graph (a template compiled into the binary, or an edited copy of
    /// a model; `path` names it in messages) whose weights come from `weights`: the graph's
    /// initializers are pointed at their places in the weights file (ONNX Runtime reads it) or in
    /// the buffer, handed over as an in-memory external data file (ONNX Runtime copies from it,
    /// and the buffer is freed with the builder once the session exists). Nothing is written to
    /// disk.
    pub fn load_with_weights(
        runtime: &Runtime,
        role: &'static str,
        path: &Path,
        graph: GraphBytes<'_>,
        weights: super::weights_buffer::GraphWeights,
        threads: usize,
    ) -> Result<Self, EngineError> {
        let fail = |message: String| EngineError::LoadSession { path: path.to_path_buf(), message };
        let read;
        let graph = match graph {
            GraphBytes::File => {
                read = std::fs::read(path).map_err(|e| EngineError::ReadFile { path: path.to_path_buf(), message: e.to_string() })?;
                &read[..]
            }
            GraphBytes::Memory(bytes) => bytes,
        };
        let super::weights_buffer::Attached { graph, buffer, folder } = weights.attach(graph).map_err(fail)?;
        Self::create(runtime, role, path, threads, |mut builder| {
            if let Some(folder) = folder {
                let folder = folder.to_str().ok_or_else(|| ort::Error::new(format!("the folder {} is not UTF-8", folder.display())))?;
                builder = builder.with_config_entry(EXTERNAL_DATA_FOLDER, folder)?;
            }
            if let Some(buffer) = buffer {
                builder = builder.with_external_initializer_file_in_memory(super::weights_buffer::FILE_NAME, buffer)?;
            }
            builder.commit_from_memory(&graph)
        })
    }

    /// Creates the session from a graph held in memory (an edited copy of the model at `path`,
    /// which names it in messages); external data files are read from beside `path`.
    pub fn load_from_memory(runtime: &Runtime, role: &'static str, path: &Path, bytes: &[u8], threads: usize) -> Result<Self, EngineError> {
        Self::load_from_memory_in(runtime, role, path, bytes, threads, path.parent().unwrap_or(Path::new("")))
    }

    /// [`OnnxModel::load_from_memory`] with external data files read from `folder`.
    pub fn load_from_memory_in(
        runtime: &Runtime,
        role: &'static str,
        path: &Path,
        bytes: &[u8],
        threads: usize,
        folder: &Path,
    ) -> Result<Self, EngineError> {
        Self::create(runtime, role, path, threads, |mut builder| {
            if let Some(folder) = folder.to_str().filter(|f| !f.is_empty()) {
                builder = builder.with_config_entry(EXTERNAL_DATA_FOLDER, folder)?;
            }
            builder.commit_from_memory(bytes)
        })
    }

    fn create(
        runtime: &Runtime,
        role: &'static str,
        path: &Path,
        threads: usize,
        commit: impl FnOnce(ort::session::builder::SessionBuilder) -> ort::Result<Session>,
    ) -> Result<Self, EngineError> {
        let device = runtime.execution().0;
        let fail = |e: &dyn std::fmt::Display| EngineError::LoadSession {
            path: path.to_path_buf(),
            message: super::execution::explain_session_error(device, e.to_string()),
        };
        let builder = Session::builder(&runtime.environment)
            .map_err(|e| fail(&e))?
            .with_intra_threads(threads)
            .map_err(|e| fail(&e))?
            .with_inter_threads(1)
            .map_err(|e| fail(&e))?;
        let builder = super::execution::register(builder, device, threads).map_err(|e| fail(&e))?;
        // No memory pattern: ONNX Runtime's pre-planned buffers per input shape cost more peak
        // memory than they save time (SD 1.5 at 512²: low-memory peak 4.02 -> 3.87 GB, warm 5.93 ->
        // 5.82 GB, UNet calls unchanged; docs/benchmarks.md).
        let builder = builder.with_memory_pattern(false).map_err(|e| fail(&e))?;
        let session = commit(builder).map_err(|e| fail(&e))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|input| match input.dtype() {
                ValueType::Tensor { ty, shape, .. } => {
                    Ok(InputSpec { name: input.name().to_string(), element: *ty, rank: shape.len(), dims: shape.iter().copied().collect() })
                }
                other => Err(EngineError::UnexpectedModelIo {
                    model: role,
                    message: format!("input {} is a {other:?}, not a tensor", input.name()),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output_names = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(Self { role, path: path.to_path_buf(), session, inputs, output_names, fused_attention: 0 })
    }

    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// The input called `name`, or else the input at `position` (exporters rename inputs).
    pub fn input(&self, name: &str, position: usize) -> Result<&InputSpec, EngineError> {
        self.inputs.iter().find(|i| i.name == name).or_else(|| self.inputs.get(position)).ok_or_else(|| EngineError::UnexpectedModelIo {
            model: self.role,
            message: format!("no input {name:?} (has {})", self.describe_inputs()),
        })
    }

    /// The output called `name`, or else the first output.
    pub fn output_name(&self, name: &str) -> Result<String, EngineError> {
        self.output_names
            .iter()
            .find(|n| *n == name)
            .or_else(|| self.output_names.first())
            .cloned()
            .ok_or_else(|| EngineError::UnexpectedModelIo { model: self.role, message: "the model has no outputs".into() })
    }

    fn describe_inputs(&self) -> String {
        self.inputs.iter().map(|i| format!("{}: {:?} rank {}", i.name, i.element, i.rank)).collect::<Vec<_>>().join(", ")
    }

    fn tensor(&self, spec: &InputSpec, data: InputData<'_>) -> Result<DynValue, EngineError> {
        let bad = |message: String| EngineError::UnexpectedModelIo { model: self.role, message };
        let ort_err = |e: ort::Error| EngineError::Inference { model: self.role, message: e.to_string() };
        let (shape, floats, ints): (Vec<usize>, Option<Vec<f64>>, Option<&[i64]>) = match data {
            InputData::Float { shape, data } => {
                return match spec.element {
                    TensorElementType::Float32 => {
                        Tensor::from_array((shape, data.to_vec())).map(|t| t.upcast().into_dyn()).map_err(ort_err)
                    }
                    TensorElementType::Float16 => {
                        let halves: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
                        Tensor::from_array((shape, halves)).map(|t| t.upcast().into_dyn()).map_err(ort_err)
                    }
                    other => Err(bad(format!("input {} is {other:?}, expected float32 or float16", spec.name))),
                };
            }
            InputData::Int { shape, data } => (shape, None, Some(data)),
            InputData::Timestep { value, batch } => {
                let shape = match spec.rank {
                    0 => vec![],
                    1 => vec![batch],
                    r => return Err(bad(format!("timestep input {} has rank {r}, expected 0 or 1", spec.name))),
                };
                let n = shape.iter().product::<usize>().max(1);
                (shape, Some(vec![value; n]), None)
            }
        };
        match (spec.element, floats, ints) {
            (TensorElementType::Float32, Some(v), _) => {
                Tensor::from_array((shape, v.iter().map(|&x| x as f32).collect::<Vec<_>>())).map(|t| t.upcast().into_dyn())
            }
            (TensorElementType::Float16, Some(v), _) => {
                Tensor::from_array((shape, v.iter().map(|&x| f16::from_f64(x)).collect::<Vec<_>>())).map(|t| t.upcast().into_dyn())
            }
            // An int64 timestep input truncates a fractional timestep, as numpy's cast does in diffusers.
            (TensorElementType::Int64, Some(v), _) => {
                Tensor::from_array((shape, v.iter().map(|&x| x as i64).collect::<Vec<_>>())).map(|t| t.upcast().into_dyn())
            }
            (TensorElementType::Int64, None, Some(v)) => Tensor::from_array((shape, v.to_vec())).map(|t| t.upcast().into_dyn()),
            (TensorElementType::Int32, None, Some(v)) => {
                Tensor::from_array((shape, v.iter().map(|&x| x as i32).collect::<Vec<_>>())).map(|t| t.upcast().into_dyn())
            }
            (other, _, _) => return Err(bad(format!("input {} has unsupported type {other:?}", spec.name))),
        }
        .map_err(ort_err)
    }

    /// Runs the model on `(input name, data)` pairs and returns the named output as f32 with its shape.
    pub fn run(&mut self, inputs: Vec<(&InputSpec, InputData<'_>)>, output: &str) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let role = self.role;
        let values = inputs
            .into_iter()
            .map(|(spec, data)| Ok((spec.name.clone(), self.tensor(spec, data)?)))
            .collect::<Result<Vec<(String, DynValue)>, EngineError>>()?;
        let output = self.output_name(output)?;
        let ort_err = |e: ort::Error| EngineError::Inference { model: role, message: e.to_string() };
        let outputs = self.session.run(values).map_err(ort_err)?;
        let value = &outputs[output.as_str()];
        let shape_of = |s: &ort::value::Shape| s.iter().map(|&d| d.max(0) as usize).collect::<Vec<usize>>();
        if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
            return Ok((shape_of(shape), data.to_vec()));
        }
        let (shape, data) = value.try_extract_tensor::<f16>().map_err(ort_err)?;
        Ok((shape_of(shape), data.iter().map(|x| x.to_f32()).collect()))
    }
}

/// Clones an input spec so callers can hold it while borrowing the model mutably.
pub fn spec(model: &OnnxModel, name: &str, position: usize) -> Result<InputSpec, EngineError> {
    model.input(name, position).cloned()
}
