//! Owns turning the `--device` and `--precision` settings into what ONNX Runtime does: which
//! execution providers the loaded library has (and why one is missing), registering the chosen
//! provider on each session, and resolving the precision a model runs at on a device.
//!
//! Precision is the precision of the graphs a model holds: an fp32 export runs fp32, an
//! `sdtool convert --fp16` export fp16, an `--quantize int8` export int8; checkpoints run through
//! fp32 templates. `auto` runs the model as it is on every device; asking for another precision
//! than the model's is refused with the command that makes such a copy, never silently changed.

use ort::ep::ExecutionProvider;

use super::runtime::{Runtime, ORT_FIX_COMMAND};
use crate::api::{Device, Precision};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    #[error("--device {device}: {reason}")]
    DeviceUnavailable { device: Device, reason: String },
    #[error("--precision {asked}: {reason}")]
    PrecisionUnavailable { asked: Precision, reason: String },
}

/// ONNX Runtime's name of the provider behind `device`.
pub fn provider_name(device: Device) -> &'static str {
    match device {
        Device::Cpu => ort::ep::CPU::NAME,
        Device::Cuda(_) => ort::ep::CUDA::NAME,
        Device::OpenVino => ort::ep::OpenVINO::NAME,
        Device::CoreMl => ort::ep::CoreML::NAME,
        Device::DirectMl => ort::ep::DirectML::NAME,
    }
}

/// What installs a build of ONNX Runtime that has `device`'s provider.
fn how_to_get(device: Device) -> String {
    match device {
        Device::Cpu => format!("reinstall ONNX Runtime with `{ORT_FIX_COMMAND}`"),
        Device::Cuda(_) => format!(
            "install the GPU build with `{ORT_FIX_COMMAND} --gpu` (the onnxruntime-gpu wheel and its CUDA 12 and cuDNN 9 wheels), \
             or point ORT_DYLIB_PATH at a CUDA build of ONNX Runtime"
        ),
        Device::OpenVino => "point ORT_DYLIB_PATH at an OpenVINO build of ONNX Runtime 1.31 or newer (the newest onnxruntime-openvino \
                             wheel on PyPI is older than the 1.31 API Easel needs)"
            .into(),
        Device::CoreMl => "Core ML is in the macOS build of ONNX Runtime; run Easel on macOS".into(),
        Device::DirectMl => "DirectML is in the onnxruntime-directml build for Windows; run Easel on Windows with it".into(),
    }
}

/// Whether the loaded library has `device`'s provider; `Err` says why not and how to get it.
pub fn check_device(runtime: &Runtime, device: Device) -> Result<(), ExecutionError> {
    let available = match device {
        Device::Cpu => ort::ep::CPU::is_available(),
        Device::Cuda(_) => ort::ep::CUDA::is_available(),
        Device::OpenVino => ort::ep::OpenVINO::is_available(),
        Device::CoreMl => ort::ep::CoreML::is_available(),
        Device::DirectMl => ort::ep::DirectML::is_available(),
    };
    match available {
        Ok(true) => Ok(()),
        Ok(false) => Err(ExecutionError::DeviceUnavailable {
            device,
            reason: format!(
                "the ONNX Runtime library at {} (version {}) has no {}; {}",
                runtime.library.display(),
                runtime.version,
                provider_name(device),
                how_to_get(device)
            ),
        }),
        Err(e) => Err(ExecutionError::DeviceUnavailable { device, reason: format!("could not list ONNX Runtime's providers: {e}") }),
    }
}

/// Every kind of device with whether this library has it (for `easel doctor`).
pub fn devices(runtime: &Runtime) -> Vec<(Device, Result<(), ExecutionError>)> {
    Device::KINDS.into_iter().map(|d| (d, check_device(runtime, d))).collect()
}

/// The session builder with `device`'s provider registered ahead of the CPU (which runs what
/// the provider does not take). Failing to register is an error, never a silent CPU fallback.
pub fn register(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
    threads: usize,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    let provider = match device {
        Device::Cpu => return Ok(builder),
        Device::Cuda(index) => ort::ep::CUDA::default().with_device_id(index as i32).build(),
        Device::OpenVino => ort::ep::OpenVINO::default().with_device_type("CPU").with_num_threads(threads).build(),
        Device::CoreMl => ort::ep::CoreML::default().build(),
        Device::DirectMl => ort::ep::DirectML::default().build(),
    };
    builder.with_execution_providers([provider.error_on_failure()]).map_err(ort::Error::from)
}

/// A session's creation error on `device` with what to do about it appended, for the failures a
/// user can fix: the GPU driver missing, or the CUDA libraries not where Easel put them.
pub fn explain_session_error(device: Device, message: String) -> String {
    if !matches!(device, Device::Cuda(_)) {
        return message;
    }
    if message.contains("libcuda.so") {
        format!("{message} (libcuda.so.1 comes with the NVIDIA driver: install the driver, or run with --device cpu)")
    } else if message.contains("libcudart") || message.contains("libcudnn") || message.contains("libcublas") {
        format!("{message} (the CUDA libraries are missing: run `{ORT_FIX_COMMAND} --gpu`)")
    } else {
        message
    }
}

/// The precision a model whose graphs are `model` runs at when `asked` is requested on `device`.
/// `model` is `None` when the graphs' precision could not be read (then only `auto` passes).
pub fn resolve_precision(asked: Precision, model: Option<Precision>, device: Device) -> Result<Precision, ExecutionError> {
    let refuse = |reason: String| Err(ExecutionError::PrecisionUnavailable { asked, reason });
    let Some(model) = model else {
        return match asked {
            Precision::Auto => Ok(Precision::Fp32),
            _ => refuse("the model's graph precision could not be read; use --precision auto".into()),
        };
    };
    if asked == Precision::Auto || asked == model {
        return match (model, device) {
            (Precision::Bf16, Device::Cpu | Device::Cuda(_)) => {
                refuse("bfloat16 graphs run through OpenVINO (--device openvino), which this build does not have".into())
            }
            _ => Ok(model),
        };
    }
    let fix = match asked {
        Precision::Fp32 => "export it without --fp16 or --quantize (`models/sdtool convert SRC DST`), or load its .safetensors checkpoint",
        Precision::Fp16 => "make a float16 copy with `models/sdtool convert SRC DST --fp16` (for GPUs; CPUs run float32 faster)",
        Precision::Int8 => "make an int8 copy with `models/sdtool convert SRC DST --quantize int8`",
        Precision::Bf16 => "bfloat16 needs the OpenVINO provider (--device openvino) with a CPU that has AVX512_BF16 or AMX",
        Precision::Auto => unreachable!("handled above"),
    };
    refuse(format!("this model's graphs are {model}; {fix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_runs_the_model_as_it_is_and_other_precisions_must_match() {
        assert_eq!(resolve_precision(Precision::Auto, Some(Precision::Fp32), Device::Cpu), Ok(Precision::Fp32));
        assert_eq!(resolve_precision(Precision::Auto, Some(Precision::Int8), Device::Cpu), Ok(Precision::Int8));
        assert_eq!(resolve_precision(Precision::Fp16, Some(Precision::Fp16), Device::Cuda(0)), Ok(Precision::Fp16));
        assert_eq!(resolve_precision(Precision::Auto, None, Device::Cpu), Ok(Precision::Fp32));
        let refused = resolve_precision(Precision::Int8, Some(Precision::Fp32), Device::Cpu).unwrap_err().to_string();
        assert!(refused.contains("--precision int8") && refused.contains("fp32") && refused.contains("--quantize int8"), "{refused}");
        let bf16 = resolve_precision(Precision::Bf16, Some(Precision::Fp32), Device::Cpu).unwrap_err().to_string();
        assert!(bf16.contains("OpenVINO"), "{bf16}");
        assert!(resolve_precision(Precision::Fp32, None, Device::Cpu).is_err());
    }

    #[test]
    fn a_missing_driver_is_named_as_such() {
        let driver = explain_session_error(Device::Cuda(0), "Failed to load library: libcuda.so.1: cannot open".into());
        assert!(driver.contains("NVIDIA driver"), "{driver}");
        let libraries = explain_session_error(Device::Cuda(0), "libcudnn.so.9: cannot open shared object file".into());
        assert!(libraries.contains("--gpu"), "{libraries}");
        assert_eq!(explain_session_error(Device::Cpu, "libcuda.so.1".into()), "libcuda.so.1");
    }

    #[test]
    fn every_device_names_its_provider() {
        let names: Vec<&str> = Device::KINDS.iter().map(|d| provider_name(*d)).collect();
        assert_eq!(
            names,
            [
                "CPUExecutionProvider",
                "CUDAExecutionProvider",
                "OpenVINOExecutionProvider",
                "CoreMLExecutionProvider",
                "DmlExecutionProvider"
            ]
        );
    }
}
