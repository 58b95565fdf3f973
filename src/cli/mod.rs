//! The `easel` command line: argument parsing and the glue that starts each subcommand.
//! Every subcommand is a thin call into a module that could stand alone.

pub mod bench;
pub mod doctor;
pub mod generate;
pub mod models;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::api::{Device, Precision};
use crate::config::{LogFormat, Settings, SettingsLayer};

#[derive(Parser, Debug)]
#[command(name = "easel", version = VERSION, about = "Local Stable Diffusion: a web UI and an HTTP API on ONNX Runtime.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the web UI and the HTTP API (the default).
    Serve(SettingsArgs),
    /// Print what Easel finds: ONNX Runtime, models, data dir, free disk, threads.
    Doctor(SettingsArgs),
    /// Time one generation stage by stage and report peak memory (numbers, no pass/fail).
    Bench {
        #[command(flatten)]
        bench: crate::cli::bench::BenchArgs,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Generate images from a prompt on the command line.
    Generate {
        #[command(flatten)]
        generate: Box<crate::cli::generate::GenerateArgs>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Download a model from the Hugging Face hub into its cache (resumable, verified).
    #[command(after_help = pull_help())]
    Pull {
        #[command(flatten)]
        pull: crate::cli::models::PullArgs,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List, inspect, delete models and choose the default.
    Models {
        #[command(subcommand)]
        command: crate::cli::models::ModelsCommand,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// `easel pull --help`'s epilogue, derived from the alias table and the hub's environment names.
fn pull_help() -> String {
    let aliases: Vec<String> = crate::hub::pull::ALIASES.iter().map(|a| format!("  {:<10} {}@{}", a.name, a.repo_id, a.revision)).collect();
    format!("Aliases:\n{}\n\n{}", aliases.join("\n"), crate::hub::ENVIRONMENT_HELP)
}

/// The settings flags, shared by every subcommand that needs settings (one definition). Global,
/// so they may follow a nested subcommand too: `easel models list --models-dir DIR`.
#[derive(Args, Debug, Default, Clone)]
pub struct SettingsArgs {
    /// Configuration file (default: easel.toml in the data dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, global = true)]
    pub host: Option<std::net::IpAddr>,
    /// Port to bind [default: 3000].
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Also serve ComfyUI's API (`/prompt`, `/ws`, ...) on this port, same address and rules
    /// [default: off; ComfyUI's own is 8188].
    #[arg(long, global = true, value_name = "PORT")]
    pub comfyui_port: Option<u16>,
    /// Folder of models in the diffusers ONNX layout [default: ./models if it exists, else <data-dir>/models].
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// A model folder of another tool, read-only: an AUTOMATIC1111 or ComfyUI install (or its
    /// `models` folder), layout detected. Repeatable.
    #[arg(long, global = true, value_name = "DIR")]
    pub extra_models_dir: Vec<PathBuf>,
    /// A host name browsers may reach the server by besides IP addresses and localhost (a
    /// reverse proxy's name); requests naming any other host are refused. Repeatable.
    #[arg(long, global = true, value_name = "NAME", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Folder for generated images [default: <data-dir>/outputs].
    #[arg(long, global = true, value_name = "DIR")]
    pub outputs_dir: Option<PathBuf>,
    /// Folder for Easel's state [default: ~/.local/share/easel].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads [default: all cores].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Log filter, e.g. info, debug, easel=debug [default: info].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format [default: text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Allow binding a non-loopback address without EASEL_API_TOKEN.
    #[arg(long, global = true)]
    pub insecure_no_auth: bool,
    /// Model used when a request names none [default: the stored choice, else tiny-sd].
    #[arg(long, global = true, value_name = "NAME")]
    pub default_model: Option<String>,
    /// Models kept loaded at once; 1 frees the previous model on a switch [default: 1].
    #[arg(long, global = true, value_name = "N")]
    pub resident_models: Option<usize>,
    /// Load each sub-model only while it runs: lower peak memory, slower jobs.
    #[arg(long, global = true)]
    pub low_memory: bool,
    /// Where the models run: cpu, cuda, cuda:N, openvino, coreml or directml (`easel doctor`
    /// lists which this machine has) [default: cpu].
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<Device>,
    /// Numeric precision: auto (what the device runs best with the model), fp32 (the exact
    /// path, equal to diffusers), bf16, fp16 or int8 [default: auto].
    #[arg(long, global = true, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// Largest picture a generation may make, in pixels (width x height of the largest pass);
    /// larger requests get 422 [default: derived from the memory and the model].
    #[arg(long, global = true, value_name = "PIXELS")]
    pub max_pixels: Option<u64>,
    /// Most jobs that may wait in the queue; more submissions get 503 with Retry-After [default: 1000].
    #[arg(long, global = true, value_name = "N")]
    pub max_queue: Option<u32>,
    /// Seconds a stopping server (SIGTERM, Ctrl-C) waits for the running step and open requests;
    /// the running job is handed back to the queue either way [default: 10].
    #[arg(long, global = true, value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
}

impl SettingsArgs {
    fn layer(&self) -> SettingsLayer {
        SettingsLayer {
            host: self.host,
            port: self.port,
            comfyui_port: self.comfyui_port,
            models_dir: self.models_dir.clone(),
            extra_models_dirs: (!self.extra_models_dir.is_empty()).then(|| self.extra_models_dir.clone()),
            allowed_hosts: (!self.allowed_hosts.is_empty()).then(|| self.allowed_hosts.clone()),
            outputs_dir: self.outputs_dir.clone(),
            data_dir: self.data_dir.clone(),
            threads: self.threads,
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            api_token: None,
            insecure_no_auth: self.insecure_no_auth.then_some(true),
            default_model: self.default_model.clone(),
            resident_models: self.resident_models,
            low_memory: self.low_memory.then_some(true),
            device: self.device,
            precision: self.precision,
            max_pixels: self.max_pixels,
            max_queue: self.max_queue,
            shutdown_timeout: self.shutdown_timeout,
            hub_cache: None,
            hub_endpoint: None,
            hub_token: None,
        }
    }

    /// The effective settings: defaults < file < `EASEL_*` env < these flags. Model hashes are
    /// then cached in the data dir's [`HASH_CACHE_FILE`] across runs.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let env = SettingsLayer::from_env(|k| std::env::var(k).ok())?;
        let settings = Settings::resolve(env, self.layer(), self.config.as_deref())?;
        crate::engine::file_hash::keep_hashes_in(settings.data_dir.join(HASH_CACHE_FILE));
        Ok(settings)
    }
}

/// The data dir's file of model hashes already computed (A1111's short hashes take a full read of
/// a multi-GB file).
pub const HASH_CACHE_FILE: &str = "hashes.json";

/// `easel --version`: Easel's version and the ONNX Runtime release it is built for
/// (kept equal to [`crate::engine::runtime::ORT_VERSION`] by a test).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (ONNX Runtime 1.31.1)");

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(SettingsArgs::default())) {
        Command::Serve(args) => serve(&args),
        Command::Doctor(args) => args.resolve().map(|s| {
            restart_with_startup_env(&s, false);
            crate::cli::doctor::print_report(&s)
        }),
        Command::Pull { pull, settings } => settings.resolve().and_then(|s| {
            // Retries and other warnings go to stderr beside the progress bars.
            let level = if settings.log_level.is_some() { s.log_level.clone() } else { "warn".to_string() };
            crate::logging::init(&level, s.log_format).map_err(anyhow::Error::msg)?;
            crate::cli::models::pull_command(&pull, &s)
        }),
        Command::Models { command, settings } => settings.resolve().and_then(|s| crate::cli::models::models_command(&command, &s)),
        Command::Bench { bench, settings } => settings.resolve().and_then(|s| {
            restart_with_startup_env(&s, false);
            crate::cli::bench::run(&bench, &s)
        }),
        Command::Generate { generate, settings } => {
            let settings = match settings.resolve() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            restart_with_startup_env(&settings, false);
            return match crate::cli::generate::run(&generate, &settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets what a process must start with, since glibc and the dynamic loader read it only at
/// start-up, by re-executing itself once with it (`exec` keeps the process id, so service
/// managers see one process):
///
/// * the server: a fixed malloc mmap threshold. glibc raises its threshold every time a large
///   block is freed, so once a model has been unloaded the next model's weights are allocated
///   from the heap, where freed memory fragments and is not given back: resident memory crept up
///   about 0.3 MB per model switch (measured with `tests/model_cli.rs`; flat with a fixed one).
/// * `--device cuda` with the CUDA build installed: `LD_LIBRARY_PATH` naming its folder, where
///   NVIDIA's libraries are (see `engine::runtime::cuda_library_path`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_startup_env(settings: &Settings, serving: bool) {
    use std::os::unix::process::CommandExt;
    const MMAP: &str = "MALLOC_MMAP_THRESHOLD_";
    let mut vars: Vec<(&str, std::ffi::OsString)> = Vec::new();
    if serving && std::env::var_os(MMAP).is_none() {
        vars.push((MMAP, "131072".into()));
    }
    if let Some(path) = crate::engine::runtime::cuda_library_path(settings.device) {
        vars.push(("LD_LIBRARY_PATH", path));
    }
    if vars.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let error = std::process::Command::new(exe).args(std::env::args_os().skip(1)).envs(vars.iter().map(|(k, v)| (k, v))).exec();
    // Only reached if exec failed; run on without them.
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    eprintln!("note: could not re-execute with {} set ({error})", names.join(" and "));
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with_startup_env(_settings: &Settings, _serving: bool) {}

fn serve(args: &SettingsArgs) -> anyhow::Result<()> {
    let settings = args.resolve()?;
    restart_with_startup_env(&settings, true);
    crate::logging::init(&settings.log_level, settings.log_format).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = runtime.block_on(async move {
        let addr = SocketAddr::new(settings.host, settings.port);
        // Bind first: if the port is taken, stop before the worker could start a queued job.
        let port_error = |e: std::io::Error| anyhow::anyhow!("cannot serve on {addr}: {e} (is another program using the port? try --port)");
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(port_error)?;
        let bound = listener.local_addr().map_err(port_error)?;
        let comfyui = match settings.comfyui_port {
            Some(port) => {
                let at = SocketAddr::new(settings.host, port);
                let taken = |e: std::io::Error| anyhow::anyhow!("cannot serve ComfyUI's API on {at}: {e} (try another --comfyui-port)");
                Some(tokio::net::TcpListener::bind(at).await.map_err(taken)?)
            }
            None => None,
        };
        let deadline = std::time::Duration::from_secs(settings.shutdown_timeout_s);
        let state = crate::server::AppState::start(crate::server::leptos_options(bound), settings)?;
        let easel = state.easel.clone();
        if let Err(e) = easel.runtime() {
            tracing::warn!("{e}");
        }
        tracing::info!(%bound, "listening");
        println!("Easel is running at http://{bound}/");
        // On SIGTERM or Ctrl-C: the listeners stop accepting, streams end, the running job is
        // interrupted and handed back (its attempt not counted); after `deadline` the process
        // exits even if a step or a request is still going.
        let (signalled_tx, signalled) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(deadline_s = deadline.as_secs(), "stopping");
            signalled_tx.send_replace(true);
        });
        let on_signal = |mut signalled: tokio::sync::watch::Receiver<bool>| async move {
            let _ = signalled.wait_for(|s| *s).await;
        };
        let comfyui = match comfyui {
            Some(listener) => {
                let app = crate::server::comfyui_app(state.clone());
                let at = listener.local_addr()?;
                tracing::info!(%at, "ComfyUI API listening");
                println!("ComfyUI's API is at http://{at}/");
                let stop = on_signal(signalled.clone());
                Some(tokio::spawn(crate::server::serve_connections(listener, app, stop)))
            }
            None => None,
        };
        let stopper = {
            let (easel, signalled) = (easel.clone(), signalled.clone());
            tokio::spawn(async move {
                on_signal(signalled).await;
                easel.stop(deadline).await
            })
        };
        let server = crate::server::serve_on(listener, state, on_signal(signalled.clone()));
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => served.map_err(port_error)?,
            _ = on_signal(signalled) => match tokio::time::timeout(deadline, &mut server).await {
                Ok(served) => served.map_err(port_error)?,
                Err(_) => tracing::warn!("requests still open after {} s; closing them", deadline.as_secs()),
            },
        }
        if let Some(task) = comfyui {
            task.abort();
        }
        // Interrupted and handed back by now, or after the deadline at the latest.
        if !stopper.await.unwrap_or(false) {
            tracing::warn!("the running step did not finish within {} s; its job runs again at the next start", deadline.as_secs());
        }
        tracing::info!("stopped");
        Ok(())
    });
    // Work still on the blocking pool (a step past the deadline) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn version_names_the_onnx_runtime_release() {
        assert!(VERSION.contains(crate::engine::runtime::ORT_VERSION));
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_serve() {
        let cli = Cli::try_parse_from(["easel"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["easel", "serve", "--port", "0", "--log-format", "json"]).unwrap();
        match cli.command {
            Some(Command::Serve(a)) => {
                assert_eq!(a.port, Some(0));
                assert_eq!(a.log_format, Some(LogFormat::Json));
            }
            other => panic!("{other:?}"),
        }
    }
}
