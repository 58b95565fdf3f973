//! Finding and loading the ONNX Runtime shared library, and the one ort `Environment` per process.
//!
//! Easel never downloads ONNX Runtime at build time (`ort` is built with `load-dynamic`). The library
//! comes from the official `onnxruntime` wheel, extracted by `scripts/setup-onnxruntime.sh` into the
//! user cache dir. At run time it is searched, in order, at `ORT_DYLIB_PATH`, next to the executable,
//! then in the user cache dir ([`search_locations`]). For `--device cuda` the CUDA build that
//! `scripts/setup-onnxruntime.sh --gpu` puts in [`gpu_dir`] comes first; NVIDIA's libraries beside
//! it are found through `LD_LIBRARY_PATH`, which the command line sets by re-executing itself
//! ([`cuda_library_path`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use super::execution::ExecutionError;
use crate::api::{Device, Precision};

/// The ONNX Runtime release Easel is built and tested against (ort `api-31`).
pub const ORT_VERSION: &str = "1.31.1";
/// Minimum minor version ort's `api-31` accepts.
const ORT_MIN_MINOR: u32 = 31;
/// The command that installs the library, quoted in every error about it.
pub const ORT_FIX_COMMAND: &str = "scripts/setup-onnxruntime.sh";

#[cfg(target_os = "linux")]
const LIB_FILE: &str = "libonnxruntime.so";
#[cfg(target_os = "macos")]
const LIB_FILE: &str = "libonnxruntime.dylib";
#[cfg(target_os = "windows")]
const LIB_FILE: &str = "onnxruntime.dll";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found (looked at: {}); install it with `{ORT_FIX_COMMAND}` or set ORT_DYLIB_PATH to libonnxruntime",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound { searched: Vec<PathBuf> },
    #[error("ORT_DYLIB_PATH={path} does not exist; unset it or point it at libonnxruntime {ORT_VERSION} (install: `{ORT_FIX_COMMAND}`)")]
    EnvPathMissing { path: PathBuf },
    #[error("could not load the ONNX Runtime library at {path}: {message}; reinstall it with `{ORT_FIX_COMMAND}`")]
    Load { path: PathBuf, message: String },
    #[error(
        "the ONNX Runtime library at {path} is version {found}, Easel needs {ORT_VERSION} or newer; install it with `{ORT_FIX_COMMAND}`"
    )]
    WrongVersion { path: PathBuf, found: String },
    #[error("could not create the ONNX Runtime environment: {0}")]
    Environment(String),
}

/// A loaded ONNX Runtime: the library path, its version, the process-wide environment, and
/// where (device) and at what precision this process runs models.
pub struct Runtime {
    pub library: PathBuf,
    pub version: String,
    pub environment: ort::environment::Environment,
    execution: RwLock<(Device, Precision)>,
}

impl Runtime {
    /// Chooses the device and precision every session created from now on uses; refused with
    /// the reason and the fix when this library lacks the device's provider.
    pub fn set_execution(&self, device: Device, precision: Precision) -> Result<(), ExecutionError> {
        super::execution::check_device(self, device)?;
        *self.execution.write().unwrap_or_else(|p| p.into_inner()) = (device, precision);
        Ok(())
    }

    /// The device and precision chosen (CPU and `auto` until [`Runtime::set_execution`]).
    pub fn execution(&self) -> (Device, Precision) {
        *self.execution.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the library is looked for, in order, with the variable's value when set.
pub fn search_locations() -> Vec<PathBuf> {
    search_locations_for(Device::Cpu)
}

/// [`search_locations`] for `device`: the CUDA build first when it is a CUDA device.
pub fn search_locations_for(device: Device) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        places.push(PathBuf::from(p));
    }
    if matches!(device, Device::Cuda(_)) {
        places.push(gpu_dir().join(versioned_file_name()));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        places.push(dir.join(LIB_FILE));
        places.push(dir.join(versioned_file_name()));
    }
    places.push(cache_dir().join(versioned_file_name()));
    places
}

/// The folder the setup script extracts the library into: `<user cache>/easel/onnxruntime`.
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("easel").join("onnxruntime")
}

/// The folder `scripts/setup-onnxruntime.sh --gpu` extracts the CUDA build of ONNX Runtime and
/// NVIDIA's CUDA and cuDNN libraries into: `<user cache>/easel/onnxruntime-gpu`.
pub fn gpu_dir() -> PathBuf {
    cache_dir().with_file_name("onnxruntime-gpu")
}

/// `LD_LIBRARY_PATH` with [`gpu_dir`] in front, when `device` is a CUDA device, the folder holds
/// the CUDA build and the variable does not already name it; `None` otherwise. The CUDA provider
/// links `libcudart.so.13` and cuDNN opens its parts by name, and the dynamic loader reads the
/// variable only when a process starts, so the command line re-executes itself with it.
pub fn cuda_library_path(device: Device) -> Option<std::ffi::OsString> {
    let dir = gpu_dir();
    if !matches!(device, Device::Cuda(_)) || !dir.join(versioned_file_name()).is_file() {
        return None;
    }
    let current = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    if std::env::split_paths(&current).any(|p| p == dir) {
        return None;
    }
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&current).filter(|p| !p.as_os_str().is_empty()))).ok()
}

fn versioned_file_name() -> String {
    if cfg!(target_os = "macos") {
        format!("libonnxruntime.{ORT_VERSION}.dylib")
    } else if cfg!(target_os = "windows") {
        LIB_FILE.to_string()
    } else {
        format!("{LIB_FILE}.{ORT_VERSION}")
    }
}

/// The first existing library file in [`search_locations`]. An `ORT_DYLIB_PATH` that names a
/// missing file is an error rather than silently skipped: the user asked for that file.
pub fn find_library() -> Result<PathBuf, RuntimeError> {
    find_library_for(Device::Cpu)
}

fn find_library_for(device: Device) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(RuntimeError::EnvPathMissing { path: p }) };
    }
    let searched = search_locations_for(device);
    searched.iter().find(|p| p.is_file()).cloned().ok_or(RuntimeError::NotFound { searched })
}

/// The library's version, read from its real file name (`libonnxruntime.so.1.31.1`,
/// `libonnxruntime.1.31.1.dylib`) after following symlinks. ort itself has already refused any
/// release older than 1.31 when loading, so this is for reporting, not for safety.
fn version_from_file_name(library: &Path) -> Option<String> {
    let real = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_path_buf());
    let name = real.file_name()?.to_str()?;
    let digits: Vec<&str> = name.split('.').filter(|part| part.parse::<u32>().is_ok()).collect();
    (digits.len() >= 2).then(|| digits.join("."))
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Loads the library and builds the environment once per process; later calls return the same one.
/// ONNX Runtime allows one environment per process, so the result is kept for the process lifetime.
pub fn runtime() -> Result<&'static Runtime, RuntimeError> {
    runtime_for(Device::Cpu)
}

/// [`runtime`], loading the build that runs `device` when this is the first call (the CUDA build
/// for a CUDA device). Entry points call this with the configured device before anything else
/// loads the library.
pub fn runtime_for(device: Device) -> Result<&'static Runtime, RuntimeError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let library = find_library_for(device)?;
    let builder = ort::init_from(&library).map_err(|e| match e {
        ort::LoadDynamicError::BadVersion { version_str, path } => RuntimeError::WrongVersion { path, found: version_str },
        other => RuntimeError::Load { path: library.clone(), message: other.to_string() },
    })?;
    let version = version_from_file_name(&library).unwrap_or_else(|| format!("1.{ORT_MIN_MINOR} or newer"));
    let environment = builder.with_name("easel").build().map_err(|e| RuntimeError::Environment(e.to_string()))?;
    Ok(RUNTIME.get_or_init(|| Runtime { library, version, environment, execution: RwLock::new(Default::default()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_file_name() {
        assert_eq!(version_from_file_name(Path::new("/x/libonnxruntime.so.1.31.1")).as_deref(), Some("1.31.1"));
        assert_eq!(version_from_file_name(Path::new("/x/libonnxruntime.1.32.0.dylib")).as_deref(), Some("1.32.0"));
        assert_eq!(version_from_file_name(Path::new("/x/libonnxruntime.so")), None);
    }

    #[test]
    fn missing_library_error_names_places_and_fix() {
        let err = RuntimeError::NotFound { searched: vec![PathBuf::from("/a/libonnxruntime.so")] };
        let msg = err.to_string();
        assert!(msg.contains("/a/libonnxruntime.so") && msg.contains(ORT_FIX_COMMAND), "{msg}");
    }
}
