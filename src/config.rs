//! Effective settings of one Easel process and where each value came from.
//!
//! Precedence, lowest first: built-in defaults < `easel.toml` (in the data dir, or the file given by
//! `--config`) < `EASEL_*` environment variables < command-line flags. Every layer is a
//! [`SettingsLayer`] of optional values; [`Settings::resolve`] folds them in that order. Nothing here
//! reads the process environment directly, so the precedence rules are unit-testable.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{Device, Precision};

/// Name of the configuration file looked up in the data dir.
pub const CONFIG_FILE_NAME: &str = "easel.toml";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Jobs that may wait in the queue when `--max-queue` is not given.
pub const DEFAULT_MAX_QUEUE: u32 = 1000;
/// Seconds a stopping server waits when `--shutdown-timeout` is not given.
pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 10;

/// One layer of settings: every value optional, so a layer only overrides what it names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    /// Port of ComfyUI's API (off when absent).
    pub comfyui_port: Option<u16>,
    pub models_dir: Option<PathBuf>,
    /// Read-only model folders of other tools (an A1111 or ComfyUI install, or its `models`
    /// folder), searched after the models dir.
    pub extra_models_dirs: Option<Vec<PathBuf>>,
    /// Host names (besides IP addresses and `localhost`) browsers may reach the server by, such
    /// as a reverse proxy's; see `server::origin_guard`.
    pub allowed_hosts: Option<Vec<String>>,
    pub outputs_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// Bearer token required on every request when set (`EASEL_API_TOKEN`).
    pub api_token: Option<String>,
    /// Serve a non-loopback address without a token (the operator's explicit choice).
    pub insecure_no_auth: Option<bool>,
    /// Model used when a request names none (a choice made in the UI or with
    /// `easel models default` is stored in the data dir and wins over this).
    pub default_model: Option<String>,
    /// How many models keep their sessions loaded at once (1 frees the previous model on a switch).
    pub resident_models: Option<usize>,
    /// Load each sub-model only while it runs (lower peak memory, slower jobs).
    pub low_memory: Option<bool>,
    /// ONNX Runtime's execution provider (`cpu`, `cuda[:N]`, `openvino`, `coreml`, `directml`).
    pub device: Option<Device>,
    /// Numeric precision the models run at (`auto`, `fp32`, `bf16`, `fp16`, `int8`).
    pub precision: Option<Precision>,
    /// Largest picture (pixels) a generation may make; derived from the memory when absent.
    pub max_pixels: Option<u64>,
    /// Most jobs waiting in the queue; more submissions get 503.
    pub max_queue: Option<u32>,
    /// Seconds a stopping server waits for the running step and open requests.
    pub shutdown_timeout: Option<u64>,
    /// The Hugging Face hub cache (from `HF_HUB_CACHE` / `HF_HOME`, as Python tools use).
    pub hub_cache: Option<PathBuf>,
    /// The hub to pull from (`HF_ENDPOINT`).
    pub hub_endpoint: Option<String>,
    /// Hub access token (`HF_TOKEN`); never shown.
    pub hub_token: Option<String>,
}

/// The settings a process runs with, after all layers are applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub host: IpAddr,
    /// Port the HTTP server binds (0 picks a free one).
    pub port: u16,
    /// Port ComfyUI's API is served on, on the same address; `None`: not served.
    pub comfyui_port: Option<u16>,
    /// Folder scanned for models in the diffusers ONNX layout.
    pub models_dir: PathBuf,
    /// Other tools' model folders (A1111 or ComfyUI layout, detected), read-only.
    pub extra_models_dirs: Vec<PathBuf>,
    /// Host names besides IP addresses and `localhost` that requests may name.
    pub allowed_hosts: Vec<String>,
    /// Folder generated images are written to.
    pub outputs_dir: PathBuf,
    /// Folder for Easel's own state (job database, config file).
    pub data_dir: PathBuf,
    /// Intra-op threads for ONNX Runtime.
    pub threads: usize,
    /// `tracing` filter directive, e.g. `info` or `easel=debug,tower_http=info`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Bearer token clients must send; never shown by `/api/v1/config`.
    #[serde(skip_serializing)]
    pub api_token: Option<String>,
    pub insecure_no_auth: bool,
    pub default_model: Option<String>,
    pub resident_models: usize,
    pub low_memory: bool,
    /// Where the models run (see `engine::execution`).
    pub device: Device,
    /// The precision asked for; `auto` resolves per model and device (see `engine::execution`).
    pub precision: Precision,
    /// Largest picture a generation may make, in pixels (`None`: derived from the memory and
    /// the model, see `service::admission`).
    pub max_pixels: Option<u64>,
    /// Most jobs waiting in the queue.
    pub max_queue: u32,
    /// Seconds a stopping server (SIGTERM, Ctrl-C) waits for the running step and open requests
    /// before it exits anyway; the running job is handed back either way.
    pub shutdown_timeout_s: u64,
    pub hub_cache: PathBuf,
    pub hub_endpoint: String,
    #[serde(skip_serializing)]
    pub hub_token: Option<String>,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error(
        "api_token in {path} is empty, which would let any request that sends an empty token in; set a secret there, or \
         remove the line for no token (loopback only)"
    )]
    EmptyToken { path: PathBuf },
    #[error("environment variable {name}={value:?} is not valid: {expected}")]
    BadEnv { name: String, value: String, expected: String },
    #[error("threads must be at least 1 (got 0); leave it unset to use every core")]
    ZeroThreads,
    #[error("resident_models must be at least 1 (got 0)")]
    ZeroResidentModels,
    #[error("max_queue must be at least 1 (got 0); leave it unset for {}", DEFAULT_MAX_QUEUE)]
    ZeroMaxQueue,
    #[error("max_pixels must be at least 4096 (64x64; got {0}); leave it unset to derive it from the memory")]
    TinyMaxPixels(u64),
    #[error("binding {host} exposes Easel to the network without authentication; set EASEL_API_TOKEN, or pass --insecure-no-auth if that is really what you want")]
    UnprotectedPublicBind { host: IpAddr },
}

impl SettingsLayer {
    /// Values from `EASEL_*` variables; `lookup` is `std::env::var` in production.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parsed<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &str,
            expected: &str,
        ) -> Result<Option<T>, ConfigError> {
            match lookup(name) {
                None => Ok(None),
                Some(value) if value.is_empty() => Ok(None),
                Some(value) => value.trim().parse().map(Some).map_err(|_| ConfigError::BadEnv {
                    name: name.to_string(),
                    value,
                    expected: expected.to_string(),
                }),
            }
        }
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let log_format = match lookup("EASEL_LOG_FORMAT").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(match v.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError::BadEnv { name: "EASEL_LOG_FORMAT".into(), value: v, expected: "text or json".into() }),
            }),
        };
        Ok(Self {
            host: parsed(&lookup, "EASEL_HOST", "an IP address such as 127.0.0.1")?,
            port: parsed(&lookup, "EASEL_PORT", "a port number 0..65535")?,
            comfyui_port: parsed(&lookup, "EASEL_COMFYUI_PORT", "a port number 0..65535")?,
            models_dir: path("EASEL_MODELS_DIR"),
            extra_models_dirs: lookup("EASEL_EXTRA_MODELS_DIRS")
                .filter(|v| !v.is_empty())
                .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect()),
            allowed_hosts: lookup("EASEL_ALLOWED_HOSTS")
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect()),
            outputs_dir: path("EASEL_OUTPUTS_DIR"),
            data_dir: path("EASEL_DATA_DIR"),
            threads: parsed(&lookup, "EASEL_THREADS", "a whole number of threads")?,
            log_level: lookup("EASEL_LOG_LEVEL").filter(|v| !v.is_empty()),
            log_format,
            api_token: lookup("EASEL_API_TOKEN").filter(|v| !v.is_empty()),
            insecure_no_auth: None,
            default_model: lookup("EASEL_DEFAULT_MODEL").filter(|v| !v.is_empty()),
            resident_models: parsed(&lookup, "EASEL_RESIDENT_MODELS", "a whole number of models, at least 1")?,
            low_memory: parsed(&lookup, "EASEL_LOW_MEMORY", "true or false")?,
            device: parsed(&lookup, "EASEL_DEVICE", "cpu, cuda, cuda:N, openvino, coreml or directml")?,
            precision: parsed(&lookup, "EASEL_PRECISION", "auto, fp32, bf16, fp16 or int8")?,
            max_pixels: parsed(&lookup, "EASEL_MAX_PIXELS", "a whole number of pixels, such as 1048576")?,
            max_queue: parsed(&lookup, "EASEL_MAX_QUEUE", "a whole number of jobs, at least 1")?,
            shutdown_timeout: parsed(&lookup, "EASEL_SHUTDOWN_TIMEOUT", "a whole number of seconds")?,
            // Only when the user pointed somewhere: otherwise `hub_cache` in easel.toml may set it.
            hub_cache: crate::hub::HubCache::set_in_env(&lookup).map(|c| c.root().to_path_buf()),
            hub_endpoint: crate::hub::client::env_endpoint(&lookup),
            hub_token: crate::hub::client::env_token(&lookup),
        })
    }

    /// Values from a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile { path: path.to_path_buf(), message: e.message().to_string() })
    }

    /// `self` with every value that `over` sets replaced by it.
    fn overlaid(self, over: SettingsLayer) -> SettingsLayer {
        SettingsLayer {
            host: over.host.or(self.host),
            port: over.port.or(self.port),
            comfyui_port: over.comfyui_port.or(self.comfyui_port),
            models_dir: over.models_dir.or(self.models_dir),
            extra_models_dirs: over.extra_models_dirs.or(self.extra_models_dirs),
            allowed_hosts: over.allowed_hosts.or(self.allowed_hosts),
            outputs_dir: over.outputs_dir.or(self.outputs_dir),
            data_dir: over.data_dir.or(self.data_dir),
            threads: over.threads.or(self.threads),
            log_level: over.log_level.or(self.log_level),
            log_format: over.log_format.or(self.log_format),
            api_token: over.api_token.or(self.api_token),
            insecure_no_auth: over.insecure_no_auth.or(self.insecure_no_auth),
            default_model: over.default_model.or(self.default_model),
            resident_models: over.resident_models.or(self.resident_models),
            low_memory: over.low_memory.or(self.low_memory),
            device: over.device.or(self.device),
            precision: over.precision.or(self.precision),
            max_pixels: over.max_pixels.or(self.max_pixels),
            max_queue: over.max_queue.or(self.max_queue),
            shutdown_timeout: over.shutdown_timeout.or(self.shutdown_timeout),
            hub_cache: over.hub_cache.or(self.hub_cache),
            hub_endpoint: over.hub_endpoint.or(self.hub_endpoint),
            hub_token: over.hub_token.or(self.hub_token),
        }
    }
}

/// Where the data dir is when nothing sets it: the platform's data dir (`~/.local/share/easel` on
/// Linux), or `./easel-data` when the platform has none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map(|d| d.join("easel")).unwrap_or_else(|| PathBuf::from("easel-data"))
}

/// `./models` when the current directory has one (a checkout of the repository), otherwise
/// `<data dir>/models`, so an installed `easel` works from any directory.
pub fn default_models_dir(data_dir: &Path) -> PathBuf {
    let local = PathBuf::from("models");
    if local.is_dir() {
        local
    } else {
        data_dir.join("models")
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Settings {
    /// Folds the layers in precedence order. The config file is `config_file` when given (it must
    /// exist), otherwise `easel.toml` in the data dir chosen by env/flags/default (read if present).
    pub fn resolve(env: SettingsLayer, flags: SettingsLayer, config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let (file_layer, file_used) = match config_file {
            Some(path) => (SettingsLayer::from_toml_file(path)?, Some(path.to_path_buf())),
            None => {
                let data_dir = flags.data_dir.clone().or_else(|| env.data_dir.clone()).unwrap_or_else(default_data_dir);
                let candidate = data_dir.join(CONFIG_FILE_NAME);
                if candidate.is_file() {
                    (SettingsLayer::from_toml_file(&candidate)?, Some(candidate))
                } else {
                    (SettingsLayer::default(), None)
                }
            }
        };
        if let (Some(token), Some(path)) = (&file_layer.api_token, &file_used) {
            if token.trim().is_empty() {
                return Err(ConfigError::EmptyToken { path: path.clone() });
            }
        }
        let merged = file_layer.overlaid(env).overlaid(flags);
        let data_dir = merged.data_dir.unwrap_or_else(default_data_dir);
        let threads = merged.threads.unwrap_or_else(default_threads);
        if threads == 0 {
            return Err(ConfigError::ZeroThreads);
        }
        let resident_models = merged.resident_models.unwrap_or(1);
        if resident_models == 0 {
            return Err(ConfigError::ZeroResidentModels);
        }
        let max_queue = merged.max_queue.unwrap_or(DEFAULT_MAX_QUEUE);
        if max_queue == 0 {
            return Err(ConfigError::ZeroMaxQueue);
        }
        if let Some(max) = merged.max_pixels.filter(|m| *m < 64 * 64) {
            return Err(ConfigError::TinyMaxPixels(max));
        }
        let host = merged.host.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let insecure_no_auth = merged.insecure_no_auth.unwrap_or(false);
        if !host.is_loopback() && merged.api_token.is_none() && !insecure_no_auth {
            return Err(ConfigError::UnprotectedPublicBind { host });
        }
        Ok(Settings {
            host,
            port: merged.port.unwrap_or(3000),
            comfyui_port: merged.comfyui_port,
            models_dir: merged.models_dir.unwrap_or_else(|| default_models_dir(&data_dir)),
            extra_models_dirs: merged.extra_models_dirs.unwrap_or_default(),
            allowed_hosts: merged.allowed_hosts.unwrap_or_default(),
            outputs_dir: merged.outputs_dir.unwrap_or_else(|| data_dir.join("outputs")),
            data_dir,
            threads,
            log_level: merged.log_level.unwrap_or_else(|| "info".to_string()),
            log_format: merged.log_format.unwrap_or_default(),
            api_token: merged.api_token,
            insecure_no_auth,
            default_model: merged.default_model,
            resident_models,
            low_memory: merged.low_memory.unwrap_or(false),
            device: merged.device.unwrap_or_default(),
            precision: merged.precision.unwrap_or_default(),
            max_pixels: merged.max_pixels,
            max_queue,
            shutdown_timeout_s: merged.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_S),
            hub_cache: merged.hub_cache.unwrap_or_else(|| crate::hub::HubCache::from_env(|_| None).root().to_path_buf()),
            hub_endpoint: merged.hub_endpoint.unwrap_or_else(|| crate::hub::client::DEFAULT_ENDPOINT.to_string()),
            hub_token: merged.hub_token,
            config_file: file_used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> SettingsLayer {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SettingsLayer::from_env(|k| map.get(k).cloned()).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("easel-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let data = temp_dir("defaults");
        let flags = SettingsLayer { data_dir: Some(data.clone()), ..Default::default() };
        let s = Settings::resolve(SettingsLayer::default(), flags, None).unwrap();
        assert_eq!(s.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.port, 3000);
        assert_eq!(s.models_dir, PathBuf::from("models"), "tests run in the checkout, which has ./models");
        assert_eq!(default_models_dir(Path::new("/nonexistent-data")), PathBuf::from("models"));
        assert_eq!(s.outputs_dir, data.join("outputs"));
        assert_eq!(s.log_level, "info");
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(s.threads >= 1);
        assert_eq!(s.config_file, None);
    }

    #[test]
    fn file_overrides_defaults_env_overrides_file_flags_override_env() {
        let data = temp_dir("precedence");
        std::fs::write(data.join(CONFIG_FILE_NAME), "port = 4000\nthreads = 3\nlog_level = \"debug\"\nhost = \"0.0.0.0\"\n").unwrap();
        let env = env_of(&[
            ("EASEL_PORT", "5000"),
            ("EASEL_THREADS", "5"),
            ("EASEL_DATA_DIR", data.to_str().unwrap()),
            ("EASEL_API_TOKEN", "secret"),
        ]);
        let flags = SettingsLayer { port: Some(6000), ..Default::default() };
        let s = Settings::resolve(env, flags, None).unwrap();
        assert_eq!(s.port, 6000, "flag beats env and file");
        assert_eq!(s.threads, 5, "env beats file");
        assert_eq!(s.log_level, "debug", "file beats default");
        assert_eq!(s.host, IpAddr::from([0, 0, 0, 0]), "file beats default");
        assert_eq!(s.config_file, Some(data.join(CONFIG_FILE_NAME)));
    }

    #[test]
    fn explicit_config_file_is_used_and_must_exist() {
        let dir = temp_dir("explicit");
        let file = dir.join("other.toml");
        std::fs::write(&file, "log_format = \"json\"\n").unwrap();
        let s = Settings::resolve(SettingsLayer::default(), SettingsLayer::default(), Some(&file)).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        let missing = dir.join("missing.toml");
        let err = Settings::resolve(SettingsLayer::default(), SettingsLayer::default(), Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn unknown_key_in_file_is_an_error_naming_the_file() {
        let dir = temp_dir("unknown");
        let file = dir.join("easel.toml");
        std::fs::write(&file, "prot = 1\n").unwrap();
        let err = Settings::resolve(SettingsLayer::default(), SettingsLayer::default(), Some(&file)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("easel.toml") && msg.contains("prot"), "{msg}");
    }

    #[test]
    fn an_empty_token_in_the_file_is_refused_and_an_empty_variable_means_none() {
        let dir = temp_dir("empty-token");
        let file = dir.join("easel.toml");
        std::fs::write(&file, "api_token = \"  \"\n").unwrap();
        let err = Settings::resolve(SettingsLayer::default(), SettingsLayer::default(), Some(&file)).unwrap_err();
        assert!(matches!(err, ConfigError::EmptyToken { .. }) && err.to_string().contains("easel.toml"), "{err}");
        let env = SettingsLayer::from_env(|k| (k == "EASEL_API_TOKEN").then(String::new)).unwrap();
        assert_eq!(env.api_token, None);
    }

    #[test]
    fn bad_env_value_names_variable_and_value() {
        let err = SettingsLayer::from_env(|k| (k == "EASEL_PORT").then(|| "70000".to_string())).unwrap_err();
        assert_eq!(err.to_string(), "environment variable EASEL_PORT=\"70000\" is not valid: a port number 0..65535");
        let err = SettingsLayer::from_env(|k| (k == "EASEL_LOG_FORMAT").then(|| "xml".to_string())).unwrap_err();
        assert!(err.to_string().contains("text or json"));
    }

    #[test]
    fn public_bind_needs_a_token_or_an_explicit_opt_out() {
        let public = |token: Option<&str>, insecure: Option<bool>| SettingsLayer {
            host: Some(IpAddr::from([0, 0, 0, 0])),
            data_dir: Some(temp_dir("public")),
            api_token: token.map(str::to_string),
            insecure_no_auth: insecure,
            ..Default::default()
        };
        let err = Settings::resolve(SettingsLayer::default(), public(None, None), None).unwrap_err();
        assert!(err.to_string().contains("EASEL_API_TOKEN"), "{err}");
        assert!(Settings::resolve(SettingsLayer::default(), public(Some("t"), None), None).is_ok());
        assert!(Settings::resolve(SettingsLayer::default(), public(None, Some(true)), None).is_ok());
        let shown =
            serde_json::to_string(&Settings::resolve(SettingsLayer::default(), public(Some("t0ken"), None), None).unwrap()).unwrap();
        assert!(!shown.contains("t0ken"), "the token is never serialized");
        let hub = SettingsLayer { hub_token: Some("hf_s3cret".into()), ..public(Some("t"), None) };
        let shown = serde_json::to_string(&Settings::resolve(SettingsLayer::default(), hub, None).unwrap()).unwrap();
        assert!(!shown.contains("hf_s3cret"), "the hub token is never serialized");
    }

    #[test]
    fn hub_cache_comes_from_hf_variables_else_the_file_else_the_default() {
        let data = temp_dir("hubcache");
        std::fs::write(data.join(CONFIG_FILE_NAME), "hub_cache = \"/from/file\"\n").unwrap();
        let flags = || SettingsLayer { data_dir: Some(data.clone()), ..Default::default() };
        let s = Settings::resolve(env_of(&[]), flags(), None).unwrap();
        assert_eq!(s.hub_cache, PathBuf::from("/from/file"));
        let s = Settings::resolve(env_of(&[("HF_HOME", "/hf")]), flags(), None).unwrap();
        assert_eq!(s.hub_cache, PathBuf::from("/hf/hub"));
        let s = Settings::resolve(env_of(&[("EASEL_LOW_MEMORY", "true")]), flags(), None).unwrap();
        assert!(s.low_memory);
    }

    #[test]
    fn zero_threads_is_rejected() {
        let flags = SettingsLayer { threads: Some(0), data_dir: Some(temp_dir("zero")), ..Default::default() };
        assert!(matches!(Settings::resolve(SettingsLayer::default(), flags, None), Err(ConfigError::ZeroThreads)));
    }
}
