//! `easel pull` and `easel models {list,show,rm,default,vae,merge}`: the command-line face of
//! [`crate::hub`], [`crate::model_registry`] and [`crate::engine::merge`].

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::pull::{human_bytes, FileState, PullStatus};
use crate::api::ModelEntry;
use crate::config::Settings;
use crate::engine::merge::{merge, MergeMode, MergeRequest};
use crate::hub::pull::{pull, PullRequest};
use crate::hub::HubClient;
use crate::model_files::FileKind;
use crate::model_registry::{ModelRegistry, RegistryError};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// An alias (sd15, sd15-fp16) or a Hugging Face repository id, optionally with @revision.
    pub model: String,
    /// Also download the safety checker and its feature extractor (not used by Easel).
    #[arg(long)]
    pub with_safety_checker: bool,
    /// Make the pulled model the default.
    #[arg(long)]
    pub set_default: bool,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every model Easel can run: the models dir and the Hugging Face cache.
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one model.
    Show { name: String },
    /// Delete a model Easel owns (asks first unless --yes).
    Rm {
        name: String,
        #[arg(long, short)]
        yes: bool,
    },
    /// Set the model used when a request names none (stored in the data dir).
    Default { name: String },
    /// Set the VAE a model uses when a request names none; without VAE, its own again.
    Vae { name: String, vae: Option<String> },
    /// Merge two checkpoints into a new .safetensors checkpoint (A1111's checkpoint merger).
    Merge {
        /// A, the primary model (a name in checkpoints/ or a .safetensors path); the output has its keys.
        a: String,
        /// B, the secondary model.
        b: String,
        /// Weighted sum: B's share, (1 - alpha)*A + alpha*B. Add difference: A + alpha*(B - base).
        #[arg(long, default_value_t = 0.3)]
        alpha: f64,
        #[arg(long, value_enum, default_value_t = MergeModeArg::WeightedSum)]
        mode: MergeModeArg,
        /// C, the model B was trained from (add difference only).
        #[arg(long)]
        base: Option<String>,
        /// A name (written to the models dir's checkpoints/ as NAME.safetensors) or a path ending in .safetensors.
        #[arg(long)]
        output: String,
        /// Replace the output file if it exists.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeModeArg {
    WeightedSum,
    AddDifference,
}

/// Progress bars for a pull: one overall, one per file while it downloads.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    files: HashMap<String, ProgressBar>,
    /// Without a terminal, one line per finished file instead of bars.
    plain: bool,
    announced: std::collections::HashSet<String>,
}

impl Bars {
    fn new() -> Self {
        let plain = !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{msg:<28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_message("total");
        Self { multi, overall, files: HashMap::new(), plain, announced: Default::default() }
    }

    fn show(&mut self, status: &PullStatus) {
        self.overall.set_length(status.total_bytes);
        self.overall.set_position(status.done_bytes);
        for file in &status.files {
            let finished = matches!(file.state, FileState::Done | FileState::Cached | FileState::Failed);
            if self.plain {
                if finished && self.announced.insert(file.path.clone()) {
                    let how = match file.state {
                        FileState::Cached => "already cached",
                        FileState::Failed => "FAILED",
                        _ => "downloaded",
                    };
                    eprintln!("  {:<40} {:>10}  {how}", file.path, human_bytes(file.size));
                }
                continue;
            }
            if file.state == FileState::Downloading || file.state == FileState::Verifying {
                let bar = self.files.entry(file.path.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(file.size));
                    bar.set_style(
                        ProgressStyle::with_template("  {msg:<26} [{bar:30}] {bytes}/{total_bytes}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_message(file.path.clone());
                    bar
                });
                bar.set_position(file.done);
                if file.state == FileState::Verifying {
                    bar.set_message(format!("{} (verifying)", file.path));
                }
            } else if finished {
                if let Some(bar) = self.files.remove(&file.path) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
        }
    }
}

pub fn pull_command(args: &PullArgs, settings: &Settings) -> anyhow::Result<()> {
    let registry = ModelRegistry::from_settings(settings);
    let mut request = PullRequest::parse(&args.model)?;
    request.with_safety_checker = args.with_safety_checker;
    let client = Arc::new(HubClient::new(&settings.hub_endpoint, settings.hub_token.clone())?);
    let cache = Arc::new(registry.hub_cache().clone());
    eprintln!("pulling {}@{} from {} into {}", request.repo_id, request.revision, client.endpoint(), cache.root().display());
    let bars = Arc::new(Mutex::new(Bars::new()));
    let report = {
        let bars = bars.clone();
        Arc::new(move |status: &PullStatus| bars.lock().expect("bars lock").show(status))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(pull(client, cache, &request, report));
    bars.lock().expect("bars lock").overall.finish_and_clear();
    let pulled = result.map_err(|e| anyhow::anyhow!(e.explain(registry.models_dir())))?;
    if !pulled.already_cached {
        registry.record_pull(&pulled.repo_id, &pulled.commit)?;
    }
    let entry = registry
        .find(&format!("{}@{}", pulled.repo_id, pulled.commit))
        .ok_or_else(|| anyhow::anyhow!("the pulled snapshot at {} is not a complete model", pulled.dir.display()))?;
    if pulled.offline {
        eprintln!("warning: the hub could not be reached; using the copy already in the cache");
    }
    println!(
        "pulled {} (commit {}): {} downloaded, {} already cached",
        entry.name,
        &pulled.commit[..12],
        human_bytes(pulled.downloaded_bytes),
        human_bytes(pulled.total_bytes.saturating_sub(pulled.downloaded_bytes))
    );
    if args.set_default {
        registry.set_default(&entry.name)?;
        println!("{} is now the default model", entry.name);
    } else {
        println!("generate with it: easel generate --model {} --prompt \"a prompt\"", entry.aliases.first().unwrap_or(&entry.name));
    }
    Ok(())
}

pub fn models_command(command: &ModelsCommand, settings: &Settings) -> anyhow::Result<()> {
    let registry = ModelRegistry::from_settings(settings);
    match command {
        ModelsCommand::List { json } => {
            let models = registry.list();
            if *json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else {
                print!("{}", table(&models));
                if models.is_empty() {
                    println!("no models; pull one with `easel pull sd15`");
                }
            }
        }
        ModelsCommand::Show { name } => {
            let m = registry.resolve(Some(name))?;
            println!("name       {}{}", m.name, if m.is_default { " (default)" } else { "" });
            if !m.aliases.is_empty() {
                println!("aliases    {}", m.aliases.join(", "));
            }
            println!("path       {}", m.path.display());
            println!("precision  {}", m.precision);
            println!("source     {}", m.source);
            if let (Some(repo), Some(commit)) = (&m.repo_id, &m.commit) {
                println!("repo       {repo} @ {commit}");
            }
            println!("size       {}", human_bytes(m.size_bytes));
            println!("removable  {}", if m.removable { "yes" } else { "no (not owned by Easel)" });
        }
        ModelsCommand::Rm { name, yes } => {
            let m = registry.resolve(Some(name))?;
            if !m.removable {
                return Err(RegistryError::NotOwned { name: m.name }.into());
            }
            if !yes && !confirm(&format!("delete {} ({}) at {}?", m.name, human_bytes(m.size_bytes), m.path.display()))? {
                println!("nothing deleted");
                return Ok(());
            }
            let freed = registry.remove(name)?;
            println!("deleted {}; freed {}", m.name, human_bytes(freed));
        }
        ModelsCommand::Default { name } => {
            let m = registry.set_default(name)?;
            println!("{} is now the default model", m.name);
        }
        ModelsCommand::Vae { name, vae } => {
            let m = registry.set_vae(name, vae.as_deref())?;
            match &m.vae {
                Some(vae) => println!("{} now uses the VAE {vae} unless a request names another", m.name),
                None => println!("{} now uses its own VAE", m.name),
            }
        }
        ModelsCommand::Merge { a, b, alpha, mode, base, output, overwrite } => {
            let input = |name: &str| -> anyhow::Result<std::path::PathBuf> {
                let path = std::path::Path::new(name);
                if path.is_file() {
                    return Ok(path.to_path_buf());
                }
                Ok(registry.find_file(FileKind::Checkpoint, name)?.path)
            };
            let output = if output.ends_with(".safetensors") || output.contains(std::path::MAIN_SEPARATOR) || output.contains('/') {
                std::path::PathBuf::from(output)
            } else {
                registry.models_dir().join(FileKind::Checkpoint.easel_folder()).join(format!("{output}.safetensors"))
            };
            let request = MergeRequest {
                a: input(a)?,
                b: input(b)?,
                c: base.as_deref().map(input).transpose()?,
                mode: match mode {
                    MergeModeArg::WeightedSum => MergeMode::WeightedSum,
                    MergeModeArg::AddDifference => MergeMode::AddDifference,
                },
                multiplier: *alpha,
                output,
                overwrite: *overwrite,
            };
            let started = std::time::Instant::now();
            let report = merge(&request)?;
            println!(
                "wrote {} ({}, {} tensors, {} merged) in {:.1} s",
                report.output.display(),
                human_bytes(report.bytes),
                report.tensors,
                report.merged,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn table(models: &[ModelEntry]) -> String {
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|m| {
            let mut name = m.name.clone();
            if !m.aliases.is_empty() {
                name.push_str(&format!(" ({})", m.aliases.join(", ")));
            }
            [
                format!("{}{name}", if m.is_default { "* " } else { "  " }),
                m.precision.clone(),
                human_bytes(m.size_bytes),
                m.source.clone(),
                m.path.display().to_string(),
            ]
        })
        .collect();
    let headers = ["  NAME", "PRECISION", "SIZE", "SOURCE", "PATH"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 4 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    if models.iter().any(|m| m.is_default) {
        out.push_str("(* = default)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_the_default_and_shows_aliases() {
        let entry = |name: &str, default: bool| ModelEntry {
            name: name.into(),
            path: name.into(),
            location: crate::api::ModelLocation::ModelsDir,
            precision: "float32".into(),
            source: "random".into(),
            repo_id: None,
            commit: None,
            aliases: if default { vec![] } else { vec!["sd15".into()] },
            size_bytes: 1_000_000,
            is_default: default,
            removable: true,
            vae: None,
            hash: None,
        };
        let text = table(&[entry("tiny-sd", true), entry("org/model@onnx", false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("* tiny-sd "), "{text}");
        assert!(lines[2].starts_with("  org/model@onnx (sd15) "), "{text}");
        assert_eq!(lines[3], "(* = default)");
    }
}
