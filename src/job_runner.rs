//! The bridge from the job system to the engine: [`EngineExecutor`] runs one job's settings
//! through [`crate::engine`] and writes its PNGs durably into the outputs dir
//! (`YYYY-MM-DD/<job>-<n>.png`, written to a temp name, fsynced, then renamed).
//!
//! It keeps up to `resident_models` models loaded (one by default) and, when a job names another,
//! drops the least recently used one before loading the new one, so peak memory stays at N models.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::{Compat, GenerationSettings};
use crate::atomic_file::write_atomically;
use crate::engine::model::{Residency, SdModel};
use crate::engine::noise::a1111::A1111Seeds;
use crate::engine::pipeline::{generate, Output as GenerationOutput, SourceImages};
use crate::engine::{infotext, png_meta, preview, runtime, CancelToken, EngineError};
use crate::jobs::{ExecError, JobExecutor, JobProgress, JobRecord, NewImage};
use crate::metrics::EngineMetrics;
use crate::model_registry::ModelRegistry;
use crate::uploads::{self, Uploads};

pub struct EngineExecutor {
    /// Where models are looked up by name.
    pub registry: ModelRegistry,
    /// Where a job's init image and mask are read from.
    pub uploads: Uploads,
    /// Root of the image files.
    pub outputs_dir: PathBuf,
    pub threads: usize,
    pub residency: Residency,
    /// How many models stay loaded at once (at least 1).
    pub resident_models: usize,
    /// Loaded models, least recently used first.
    loaded: Vec<SdModel>,
    /// LoRA files read, kept across jobs.
    lora_cache: crate::engine::lora::LoraCache,
    /// Step and load times, for `/metrics`.
    pub metrics: Arc<EngineMetrics>,
}

impl EngineExecutor {
    pub fn new(
        registry: ModelRegistry,
        uploads: Uploads,
        outputs_dir: PathBuf,
        threads: usize,
        residency: Residency,
        resident_models: usize,
    ) -> Self {
        Self {
            registry,
            uploads,
            outputs_dir,
            threads,
            residency,
            resident_models: resident_models.max(1),
            loaded: Vec::new(),
            lora_cache: Default::default(),
            metrics: Arc::new(EngineMetrics::default()),
        }
    }

    /// Names of the models whose sessions are loaded, least recently used first.
    pub fn loaded_models(&self) -> Vec<String> {
        self.loaded.iter().map(|m| m.name.clone()).collect()
    }

    /// The model `name` with the LoRA files and VAE a job names applied: loaded if needed (opened,
    /// networks chosen, then its sessions built once), otherwise rebuilt only where the networks
    /// changed.
    fn model(&mut self, name: &str, loras: &[(PathBuf, f32, f32)], vae: Option<&Path>) -> Result<&mut SdModel, ExecError> {
        let failed = |e: EngineError| ExecError::Failed(e.to_string());
        if let Some(i) = self.loaded.iter().position(|m| m.name == name) {
            let model = self.loaded.remove(i);
            self.loaded.push(model);
            let model = self.loaded.last_mut().expect("pushed above");
            model.use_networks(&mut self.lora_cache, loras, vae).and_then(|()| model.warm()).map_err(failed)?;
        } else {
            let entry = self.registry.resolve(Some(name)).map_err(|e| ExecError::Failed(e.to_string()))?;
            // Free the least recently used sessions before creating new ones: peak memory is
            // `resident_models` models, never one more.
            while self.loaded.len() >= self.resident_models {
                let evicted = self.loaded.remove(0);
                tracing::info!(model = %evicted.name, "model unloaded");
            }
            let rt = runtime::runtime().map_err(|e| ExecError::Failed(e.to_string()))?;
            let started = std::time::Instant::now();
            let mut model = SdModel::open(&entry.path, rt, self.threads, self.residency).map_err(failed)?;
            model.name = entry.name;
            for dir in self.registry.embeddings_dirs().into_iter().rev() {
                model.add_embeddings_dir(dir);
            }
            model.use_networks(&mut self.lora_cache, loras, vae).and_then(|()| model.warm()).map_err(failed)?;
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(model = name, seconds, "model loaded");
            self.metrics.model_load_seconds.observe(seconds);
            self.loaded.push(model);
        }
        self.metrics.models_loaded.store(self.loaded.len() as u64, Ordering::Relaxed);
        Ok(self.loaded.last_mut().expect("loaded above"))
    }
}

/// `YYYY-MM-DD` (UTC) for a unix time in milliseconds (days-from-civil, inverted).
pub fn utc_date(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn disk_error(path: &Path, e: std::io::Error) -> ExecError {
    let hint = if e.raw_os_error() == Some(28) { " (the disk is full; free some space and submit again)" } else { "" };
    ExecError::Failed(format!("cannot write {}: {e}{hint}", path.display()))
}

impl JobExecutor for EngineExecutor {
    fn execute(
        &mut self,
        job: &JobRecord,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(JobProgress),
    ) -> Result<Vec<NewImage>, ExecError> {
        let settings = job.settings.clone();
        let read =
            |field: &str, id: &str| self.uploads.load(id).map_err(|e| ExecError::Failed(format!("the {field} {id} cannot be read: {e}")));
        let images = SourceImages {
            init: settings.init_image.as_deref().map(|id| read("init image", id)).transpose()?.as_ref().map(uploads::to_rgb),
            mask: settings.mask.as_deref().map(|id| read("mask", id)).transpose()?.as_ref().map(uploads::to_mask),
        };
        let name = settings.model.clone().unwrap_or_else(|| self.registry.default_name());
        let outputs_dir = self.outputs_dir.clone();
        let metrics = self.metrics.clone();
        let (loras, vae) = self.registry.network_files(&settings).map_err(|e| ExecError::Failed(e.to_string()))?;
        let model = self.model(&name, &loras, vae.as_deref())?;
        // Step time: between consecutive step callbacks (the first would include the text encoder).
        let mut last_step: Option<std::time::Instant> = None;
        let output = generate(model, &settings, &images, cancel, &mut |p| {
            let now = std::time::Instant::now();
            if let Some(previous) = last_step.replace(now) {
                metrics.step_seconds.observe(now.duration_since(previous).as_secs_f64());
            }
            let rgb = preview::latents_to_rgb(p.latents, p.latent_shape, 0);
            let [_, _, h, w] = p.latent_shape;
            let preview_png = png_meta::encode_png(&rgb, w as u32, h as u32, "", "", &[]).ok();
            progress(JobProgress { step: p.step as u32, total: p.total as u32, preview_png });
        })
        .map_err(|e| match e {
            EngineError::Cancelled => ExecError::Cancelled,
            other => ExecError::Failed(other.to_string()),
        })?;
        for note in &output.prompt_notes {
            tracing::warn!(job = %job.id, "prompt: {note}");
        }
        save_images(&outputs_dir, &job.id, job.created_at_ms, &settings, model, &output)
    }
}

/// Each image's seed and parameters text. Every image of a batch shares the settings; in the
/// a1111 mode each has its own seed (and variation seed), as A1111's `all_seeds` and infotexts
/// have them.
pub fn image_infotexts(settings: &GenerationSettings, model: &SdModel, output: &GenerationOutput) -> Vec<(u64, String)> {
    let a1111 = (settings.noise.compat == Compat::A1111).then(|| A1111Seeds::from_settings(settings));
    let batch = output.images.len();
    let extra = output.extra_parameters();
    (0..batch)
        .map(|i| {
            let mut own = settings.clone();
            // A1111 writes no inpainting keys (but the blur) for a mask it did not use.
            if output.mask_unused {
                own.mask = None;
            }
            if let Some(seeds) = &a1111 {
                own.seed = seeds.image_seeds(batch)[i];
                if let Some(subseeds) = seeds.image_subseeds(batch) {
                    own.noise.subseed = Some(subseeds[i]);
                }
            }
            (own.seed, infotext::infotext_with(&own, &model.name, &model.short_hash, &extra))
        })
        .collect()
}

/// Writes a generation's PNGs (metadata embedded) atomically into
/// `<outputs>/YYYY-MM-DD/<job>-<n>.png`, as every job's images are kept; returns what the job
/// store records. Also used by `easel generate` for the images it records.
pub fn save_images(
    outputs_dir: &Path,
    job_id: &str,
    created_at_ms: i64,
    settings: &GenerationSettings,
    model: &SdModel,
    output: &GenerationOutput,
) -> Result<Vec<NewImage>, ExecError> {
    let day = utc_date(created_at_ms);
    let mut saved = Vec::with_capacity(output.images.len());
    for (image, (seed, infotext)) in output.images.iter().zip(image_infotexts(settings, model, output)) {
        let bytes = png_meta::image_png(settings, model, image, &infotext).map_err(|e| ExecError::Failed(e.to_string()))?;
        let relative = format!("{day}/{job_id}-{}.png", image.index);
        let path = outputs_dir.join(&relative);
        write_atomically(&path, &bytes).map_err(|e| disk_error(&path, e))?;
        saved.push(NewImage {
            batch_index: image.index as u32,
            path: relative,
            seed,
            width: image.width,
            height: image.height,
            sha256: format!("{:x}", Sha256::digest(&bytes)),
            infotext,
        });
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_795_651_200_000), "2026-11-26");
    }
}
