//! k-diffusion's samplers and schedules as A1111 and ComfyUI run them (`engine::kdiffusion`)
//! against arrays recorded by running the tools' own code (`models/tooling/ref_kdiffusion.py` →
//! `tests/fixtures/kdiffusion/`): the model's sigma tables, every schedule Easel offers, and the
//! latents after every step of every sampler Easel offers, driven around the recorded stand-in
//! model with the tools' own step noise, within 1e-5 of the largest value. A1111's timestep
//! samplers (`engine::timesteps`: DDIM, DDIM CFG++, PLMS) are checked the same way over their
//! timesteps.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::api::Compat;
use easel::engine::kdiffusion::discrete::DiscreteSchedule;
use easel::engine::kdiffusion::schedules;
use easel::engine::kdiffusion::{BrownianSeeds, Context, Denoiser, Flavor, KSampler, Sampler, Schedule, Step};
use easel::engine::noise::a1111::{A1111Seeds, ImageRng, RandnSource};
use easel::engine::noise::comfyui::NoiseSampler;
use easel::engine::noise::NoiseSource;
use easel::engine::npy;
use easel::engine::timesteps::{self, EpsModel, Run, TimestepSampler};
use easel::engine::EngineError;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kdiffusion")
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

fn load(file: &str) -> Vec<f32> {
    npy::read_f32(dir().join(file)).unwrap().1
}

/// Largest difference, and whether it is within `rel` of the largest value (NaN equals NaN).
fn close(got: &[f32], want: &[f32], rel: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values, want {}", got.len(), want.len()));
    }
    let scale = want.iter().filter(|v| v.is_finite()).fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(want) {
        if g.is_nan() && w.is_nan() {
            continue;
        }
        let d = (g - w).abs();
        if d.is_nan() || d > rel * scale {
            worst = worst.max(if d.is_nan() { f32::INFINITY } else { d });
        }
    }
    if worst > 0.0 {
        Err(format!("max difference {worst:e} at scale {scale}"))
    } else {
        Ok(())
    }
}

fn compat(tool: &str) -> Compat {
    if tool == "a1111" {
        Compat::A1111
    } else {
        Compat::ComfyUi
    }
}

fn flavor(tool: &str) -> Flavor {
    if tool == "a1111" {
        Flavor::A1111
    } else {
        Flavor::ComfyUi
    }
}

#[test]
fn the_model_sigma_tables_are_each_tools() {
    for (flavor, file) in [(Flavor::A1111, "model_sigmas_a1111.npy"), (Flavor::ComfyUi, "model_sigmas_comfyui.npy")] {
        close(&DiscreteSchedule::sd15(flavor).sigmas, &load(file), 1e-6).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// Easel's sigmas for a recorded schedule case, or `None` for one it does not offer.
fn our_schedule(case: &Value) -> Option<Vec<f32>> {
    let tool = case["tool"].as_str().unwrap();
    let named = Sampler::parse(case["sampler"].as_str().unwrap()).filter(|s| s.runs_in(compat(tool)))?;
    let sampler = KSampler::for_sampler(named)?;
    let steps = case["steps"].as_u64().unwrap() as usize;
    let model = DiscreteSchedule::sd15(flavor(tool)).for_sampler(sampler);
    let schedule = Schedule::parse(case["scheduler"].as_str().unwrap())?;
    schedules::sigmas(&model, sampler, schedule, steps).ok()
}

#[test]
fn schedules_equal_the_tools_own() {
    let cases = cases();
    let (mut checked, mut failures, mut not_offered) = (0, Vec::new(), Vec::new());
    for case in cases["schedules"].as_array().unwrap() {
        let Some(file) = case["file"].as_str() else { continue };
        let name = case["name"].as_str().unwrap();
        match our_schedule(case) {
            None => not_offered.push(name.to_string()),
            Some(got) => {
                checked += 1;
                if let Err(e) = close(&got, &load(file), 1e-5) {
                    failures.push(format!("{name}: {e}\n  got  {got:?}\n  want {:?}", load(file)));
                }
            }
        }
    }
    eprintln!("{checked} schedules checked; not offered by Easel: {not_offered:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // ComfyUI's kl_optimal at 1 step (NaN there) is refused here, so it is not among them.
    assert!(checked >= 130, "only {checked} schedule cases were checked");
}

/// The recorded stand-in model behind each tool's discrete-schedule eps wrapper.
struct StandIn {
    model: DiscreteSchedule,
    calls: Vec<(f32, f32)>,
    /// The last prediction: the stand-in has no guidance, so the tools' post-CFG hook sees it as
    /// the unconditional one too.
    last: Vec<f32>,
}

impl Denoiser for StandIn {
    fn denoise(&mut self, x: &[f32], sigma: f32) -> Result<Vec<f32>, EngineError> {
        let t = self.model.sigma_to_t(sigma);
        self.calls.push((sigma, t));
        let s = 1.0 + t / 1000.0;
        let x_in = self.model.scale_input(x, sigma);
        let scalings = self.model.lcm_scalings(sigma);
        self.last = x
            .iter()
            .zip(x_in)
            .map(|(&x, x_in)| {
                let eps = 0.6 * x_in + 0.2 * (x_in * s).sin();
                let denoised = x + eps * -sigma;
                // A1111's LCM denoiser: its boundary-condition scalings.
                scalings.map_or(denoised, |(c_skip, c_out)| c_out * denoised + c_skip * x)
            })
            .collect();
        Ok(self.last.clone())
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        Some(&self.last)
    }
}

#[test]
fn samplers_equal_the_tools_own_step_by_step() {
    let cases = cases();
    let noise = load("noise.npy");
    let (mut checked, mut failures, mut not_offered) = (0, Vec::new(), Vec::new());
    for case in cases["samplers"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if case.get("same_as").is_some_and(|v| !v.is_null()) || case["kind"] == "timesteps" {
            continue;
        }
        let tool = case["tool"].as_str().unwrap();
        let label = if tool == "a1111" { case["display_name"].as_str().unwrap_or_default() } else { case["sampler"].as_str().unwrap() };
        let Some(sampler) = Sampler::parse(label).filter(|s| s.runs_in(compat(tool))).and_then(KSampler::for_sampler) else {
            not_offered.push(name.to_string());
            continue;
        };
        checked += 1;
        let files = &case["files"];
        let sigmas = load(files["sigmas"].as_str().unwrap());
        let mut problems = Vec::new();
        match our_schedule(&serde_json::json!({"tool": tool, "sampler": label, "steps": case["steps"], "scheduler": case["scheduler"]})) {
            Some(ours) => {
                if let Err(e) = close(&ours, &sigmas, 1e-5) {
                    problems.push(format!("schedule: {e}"));
                }
            }
            None => problems.push("schedule not offered".into()),
        }
        let x0_scale = case["x0_scale"].as_f64().unwrap() as f32;
        let x0: Vec<f32> = noise.iter().map(|n| n * x0_scale).collect();
        let mut source: Box<dyn NoiseSource> = if tool == "a1111" {
            let seeds = A1111Seeds { source: RandnSource::Cpu, seed: 42, subseed: None, resize_from: (0, 0), eta_noise_seed_delta: 0 };
            let mut rng = ImageRng::new(seeds, 2, [4, 8, 8]);
            rng.first(); // the initial noise A1111 draws before sampling
            Box::new(rng)
        } else {
            Box::new(NoiseSampler::new(42, x0.len()))
        };
        let mut model = StandIn { model: DiscreteSchedule::sd15(flavor(tool)).for_sampler(sampler), calls: Vec::new(), last: Vec::new() };
        let (mut xs, mut denoiseds) = (Vec::new(), Vec::new());
        let mut on_step = |s: Step<'_>| {
            xs.extend_from_slice(s.x);
            denoiseds.extend_from_slice(s.denoised);
        };
        // The SDE samplers' Brownian trees: A1111 one per image (seeds 42 and 43, CPU source),
        // ComfyUI one for the batch (seed 42).
        let entropies = if tool == "a1111" { vec![42, 43] } else { vec![42] };
        let brownian = Some(BrownianSeeds { entropies, randn: easel::engine::noise::brownian::torch_randn, range: None });
        let schedule = model.model.clone();
        let mut cx = Context {
            model: &mut model,
            noise: source.as_mut(),
            on_step: &mut on_step,
            flavor: flavor(tool),
            brownian,
            schedule: &schedule,
        };
        let out = sampler.sample(x0, &sigmas, &mut cx).unwrap();
        for (part, got) in [("x", &xs), ("denoised", &denoiseds), ("out", &out)] {
            // ComfyUI's iPNDM and DEIS samplers hand their callback the latents the whole run
            // started from.
            if part == "x" && ["comfyui_ipndm_simple", "comfyui_ipndm_v_simple", "comfyui_deis_simple"].contains(&name) {
                continue;
            }
            if let Err(e) = close(got, &load(files[part].as_str().unwrap()), 1e-5) {
                problems.push(format!("{part}: {e}"));
            }
        }
        let calls: Vec<f32> = model.calls.iter().flat_map(|&(s, t)| [s, t]).collect();
        if let Err(e) = close(&calls, &load(files["calls"].as_str().unwrap()), 1e-5) {
            problems.push(format!("calls (sigma, t): {e}"));
        }
        // DPM adaptive's error controller decides its calls as it goes (checked above in `calls`).
        if name.contains("dpm_adaptive") {
        } else if sampler.model_calls(&sigmas) != case["model_calls"].as_u64().unwrap() as usize {
            problems.push(format!("model_calls {} vs {}", sampler.model_calls(&sigmas), case["model_calls"]));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    eprintln!("{checked} sampler runs checked; not offered by Easel: {not_offered:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 63, "only {checked} sampler cases were checked");
}

/// torchsde's Brownian tree as each tool builds it for the SDE samplers: every increment a
/// recorded sampler asked for, in its order.
#[test]
fn brownian_tree_increments_equal_torchsde() {
    use easel::engine::noise::brownian::BrownianNoise;
    let cases = cases();
    let cpu = |seed: u64, n: usize| easel::engine::torch_rng::TorchGenerator::new(seed).randn(n);
    for case in cases["brownian"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let sigmas = load(case["sigmas"].as_str().unwrap());
        let positive = sigmas.iter().copied().filter(|s| *s > 0.0);
        let (lo, hi) = (positive.clone().fold(f32::INFINITY, f32::min), sigmas.iter().copied().fold(0.0, f32::max));
        let entropies: Vec<u128> =
            case["construction"]["entropy"].as_array().unwrap().iter().map(|e| e.as_u64().unwrap() as u128).collect();
        let mut noise = BrownianNoise::new(lo, hi, 2 * 4 * 8 * 8, &entropies, cpu);
        let queries = load(case["queries"].as_str().unwrap());
        let want = load(case["increments"].as_str().unwrap());
        let per = 2 * 4 * 8 * 8;
        for (k, q) in queries.chunks(2).enumerate() {
            let got = noise.increment(q[0], q[1]);
            close(&got, &want[k * per..(k + 1) * per], 1e-5).unwrap_or_else(|e| panic!("{name} query {k} {q:?}: {e}"));
        }
    }
}

/// The recorded stand-in as A1111's timestep samplers call it: `ε(x, t)` on the latents
/// themselves (no σ scaling); without guidance its prediction is the unconditional one too.
struct EpsStandIn {
    calls: Vec<f32>,
    last: Vec<f32>,
}

impl EpsModel for EpsStandIn {
    fn eps(&mut self, x: &[f32], t: f64, _scale: f64) -> Result<Vec<f32>, EngineError> {
        self.calls.push(t as f32);
        let s = 1.0 + t as f32 / 1000.0;
        self.last = x.iter().map(|&x| 0.6 * x + 0.2 * (x * s).sin()).collect();
        Ok(self.last.clone())
    }

    fn last_uncond(&self) -> Option<&[f32]> {
        Some(&self.last)
    }
}

#[test]
fn a1111_timestep_samplers_equal_a1111s_own_step_by_step() {
    let cases = cases();
    let noise = load("noise.npy");
    let alphas_cumprod = DiscreteSchedule::sd15(Flavor::A1111).alphas_cumprod;
    let (mut checked, mut failures, mut not_offered) = (Vec::new(), Vec::new(), Vec::new());
    for case in cases["samplers"].as_array().unwrap().iter().filter(|c| c["kind"] == "timesteps") {
        let name = case["name"].as_str().unwrap();
        let label = case["display_name"].as_str().unwrap();
        let Some(sampler) = Sampler::parse(label).filter(|s| s.runs_in(Compat::A1111)).and_then(TimestepSampler::for_sampler) else {
            not_offered.push(name.to_string());
            continue;
        };
        checked.push(name.to_string());
        let files = &case["files"];
        let recorded: Vec<u32> = load(files["sigmas"].as_str().unwrap()).iter().map(|&t| t as u32).collect();
        let ours = timesteps::timesteps(case["steps"].as_u64().unwrap() as usize);
        let mut problems = Vec::new();
        if ours != recorded {
            problems.push(format!("timesteps {ours:?} vs {recorded:?}"));
        }
        let mut model = EpsStandIn { calls: Vec::new(), last: Vec::new() };
        let (mut xs, mut preds) = (Vec::new(), Vec::new());
        let mut on_step = |s: timesteps::Step<'_>| {
            xs.extend_from_slice(s.x);
            preds.extend_from_slice(s.pred_x0);
        };
        let mut run = Run { model: &mut model, alphas_cumprod: &alphas_cumprod, on_step: &mut on_step };
        let out = sampler.sample(noise.clone(), &recorded, false, &mut run).unwrap();
        for (part, got) in [("x", &xs), ("denoised", &preds), ("out", &out)] {
            if let Err(e) = close(got, &load(files[part].as_str().unwrap()), 1e-5) {
                problems.push(format!("{part}: {e}"));
            }
        }
        let calls: Vec<f32> = model.calls.iter().flat_map(|&t| [t, t]).collect();
        // (UniPC's fractional timesteps come from torch's float32 linspace, whose vector kernel may
        // round the last bit otherwise.)
        if let Err(e) = close(&calls, &load(files["calls"].as_str().unwrap()), 1e-7) {
            problems.push(format!("calls (t, t): {e}"));
        }
        if sampler.model_calls(&recorded) != case["model_calls"].as_u64().unwrap() as usize {
            problems.push(format!("model_calls {} vs {}", sampler.model_calls(&recorded), case["model_calls"]));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    eprintln!("timestep samplers checked: {checked:?}; not offered by Easel: {not_offered:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, ["a1111_ddim_automatic", "a1111_ddim_cfgpp_automatic", "a1111_plms_automatic", "a1111_unipc_automatic"]);
}
