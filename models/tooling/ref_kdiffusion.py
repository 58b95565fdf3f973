"""Reference fixtures for Easel's k-diffusion samplers: the sigma schedules and the per-step latents of every
k-diffusion sampler that AUTOMATIC1111 and ComfyUI offer, and the torchsde Brownian tree both use.

Owns: ``tests/fixtures/kdiffusion/`` — the case lists below, the recording, and ``cases.json`` (the index).
Nothing of the upstream programs is copied into this project: every array comes from RUNNING the upstream
modules (A1111 and ComfyUI out of checkouts given on the command line; crowsonkb's k-diffusion and torchsde
from the pinned PyPI packages in ``models/requirements.txt``), with small stand-ins (installed into
``sys.modules`` here, through ``tooling.upstream``) for the heavy modules they import (``modules.shared``, ``modules.devices``,
``comfy.model_management``, ``comfy.utils``, torchvision, torchdiffeq, einops, ...).

The model is SD 1.5's discrete schedule (scaled_linear betas 0.00085..0.012, 1000 steps) wrapped by each
tool's own denoiser (A1111: k-diffusion ``CompVisDenoiser``, i.e. ``DiscreteEpsDDPMDenoiser`` over the LDM
``alphas_cumprod``, and ``LCMCompVisDenoiser`` for LCM; ComfyUI: ``ModelSamplingDiscrete`` + ``EPS``
``calculate_input``/``timestep``/``calculate_denoised`` as ``BaseModel._apply_model`` uses them) around a
cheap deterministic stand-in for the UNet (``STANDIN`` below, also written into ``cases.json``)::

    eps(x_in, t) = 0.6 * x_in + 0.2 * sin(x_in * (1 + t / 1000))      (float32, t one value per image)

There is no CFG: the stand-in is the whole denoiser. A1111's ``CFGDenoiserKDiffusion`` / ``CFGDenoiserLCM``
are the real classes with only ``forward`` replaced (one call of their k-diffusion denoiser on the latent);
ComfyUI's guider is a stand-in that calls upstream ``comfy.samplers.cfg_function`` at cfg 1 with the
unconditional prediction equal to the conditional one (so the *_cfg_pp samplers' post-CFG hooks run).
The samplers are driven exactly as each tool drives them: A1111 ``KDiffusionSampler.sample`` (its
``get_sigmas``, ``initialize`` option plumbing, ``TorchHijack`` noise from ``rng.ImageRNG``, per-image
``BrownianTreeNoiseSampler`` with torchsde's ``_randn`` replaced by ``randn_local``); ComfyUI
``comfy.samplers.KSampler`` for the sigmas and ``sampler_object(name).sample`` (``KSAMPLER.sample``: noise
scaling, ``KSamplerX0Inpaint``, ``extra_args`` seed) for the run.

Upstream files used (commits and sha256 recorded in ``cases.json`` "source"): A1111
``modules/sd_samplers_kdiffusion.py``, ``sd_schedulers.py``, ``sd_samplers_common.py``,
``sd_samplers_extra.py``, ``sd_samplers_lcm.py``, ``sd_samplers_cfg_denoiser.py``, ``rng.py``,
``shared_options.py`` (option defaults, read with ``ast``) (master 82a973c, v1.10.1); ComfyUI
``comfy/samplers.py``, ``comfy/k_diffusion/{sampling,utils,deis,sa_solver}.py``, ``comfy/model_sampling.py``,
``comfy/ldm/modules/diffusionmodules/util.py``, ``comfy/extra_samplers/uni_pc.py``, ``comfy/model_patcher.py``
(Comfy-Org/ComfyUI a125cd8); PyPI ``k-diffusion`` (its ``sampling.py``/``external.py`` are identical to
crowsonkb/k-diffusion ab527a9, the commit A1111 pins in ``launch_utils.py``; compared and recorded by
``tooling.upstream.package_source``) and ``torchsde``.

Run from ``models/``::

    .venv/bin/python -m tooling.ref_kdiffusion --a1111 /path/to/stable-diffusion-webui \\
        --comfyui /path/to/ComfyUI ../tests/fixtures/kdiffusion

(or ``EASEL_A1111=... EASEL_COMFYUI=... models/sdtool reference kdiffusion tests/fixtures/kdiffusion``).

Writes (all arrays float32 little-endian, C order): ``noise.npy`` [2,4,8,8] (the seed-0 draw the initial latent
is made from), ``model_sigmas_{a1111,comfyui}.npy`` [1000] (each tool's ascending sigma table),
``schedules/<case>.npy``, ``samplers/<case>.{sigmas,x,denoised,out,calls}.npy``,
``brownian/<case>.{queries,increments}.npy`` and ``cases.json`` (schema in ``SCHEMA``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import re
import shutil
import types
import warnings
from pathlib import Path

import numpy as np

from . import upstream

RECORDER = "models/tooling/ref_kdiffusion.py"

# --------------------------------------------------------------------------------------------------
# Pinned upstream files (at the checkout commits of tooling.upstream.CHECKOUTS: per file the commit that last
# changed it and its sha256, LF)
# --------------------------------------------------------------------------------------------------

A1111_FILES = {
    "modules/sd_samplers_kdiffusion.py": ("874954060297d847bf30cc5d220effe80ac18968",
                                          "dfea07c3b6cc0af999add570bc0bb7249b0d6f86a71fbacb7d144a8dd1980555"),
    "modules/sd_schedulers.py": ("f6f055a93df4fb1a59fa8f28e3b8f092fd7ba511",
                                 "9e7e3d9102f9d0c6c1acdd09a94b19251b8e0ac25dd03f417e39564420366e57"),
    "modules/sd_samplers_common.py": ("a8fba9af35a081ada8c563fc6c76212dd131be01",
                                      "d5a5ead146fd150164a1acfb300a1f9694b6a4d8d93b25adeac3928840fb344e"),
    "modules/sd_samplers_extra.py": ("066afda2f6f650fe108d285a239d08d59d92590d",
                                     "5f673c435dab251f1bc1f7273be88e0993b6a0a9660c3ae5e1c5a57dd3890181"),
    "modules/sd_samplers_lcm.py": ("8e292373ec5c54493ce48af7c76f5eaa79dc8abd",
                                   "ff2785550c8acb6ac6ee2311ac6a5b116a729820e83181d1f12eb8f28b2a696d"),
    "modules/sd_samplers_cfg_denoiser.py": ("0a6628bad0615a640efd99937eb6d10d6d648975",
                                            "7a3126d2d1bffb657fcc7b7d197af77add52ef5c3c88c913f3d34217a7027ef9"),
    "modules/rng.py": ("e3fa46f26f78c01969eaca2708be4e2b4928c5a2",
                       "ccd5bf87e37cb8ddb0b0424f7bd94e464fd021b866deca56401eedcd91d2d190"),
    "modules/shared_options.py": ("5a10bb9aa6d4a46f5e14fa43648f4cb08ae1275b",
                                  "84d2e1e02e18028f022e55978f0838d5b3a8bbe453066326263dde02d3020525"),
}
# A1111's timestep samplers' files (the same checkout): file -> (commit, sha256 LF).
A1111_TIMESTEP_FILES = {
    "modules/sd_samplers_timesteps.py": ("663a4d80dfae5510257b362fd0015c8dc8b8bb5e",
                                         "d4ca79d8b882d92d21c83a090d144a52b34e6d2959faf1789f3be31906596ca6"),
    "modules/sd_samplers_timesteps_impl.py": ("0a6628bad0615a640efd99937eb6d10d6d648975",
                                              "b6ffc3dda0a5243b2184b15b2818fcd332238e1b5264cbb638afe6636487fdf5"),
    "modules/models/diffusion/uni_pc/uni_pc.py": ("13f22974a42df9f7a491fefe2912cdf72dcbebaf",
                                                  "57699d8afe15d3a05b47fd20155b78af189063d80dd3574ab1adf3245f1532d7"),
    "modules/torch_utils.py": ("9e60cdbc3f392b39143ee11b53cfec37c563682b",
                               "adc4351eb75b7f30a9eb89d4287decf5e14121f14d89fb606ee7c19c67afed43"),
}
COMFYUI_FILES = {
    "comfy/samplers.py": ("196954ab8c55bc4ac48113686a57ce250677c7b5",
                          "23d5c6d83bc4649833e8c79f61418288c380d0b14aaa8ca6063950fff36c844b"),
    "comfy/k_diffusion/sampling.py": ("1a85483da159f2800407ae5a8a45eb0d88ffce2d",
                                      "6bce1a552e847c6c65c6f134cdc9b5a68d5f93586872b709d376c6f9c2591a12"),
    "comfy/k_diffusion/utils.py": ("2b14041d4bda0b05f6b5277b37b845e719fcf3dc",
                                   "fc30630d8a0e4520b2e864c8f84deea3231c9b04d3f1404fec93fc425f629272"),
    "comfy/k_diffusion/deis.py": ("d9d7f3c6199d4d0547dff1410ca8fb3d9215f43e",
                                  "8d4e5057a062b77ef2e33af8208a2d6a3c3fbb431315a4c37689a307d66bc807"),
    "comfy/k_diffusion/sa_solver.py": ("aac10ad23a8f65243fcfca7afa7a72c1740312d6",
                                       "84f54b743f6491ea8e0a8ff21db88579016e374c9b7a05b3d84c3ac4454af461"),
    "comfy/model_sampling.py": ("6e59934089df3375e39db174340b6a937b226c83",
                                "127dd382157084b35d7500c83552bb40c0b9287ed09096ee699dd3695aa7c04a"),
    "comfy/ldm/modules/diffusionmodules/util.py": ("d7969cb070f9a59663d0b4ce7aabe7d49e236fc3",
                                                   "18db468ff259fda6737c0aee17a9d007d08b0067945e9164fd5d0221926a671e"),
    "comfy/extra_samplers/uni_pc.py": ("507199d9a8902f9dd35a90d4bd2fc3b12cdf54f1",
                                       "62a3bc207d60d10fc2700459c2090961ffa9f1199f1f1213ade0e4b97be6b04c"),
    "comfy/model_patcher.py": ("f1dd6e50f891b1d2b17e4b8d26d422634fe49595",
                               "7db37893ed49eb7fa4fce9bfaf1446615d57665951769384f43178b9985648aa"),
}
# --------------------------------------------------------------------------------------------------
# The recording's fixed inputs
# --------------------------------------------------------------------------------------------------

STEPS = 10
SCHEDULE_STEPS = (10, 1, 3)
SEED = 42  # ComfyUI KSampler seed; A1111 p.seed (image seeds 42, 43)
LATENT_SEED = 0
SHAPE = (2, 4, 8, 8)  # [B, C, h, w]: a batch of two 64x64 images

STANDIN = {
    "eps": "eps(x_in, t) = 0.6 * x_in + 0.2 * sin(x_in * (1 + t / 1000))",
    "float32_order": "all float32: a = t / 1000; s = 1 + a; eps = 0.6 * x_in + 0.2 * sin(x_in * s); t is one value "
                     "per image, broadcast over [C, h, w]",
    "x_in": "what the tool's denoiser wrapper feeds the UNet: x * c_in, c_in = 1 / sqrt(sigma^2 + 1) (k-diffusion "
            "get_scalings: (sigma ** 2 + sigma_data ** 2) ** 0.5 with sigma_data = 1; ComfyUI EPS.calculate_input "
            "the same expression)",
    "t_a1111": "k-diffusion DiscreteSchedule.sigma_to_t(sigma) with quantize = opts.enable_quantization (False): "
               "fractional, log-linear between the two neighbouring table entries (float32)",
    "t_a1111_lcm": "LCMCompVisDenoiser.sigma_to_t: argmin |ln sigma - log_sigmas(50-entry LCM table)| * 20 + 19 "
                   "(an int64 tensor; converted to float32 before the formula)",
    "t_comfyui": "ModelSamplingDiscrete.timestep(sigma).float(): argmin |ln sigma - log_sigmas| (integer valued)",
    "denoised": "x - sigma * eps (k-diffusion: input + eps * c_out with c_out = -sigma; ComfyUI EPS.calculate_denoised: "
                "model_input - model_output * sigma). LCM (A1111): its own get_scaled_out, see sd_samplers_lcm.py",
    "cfg": "none: the stand-in is the whole denoiser (A1111 CFGDenoiser.forward replaced by one call of the "
           "k-diffusion denoiser; ComfyUI cfg_function at cfg 1 with uncond_denoised = cond_denoised = denoised)",
    "initial_noise": "noise.npy = torch.randn([2,4,8,8], generator=torch.Generator('cpu').manual_seed(0)), float32",
    "initial_x_a1111": "KDiffusionSampler.sample: x = noise * sigmas[0] (opts.sgm_noise_multiplier False)",
    "initial_x_comfyui": "KSAMPLER.sample: EPS.noise_scaling(sigmas[0], noise, zeros, max_denoise): noise * sqrt(1 + "
                         "sigma0^2) when sigma0 is within rel 1e-5 of sigma_max (or above), else noise * sigma0; "
                         "then + latent_image (zeros)",
}

SCHEMA = {
    "schedules[]": {
        "name": "case name; the array is schedules/<name>.npy (absent when error is set)",
        "tool": "a1111 | comfyui",
        "scheduler": "as the tool spells it: A1111 the Schedule type label (Automatic, Uniform, Karras, ...); "
                     "ComfyUI the scheduler name (simple, karras, ...)",
        "sampler": "the sampler whose get_sigmas / KSampler.calculate_sigmas produced it (A1111 display name, "
                   "ComfyUI sampler name): decides the denoiser (LCM), the Automatic scheduler and discarding",
        "resolves_to": "A1111 Automatic: the scheduler actually used (a label, or 'model_wrap.get_sigmas')",
        "discard_penultimate_sigma": "the tool computed steps+1 sigmas and dropped the next-to-last one",
        "steps": "steps requested", "len": "number of sigmas (steps + 1, final 0 included where the tool adds it)",
        "dtype": "torch dtype of the tensor the tool returned (stored as float32)",
        "finite": "false where the tool's own result has NaN/inf (stored as is)",
        "error": "the exception text where the tool raised for this input (no file)",
    },
    "samplers[]": {
        "name": "case name; its arrays are samplers/<name>.<part>.npy",
        "tool": "a1111 | comfyui",
        "sampler": "A1111: the k-diffusion function name (funcname; restart_sampler / sample_lcm for the A1111 "
                   "functions); ComfyUI: the KSampler sampler name",
        "display_name": "A1111 sampler label (UI and infotext); null for ComfyUI",
        "scheduler": "A1111 Schedule type (Automatic or Karras); ComfyUI scheduler name",
        "resolves_to": "A1111 Automatic: the scheduler used", "steps": "steps requested",
        "seed": "seed the user gives; seeds: the per-image seeds A1111 uses (p.all_seeds)",
        "options": "A1111 sampler-table options (second_order, brownian_noise, solver_type, ...); ComfyUI extra_options",
        "kwargs": "the keyword arguments the tool passed to the sampler function besides model/x/sigmas/extra_args/"
                  "callback/disable (A1111: eta, s_churn, n, sigma_min, noise_sampler, solver_type ...; values made "
                  "JSON-safe: tensors -> floats, noise_sampler -> its class name)",
        "function": "ComfyUI: the function KSAMPLER runs",
        "stochastic": "whether the output changes with the seed (checked by re-running with seed + 1000 and with "
                      "another torch global seed; the global one never mattered)",
        "noise": "the tool's noise source for this sampler on the CPU (text); 'none (deterministic)' when not stochastic",
        "noise_note / global_rng_note": "noise drawn (so generators advance) but multiplied by 0 at these settings",
        "callback_note": "where the callback's x is not the latent the step starts from",
        "sigmas_note": "A1111 DPM fast / adaptive: what sigmas.npy means there",
        "sigmas_modified_in_place": "ComfyUI uni_pc: the sigma tensor after the run (last entry set to 0.001)",
        "noise_draws": "how many per-step randn draws the sampler made (A1111 ImageRNG.next calls after the "
                       "initial one; ComfyUI default_noise_sampler calls)",
        "brownian_queries": "how many BrownianTreeNoiseSampler calls the sampler made",
        "x0_scale": "the initial x is noise.npy * x0_scale (float32 multiply; see standin initial_x_*)",
        "sigma_dtype": "dtype of the sigma tensor handed to the sampler function",
        "callback_i": "the 'i' of each callback, in order",
        "model_calls": "number of denoiser evaluations",
        "files": {
            "sigmas": "[len] the sigmas handed to the sampler function (cloned before the run: ComfyUI's uni_pc "
                      "overwrites the last entry in place)",
            "x": "[n_callbacks, 2,4,8,8] the callback's 'x': the latent the step starts from, except where the "
                 "case has callback_note (dpm_adaptive, uni_pc: the callback comes after the step)",
            "denoised": "[n_callbacks, 2,4,8,8] the callback's 'denoised'",
            "out": "[2,4,8,8] the sampler's return value (ComfyUI after inverse_noise_scaling)",
            "calls": "[model_calls, 2]: per denoiser evaluation the sigma it got and the timestep t the stand-in got "
                     "(first image; every image had the same)",
        },
        "same_as": "set instead of files where this sampler's run was bit-identical to another case (verified); "
                   "why: the reason",
    },
    "brownian[]": {
        "name": "case name", "tool": "a1111 | comfyui",
        "construction": "how the tool builds the tree (class, t0, t1, w0 shape, entropy per tree, torchsde kwargs)",
        "queries": "brownian/<name>.queries.npy [n, 2]: (sigma, sigma_next) in the order the sampler asked",
        "increments": "brownian/<name>.increments.npy [n, 2,4,8,8]: BatchedBrownianTree(sigma, sigma_next) = "
                      "W(sigma_next) - W(sigma); the noise sampler returns it / sqrt(|sigma_next - sigma|)",
    },
}

# ComfyUI names whose run is, on the CPU, the same code path as another name's (they only move the Brownian
# tree to x's device, or add inpaint-only options); recorded as same_as after checking bit-equality.
COMFYUI_SAME_AS = {
    "dpmpp_sde_gpu": "dpmpp_sde",
    "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun_gpu": "dpmpp_2m_sde_heun",
    "dpmpp_3m_sde_gpu": "dpmpp_3m_sde",
    "ddim": "euler",
}
COMFYUI_SAME_AS_WHY = {
    "ddim": "sampler_object('ddim') = ksampler('euler', inpaint_options={'random': True}); the option only matters "
            "with a denoise mask",
    "_gpu": "BrownianTreeNoiseSampler(..., cpu=False): the tree lives on x's device; on the CPU that is the same "
            "tree as cpu=True. On a CUDA device the tree draws from CUDA generators (not recorded)",
}

CALLBACK_NOTES = {
    "dpm_adaptive": "the callback comes after every attempted step (accepted or rejected): x is the latent after it "
                    "(unchanged when rejected), denoised the prediction at the step's start; the number of steps is "
                    "chosen by the error controller, not by steps",
    "uni_pc": "the callback comes after each step: x is UniPC's variance-preserving latent (the k-diffusion latent "
              "times alpha = 1 / sqrt(1 + sigma^2) of the sigma reached), denoised the data prediction",
}
CALLBACK_NOTES["timesteps"] = ("A1111's timestep samplers call back after each step: x is the variance-preserving "
                                "latent the step produced, denoised its pred_x0; sigmas.npy holds the timesteps "
                                "(whole numbers) and calls.npy the timestep twice per model call")
CALLBACK_NOTES["a1111_unipc"] = ("; UniPC (uni_pc.UniPC.sample, multistep, A1111's options) calls back after each "
                                  "update with its data prediction, and with none after the last (no model call "
                                  "there): that denoised entry is the x reached")
CALLBACK_NOTES["sample_dpm_adaptive"] = CALLBACK_NOTES["dpm_adaptive"]
CALLBACK_NOTES["uni_pc_bh2"] = CALLBACK_NOTES["uni_pc"]

# A1111's timestep samplers (sd_samplers_timesteps.py: CompVisSampler over CompVisTimestepsDenoiser): DDIM,
# DDIM CFG++, PLMS and UniPC, all recorded (A1111_TIMESTEP_FILES).

# A1111 options the recording reads (modules.shared.opts); defaults come from shared_options.py.
A1111_OPT_KEYS = [
    "randn_source", "eta_noise_seed_delta", "eta_ancestral", "s_churn", "s_tmin", "s_tmax", "s_noise",
    "s_min_uncond", "sigma_min", "sigma_max", "rho", "always_discard_next_to_last_sigma",
    "use_old_karras_scheduler_sigmas", "no_dpmpp_sde_batch_determinism", "sgm_noise_multiplier",
    "enable_quantization", "beta_dist_alpha", "beta_dist_beta", "skip_early_cond", "eta_ddim", "uni_pc_variant",
    "uni_pc_skip_type", "uni_pc_order", "uni_pc_lower_order_final",
]
A1111_OPT_OVERRIDES = {"randn_source": "CPU"}

# The comfy packages the recording imports from (made over the checkout's folders; their __init__ files not run).
COMFY_PACKAGES = ("", "k_diffusion", "ldm", "ldm/modules", "ldm/modules/diffusionmodules", "extra_samplers")


def slug(name: str) -> str:
    s = name.lower().replace("++", "pp").replace("+", "p")
    return re.sub(r"[^a-z0-9]+", "_", s).strip("_")


# --------------------------------------------------------------------------------------------------
# The stand-in model and recording helpers
# --------------------------------------------------------------------------------------------------

def _new_counts() -> dict:
    """A sampler run's randomness: per-step noise draws, and the Brownian-tree queries (pairs and noise)."""
    return {"noise_draws": 0, "brownian_queries": 0, "brownian_pairs": [], "brownian_noise": []}


def _counting_brownian(cls, counts: dict):
    """``cls.__call__`` (a BrownianTreeNoiseSampler class) patched to record each query into ``counts``."""
    call = cls.__call__

    def counting_bt(ns, sigma, sigma_next):
        counts["brownian_queries"] += 1
        counts["brownian_pairs"].append((float(sigma), float(sigma_next)))
        w = call(ns, sigma, sigma_next)
        counts["brownian_noise"].append(w.detach().clone())
        return w

    return upstream.patched(cls, "__call__", counting_bt)


def standin_eps(x_in, t):
    """STANDIN["eps"] in float32; ``t`` is [B] (any dtype), broadcast over the other dims."""
    import torch

    x_in = x_in.to(torch.float32)
    t = t.to(torch.float32).reshape(-1, *([1] * (x_in.ndim - 1)))
    a = t / 1000
    s = 1 + a
    return 0.6 * x_in + 0.2 * torch.sin(x_in * s)


def sd15_betas():
    """SD 1.5's betas as LDM's make_beta_schedule builds them: float64 (ComfyUI's copy of that function)."""
    util = importlib.import_module("comfy.ldm.modules.diffusionmodules.util")
    return util.make_beta_schedule("linear", 1000, linear_start=0.00085, linear_end=0.012)


class Recorder:
    """Collects the callback's x/denoised and every denoiser evaluation of one sampler run."""

    def __init__(self):
        self.xs, self.denoised, self.callback_i, self.calls = [], [], [], []
        self.pending_sigma = None

    def callback(self, d):
        self.xs.append(d["x"].detach().clone())
        # (A1111's UniPC hands its last callback no prediction: the x it reached stands in, see CALLBACK_NOTES)
        self.denoised.append((d["x"] if d["denoised"] is None else d["denoised"]).detach().clone())
        self.callback_i.append(int(d["i"]))

    def sigma(self, sigma):
        import torch

        s = torch.as_tensor(sigma).detach().reshape(-1)
        assert torch.all(s == s[0]), "per-image sigmas differ"
        self.pending_sigma = float(s[0])

    def timestep(self, t):
        import torch

        t = torch.as_tensor(t).detach().reshape(-1).to(torch.float64)
        assert torch.all(t == t[0]), "per-image timesteps differ"
        assert self.pending_sigma is not None, "a model call without a sigma"
        self.calls.append((self.pending_sigma, float(t[0])))
        self.pending_sigma = None


def _json_value(v):
    import torch

    if isinstance(v, torch.Tensor):
        return float(v) if v.numel() == 1 else [float(x) for x in v.reshape(-1)]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return type(v).__name__


# --------------------------------------------------------------------------------------------------
# A1111
# --------------------------------------------------------------------------------------------------

class A1111:
    """A1111's k-diffusion samplers (sd_samplers_kdiffusion, sd_samplers_lcm, sd_schedulers, ...) with stand-ins
    for webui's runtime and an LDM model stand-in carrying alphas_cumprod and apply_model."""

    def __init__(self, root: Path, betas):
        import torch
        import torchsde._brownian.brownian_interval as bi

        self.root = upstream.a1111_checkout(root, A1111_FILES)
        self.opt_defaults = upstream.option_defaults(self.root / "modules/shared_options.py", A1111_OPT_KEYS)
        self.opts = types.SimpleNamespace(**{**self.opt_defaults, **A1111_OPT_OVERRIDES})
        self.recorder = None
        self.original_torchsde_randn = bi._randn

        cpu = torch.device("cpu")
        # LatentDiffusion.register_schedule: alphas_cumprod = np.cumprod(1 - betas) in float64, stored float32.
        alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas.numpy(), axis=0), dtype=torch.float32)
        outer = self

        class LdmStandIn:
            """What k-diffusion's CompVisDenoiser / A1111's LCMCompVisDenoiser read from shared.sd_model."""
            parameterization = "eps"
            is_sdxl = False
            device = cpu

            def __init__(self):
                self.alphas_cumprod = alphas_cumprod
                self.model = types.SimpleNamespace(conditioning_key="crossattn")

            def apply_model(self, x, t, cond=None):
                if outer.recorder is not None:
                    outer.recorder.timestep(t)
                return standin_eps(x, t)

        self.sd_model = LdmStandIn()
        self.state = types.SimpleNamespace(sampling_step=0, sampling_steps=0, interrupted=False, skipped=False)
        upstream.a1111_runtime(self.opts, shared={"state": self.state, "sd_model": self.sd_model,
                                                  "total_tqdm": upstream.Anything()},
                               devices={"dtype": torch.float32},
                               sinks=("images", "sd_vae_approx", "sd_samplers", "sd_vae_taesd", "sd_models",
                                      "script_callbacks", "errors"))
        self.kd = upstream.kdiffusion_package()
        self.rng = importlib.import_module("modules.rng")
        self.common = importlib.import_module("modules.sd_samplers_common")  # replaces torchsde's _randn
        self.torchsde_randn = bi._randn
        assert self.torchsde_randn is not self.original_torchsde_randn
        bi._randn = self.original_torchsde_randn  # A1111's replacement only inside active() (ComfyUI uses torchsde's)
        self.schedulers = importlib.import_module("modules.sd_schedulers")
        self.kdiffusion = importlib.import_module("modules.sd_samplers_kdiffusion")
        self.lcm = importlib.import_module("modules.sd_samplers_lcm")
        self.table = [*self.kdiffusion.samplers_data_k_diffusion, *self.lcm.samplers_data_lcm]
        self.timesteps = importlib.import_module("modules.sd_samplers_timesteps")
        self.timestep_table = list(self.timesteps.samplers_data_timesteps)
        self.by_name = {d.name: d for d in [*self.table, *self.timestep_table]}

    def source(self, log) -> dict:
        src = upstream.pinned_source(self.root, "a1111", {**A1111_FILES, **A1111_TIMESTEP_FILES}, log, RECORDER)
        src["opts"] = {"defaults": self.opt_defaults, "overrides": A1111_OPT_OVERRIDES}
        return src

    @contextlib.contextmanager
    def active(self):
        """A1111's torchsde._randn replacement (installed at import) only while A1111 runs."""
        import torchsde._brownian.brownian_interval as bi

        with upstream.patched(bi, "_randn", self.torchsde_randn):
            yield

    def make_sampler(self, name: str):
        data = self.by_name[name]
        sampler = data.constructor(self.sd_model)
        sampler.config = data  # what sd_samplers.create_sampler does
        base = type(sampler.model_wrap_cfg)
        outer = self

        class WithoutCFG(base):
            """The tool's CFG denoiser class with CFG left out: one call of its k-diffusion denoiser."""

            def forward(self, x, sigma, **_extra_args):
                if outer.recorder is not None:
                    outer.recorder.sigma(sigma)
                out = self.inner_model(x, sigma, cond=None)
                if getattr(self, "need_last_noise_uncond", False):  # DDIM CFG++: without CFG the one prediction
                    self.last_noise_uncond = out.clone()
                return out

        cfg = WithoutCFG(sampler)
        cfg.model_wrap = sampler.model_wrap
        sampler.model_wrap_cfg = cfg
        return sampler

    def make_p(self, scheduler: str, steps: int, seed: int = SEED):
        o = self.opts
        seeds = [seed + i for i in range(SHAPE[0])]
        image_rng = self.rng.ImageRNG((SHAPE[1], SHAPE[2], SHAPE[3]), seeds)
        # processing.py __post_init__ / process_images_inner (subseed strength 0: all_seeds[i] = seed + i)
        return types.SimpleNamespace(
            steps=steps, scheduler=scheduler, hr_scheduler=None, is_hr_pass=False, sampler_noise_scheduler_override=None,
            extra_generation_params={}, eta=None, s_min_uncond=o.s_min_uncond, s_churn=o.s_churn, s_tmin=o.s_tmin,
            s_tmax=o.s_tmax or float("inf"), s_noise=o.s_noise, rng=image_rng, seed=seed,
            seeds=list(seeds), all_seeds=list(seeds), iteration=0,
            batch_size=SHAPE[0], cfg_scale=1.0, sampler_name=None)

    def sigmas(self, sampler_name: str, scheduler: str, steps: int):
        sampler = self.make_sampler(sampler_name)
        p = self.make_p(scheduler, steps)
        with self.active():
            return sampler.get_sigmas(p, steps), p

    def automatic(self, sampler_name: str) -> dict:
        opts = self.by_name[sampler_name].options
        name = opts.get("scheduler")
        sched = self.schedulers.schedulers_map.get(name) if name else None
        return {"resolves_to": sched.label if sched is not None else "model_wrap.get_sigmas",
                "discard_penultimate_sigma": bool(opts.get("discard_next_to_last_sigma", False))}

    def run(self, sampler_name: str, scheduler: str, noise, seed: int = SEED, global_seed: int = 987654321) -> dict:
        import io
        import torch
        import k_diffusion.sampling as kds

        sampler = self.make_sampler(sampler_name)
        p = self.make_p(scheduler, STEPS, seed)
        rec = Recorder()
        counts = _new_counts()
        first = p.rng.next()  # processing.py: x = self.rng.next() (the initial noise; replaced below)
        assert first.shape == noise.shape
        rng_next = p.rng.next

        def counting_next():
            counts["noise_draws"] += 1
            return rng_next()

        p.rng.next = counting_next
        orig_cb = sampler.callback_state

        def callback(d):
            rec.callback(d)
            orig_cb(d)

        sampler.callback_state = callback
        func = sampler.func
        seen = {}

        @functools.wraps(func)
        def recording_func(model, x, **kwargs):
            seen["x0"] = x.detach().clone()
            seen["kwargs"] = {k: v for k, v in kwargs.items() if k not in ("extra_args", "callback", "disable")}
            if "sigmas" in kwargs:
                seen["sigmas"] = kwargs["sigmas"].detach().clone()
            if "timesteps" in kwargs:  # A1111's timestep samplers: the timesteps take the sigmas' place
                seen["sigmas"] = kwargs["timesteps"].detach().clone()
            return func(model, x, **kwargs)

        sampler.func = recording_func
        torch.manual_seed(global_seed)
        global_state = torch.get_rng_state()
        self.recorder = rec
        try:  # (stderr: A1111 passes disable=False to the samplers' tqdm bars)
            with self.active(), _counting_brownian(kds.BrownianTreeNoiseSampler, counts), \
                    contextlib.redirect_stderr(io.StringIO()):
                out = sampler.sample(p, noise.clone(), None, None)
        finally:
            self.recorder = None
        sigmas_used = seen.get("sigmas")
        if sigmas_used is None:  # dpm_fast / dpm_adaptive: no sigmas argument; record get_sigmas' result
            sigmas_used, _ = self.sigmas(sampler_name, scheduler, STEPS)
        return {
            "rec": rec, "out": out, "sigmas": sigmas_used, "x0": seen["x0"], "kwargs": seen["kwargs"],
            "noise_draws": counts["noise_draws"], "brownian_queries": counts["brownian_queries"],
            "brownian_pairs": counts["brownian_pairs"], "brownian_noise": counts["brownian_noise"],
            "global_rng_used": not torch.equal(global_state, torch.get_rng_state()), "p": p, "sampler": sampler,
        }

    def brownian(self, x, sigmas, pairs):
        """The tree exactly as KDiffusionSampler.create_noise_sampler builds it, queried with ``pairs``."""
        sampler = self.make_sampler("DPM++ SDE")
        p = self.make_p("Automatic", STEPS)
        with self.active():
            ns = sampler.create_noise_sampler(x, sigmas, p)
            incs, normed = _query_tree(ns, pairs)
        construction = {
            "class": "k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=p.all_seeds[0:2]) "
                     "(sd_samplers_common.Sampler.create_noise_sampler)",
            "sigma_min": "sigmas[sigmas > 0].min() of the sampler's sigmas", "sigma_max": "sigmas.max()",
            **_tree_span(ns),
            "trees": "one torchsde.BrownianTree per image (BatchedBrownianTree batched=True), w0 = zeros_like(x)[0] "
                     "= zeros [4,8,8] float32; increments stacked on a new first axis",
            "torchsde_kwargs": TORCHSDE_KWARGS,
            "randn": "torchsde._brownian.brownian_interval._randn replaced by A1111 (sd_samplers_common."
                     "replace_torchsde_browinan): devices.randn_local(seed, size) = torch.randn(size, generator="
                     "torch.Generator('cpu').manual_seed(int(seed))) with randn_source CPU, then .to(dtype)",
        }
        return construction, incs, normed


def torch_as(v):
    import torch

    return torch.as_tensor(v)


# BrownianTreeNoiseSampler's torchsde.BrownianTree arguments (both tools)
TORCHSDE_KWARGS = {"tol": 1e-6, "pool_size": 24, "halfway_tree": True, "(BrownianTree defaults)": True}


def _query_tree(ns, pairs):
    """A BrownianTreeNoiseSampler ``ns`` queried with each (sigma, sigma_next) of ``pairs``: the tree's
    increments W(t1) - W(t0) and the noise the sampler returns."""
    incs, normed = [], []
    for s, sn in pairs:
        t0, t1 = ns.transform(torch_as(s)), ns.transform(torch_as(sn))
        incs.append(ns.tree(t0, t1))
        normed.append(ns(torch_as(s), torch_as(sn)))
    return incs, normed


def _tree_span(ns) -> dict:
    """t0 / t1 of the sampler's first tree and the entropy (seed) of each tree."""
    return {"t0": float(ns.tree.trees[0]._interval._start), "t1": float(ns.tree.trees[0]._interval._end),
            "entropy": [int(t._interval._entropy) for t in ns.tree.trees]}


# --------------------------------------------------------------------------------------------------
# ComfyUI
# --------------------------------------------------------------------------------------------------

class ComfyUI:
    """ComfyUI's comfy/samplers.py (KSampler, KSAMPLER, schedulers) and comfy/k_diffusion with stand-ins for the
    model-management side; the model is ModelSamplingDiscrete + EPS around the stand-in eps."""

    def __init__(self, root: Path):
        import torch

        upstream.optional_standins()
        self.root = upstream.comfyui_checkout(root, COMFYUI_FILES, COMFY_PACKAGES)
        cpu = torch.device("cpu")
        upstream.sink_module("comfy.model_management", intermediate_device=lambda: cpu, get_torch_device=lambda: cpu)
        for name in ("sampler_helpers", "patcher_extension", "hooks", "context_windows", "utils", "float", "lora",
                     "comfy_types", "cli_args", "conds"):
            upstream.sink_module(f"comfy.{name}")
        self.model_patcher = importlib.import_module("comfy.model_patcher")
        self.model_sampling = importlib.import_module("comfy.model_sampling")
        self.sampling = importlib.import_module("comfy.k_diffusion.sampling")
        self.samplers = importlib.import_module("comfy.samplers")
        self.recorder = None

        ms_mod = self.model_sampling
        # comfy.model_base.model_sampling(model_config, ModelType.EPS): class ModelSampling(ModelSamplingDiscrete, EPS)
        self.ms = type("ModelSampling", (ms_mod.ModelSamplingDiscrete, ms_mod.EPS), {})(None)
        outer = self

        class BaseModelStandIn:
            """comfy.model_base.BaseModel._apply_model around the stand-in eps (no conds, float32)."""

            def __init__(self):
                self.model_sampling = outer.ms

            def apply_model(self, x, t, **_kwargs):
                sigma = t
                xc = self.model_sampling.calculate_input(sigma, x)
                xc = xc.to(torch.float32)
                t = self.model_sampling.timestep(t).float()
                if outer.recorder is not None:
                    outer.recorder.timestep(t)
                model_output = standin_eps(xc, t).float()
                return self.model_sampling.calculate_denoised(sigma, model_output, x)

        class ModelPatcherStandIn:
            def __init__(self, model):
                self.model = model
                self.model_options = {"transformer_options": {}}

            def get_model_object(self, name):
                if name == "model_sampling":
                    return self.model.model_sampling
                raise AttributeError(name)

        class GuiderStandIn:
            """comfy.samplers.CFGGuider at cfg 1 for a model without conds: the prediction goes through upstream
            cfg_function (and so the samplers' post-CFG hooks) with uncond_denoised = cond_denoised."""

            def __init__(self, patcher):
                self.model_patcher = patcher
                self.inner_model = patcher.model

            def __call__(self, x, timestep, model_options={}, seed=None):
                if outer.recorder is not None:
                    outer.recorder.sigma(timestep)
                pred = self.inner_model.apply_model(x, timestep)
                return outer.samplers.cfg_function(self.inner_model, pred, pred, 1.0, x, timestep,
                                                   model_options=model_options, cond=None, uncond=None)

        self.patcher = ModelPatcherStandIn(BaseModelStandIn())
        self.guider_class = GuiderStandIn

    def source(self, log) -> dict:
        return upstream.pinned_source(self.root, "comfyui", COMFYUI_FILES, log, RECORDER)

    def sampler_names(self) -> list[str]:
        return list(self.samplers.SAMPLER_NAMES)

    def sigmas(self, sampler: str, scheduler: str, steps: int):
        ks = self.samplers.KSampler(self.patcher, steps, "cpu", sampler=sampler, scheduler=scheduler, denoise=1.0)
        assert ks.sampler == sampler and ks.scheduler == scheduler
        return ks.sigmas

    def run(self, name: str, scheduler: str, noise, seed: int = SEED, global_seed: int = 987654321) -> dict:
        import torch

        sampling = self.sampling
        sigmas = self.sigmas(name, scheduler, STEPS)
        sampler = self.samplers.sampler_object(name)
        rec = Recorder()
        counts = _new_counts()
        dns = sampling.default_noise_sampler

        def counting_default_noise_sampler(x, seed=None):
            inner = dns(x, seed=seed)

            def draw(sigma, sigma_next):
                counts["noise_draws"] += 1
                return inner(sigma, sigma_next)
            return draw

        seen = {}
        func = sampler.sampler_function

        @functools.wraps(func)
        def recording_func(model, x, sigmas_arg, *args, **kwargs):
            seen["x0"] = x.detach().clone()
            seen["sigma_dtype"] = str(sigmas_arg.dtype)
            return func(model, x, sigmas_arg, *args, **kwargs)

        sampler.sampler_function = recording_func
        guider = self.guider_class(self.patcher)
        sigmas_in = sigmas.clone()
        # CFGGuider.inner_sample: extra_args = {"model_options": <clone + transformer_options.sample_sigmas>, "seed": seed}
        extra_args = {"model_options": {"transformer_options": {"sample_sigmas": sigmas}}, "seed": seed}
        torch.manual_seed(global_seed)
        global_state = torch.get_rng_state()
        self.recorder = rec
        try:
            with upstream.patched(sampling, "default_noise_sampler", counting_default_noise_sampler), \
                    _counting_brownian(sampling.BrownianTreeNoiseSampler, counts):
                out = sampler.sample(guider, sigmas, extra_args, lambda i, d, x, n: rec.callback(
                    {"i": i, "denoised": d, "x": x}), noise.clone(), latent_image=torch.zeros_like(noise),
                    denoise_mask=None, disable_pbar=True)
        finally:
            self.recorder = None
        return {
            "rec": rec, "out": out, "sigmas": sigmas_in, "x0": seen["x0"], "kwargs": dict(sampler.extra_options),
            "sigma_dtype": seen["sigma_dtype"], "noise_draws": counts["noise_draws"],
            "brownian_queries": counts["brownian_queries"], "brownian_pairs": counts["brownian_pairs"],
            "brownian_noise": counts["brownian_noise"], "global_rng_used": not torch.equal(global_state, torch.get_rng_state()),
            "sigmas_after": sigmas.clone(),
        }

    def brownian(self, x, sigmas, pairs):
        """The tree exactly as comfy's sample_dpmpp_sde builds it, queried with ``pairs``."""
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        ns = self.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=SEED, cpu=True)
        incs, normed = _query_tree(ns, pairs)
        construction = {
            "class": "comfy.k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args"
                     "['seed'], cpu=True) (sample_dpmpp_sde, sample_dpmpp_2m_sde, sample_dpmpp_3m_sde)",
            "sigma_min": "sigmas[sigmas > 0].min()", "sigma_max": "sigmas.max()",
            **_tree_span(ns),
            "trees": "one torchsde.BrownianTree for the whole batch (seed is an int, batched=False), w0 = "
                     "zeros_like(x) = zeros [2,4,8,8] float32 on the CPU; t0/t1 queried as float32 CPU tensors",
            "torchsde_kwargs": TORCHSDE_KWARGS,
            "randn": "torchsde's own _randn: torch.randn(size, dtype, device, generator=torch.Generator(device)."
                     "manual_seed(int(seed)))",
        }
        return construction, incs, normed


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------

def _dumps(obj, indent: int = 0) -> str:
    """JSON with one item per line, except lists of scalars, which stay on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + _dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def _save(path: Path, arr) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, upstream.f32(arr) if not isinstance(arr, np.ndarray) else np.ascontiguousarray(arr.astype("<f4")))
    return path.stat().st_size


def _schedule_entry(name, tool, sampler, scheduler, steps, fn, out: Path, extra=None) -> dict:
    import torch

    entry = {"name": name, "tool": tool, "sampler": sampler, "scheduler": scheduler, "steps": steps, **(extra or {})}
    try:
        sig = fn()
    except Exception as e:  # noqa: BLE001 - recorded: what the tool does for this input
        entry["error"] = f"{type(e).__name__}: {e}"
        return entry
    sig = torch.as_tensor(sig)
    entry["dtype"] = str(sig.dtype)
    entry["len"] = int(sig.numel())
    entry["finite"] = bool(torch.isfinite(sig).all())
    entry["file"] = f"schedules/{name}.npy"
    _save(out / entry["file"], sig)
    return entry


def record_schedules(a: A1111, c: ComfyUI, out: Path, log) -> tuple[list, dict]:
    entries = []
    generic = "Euler"
    for steps in SCHEDULE_STEPS:
        for sched in a.schedulers.schedulers:
            entries.append(_schedule_entry(
                f"a1111_{slug(generic)}_{slug(sched.label)}_{steps}", "a1111", generic, sched.label, steps,
                lambda s=sched, n=steps: a.sigmas(generic, s.label, n)[0], out,
                {"discard_penultimate_sigma": False} | ({"resolves_to": a.automatic(generic)["resolves_to"]}
                                                        if sched.label == "Automatic" else {})))
        for d in a.table:
            if d.name == generic:
                continue
            auto = a.automatic(d.name)
            entries.append(_schedule_entry(
                f"a1111_{slug(d.name)}_automatic_{steps}", "a1111", d.name, "Automatic", steps,
                lambda n=steps, name=d.name: a.sigmas(name, "Automatic", n)[0], out, auto))
    # LCM's denoiser has its own 50-entry table: every scheduler that asks the inner model differs there.
    for sched in a.schedulers.schedulers:
        if sched.label == "Automatic":
            continue
        entries.append(_schedule_entry(
            f"a1111_lcm_{slug(sched.label)}_{STEPS}", "a1111", "LCM", sched.label, STEPS,
            lambda s=sched: a.sigmas("LCM", s.label, STEPS)[0], out, {"discard_penultimate_sigma": False}))
    for steps in SCHEDULE_STEPS:
        for sched in c.samplers.SCHEDULER_NAMES:
            entries.append(_schedule_entry(
                f"comfyui_euler_{sched}_{steps}", "comfyui", "euler", sched, steps,
                lambda s=sched, n=steps: c.sigmas("euler", s, n), out, {"discard_penultimate_sigma": False}))
        for name in sorted(c.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS):
            entries.append(_schedule_entry(
                f"comfyui_{name}_simple_{steps}", "comfyui", name, "simple", steps,
                lambda n=steps, nm=name: c.sigmas(nm, "simple", n), out, {"discard_penultimate_sigma": True}))
    automatic = {d.name: {"function": d.constructor.__defaults__[0] if isinstance(d.constructor.__defaults__[0], str)
                          else d.constructor.__defaults__[0].__name__, **a.automatic(d.name)} for d in a.table}
    log(f"  schedules: {sum('file' in e for e in entries)} arrays, {sum('error' in e for e in entries)} errors")
    return entries, automatic


def _sampler_case(name, tool, result, out: Path, extra: dict) -> dict:
    import torch

    rec = result["rec"]
    files = {"sigmas": f"samplers/{name}.sigmas.npy", "x": f"samplers/{name}.x.npy",
             "denoised": f"samplers/{name}.denoised.npy", "out": f"samplers/{name}.out.npy",
             "calls": f"samplers/{name}.calls.npy"}
    _save(out / files["sigmas"], result["sigmas"])
    _save(out / files["x"], torch.stack(rec.xs))
    _save(out / files["denoised"], torch.stack(rec.denoised))
    _save(out / files["out"], result["out"])
    _save(out / files["calls"], np.array(rec.calls, dtype=np.float64).reshape(-1, 2))
    kwargs = {k: (f"<{files['sigmas']}>" if k in ("sigmas", "timesteps") else _json_value(v))
              for k, v in result["kwargs"].items()}
    case = {"name": name, "tool": tool, **extra, "steps": STEPS, "seed": SEED,
            "sigma_dtype": result.get("sigma_dtype") or str(result["sigmas"].dtype), "kwargs": kwargs,
            "noise_draws": result["noise_draws"], "brownian_queries": result["brownian_queries"],
            "x0_scale": result["x0_scale"], "callback_i": rec.callback_i, "model_calls": len(rec.calls),
            "files": files}
    return case


def _x0_scale(x0, noise) -> float:
    import torch

    scale = (x0.reshape(-1)[0] / noise.reshape(-1)[0]).item()
    s32 = torch.tensor(scale, dtype=torch.float32)
    # the scale as the float32 value the tool multiplied by
    for cand in (s32, torch.nextafter(s32, torch.tensor(math.inf)), torch.nextafter(s32, torch.tensor(-math.inf))):
        if torch.equal(noise * cand, x0):
            return float(cand)
    raise AssertionError("initial x is not noise times one float32 scalar")


def _stochastic(run, r) -> dict:
    """Run again with other seeds (tool seed and torch's global one): which randomness reaches the output."""
    import torch

    other_seed = run(seed=SEED + 1000)
    other_global = run(global_seed=123456789)  # (DPM adaptive: other noise may take another number of steps)
    return {"seeded": not torch.equal(other_seed["out"], r["out"]),
            "global": not torch.equal(other_global["out"], r["out"]),
            "global_rng_used": r["global_rng_used"]}


def _noise_fields(st: dict, r: dict, desc: str) -> dict:
    draws = r["noise_draws"] or r["brownian_queries"]
    if st["global"]:
        raise AssertionError("a sampler's output depends on torch's global generator")
    fields = {"stochastic": st["seeded"], "noise": desc if st["seeded"] else "none (deterministic)"}
    if draws and not st["seeded"]:
        fields["noise_note"] = ("draws noise (counted in noise_draws, advancing the generators) but multiplies it "
                                "by 0 at these settings (s_churn 0 / eta 0)")
    if st["global_rng_used"]:
        fields["global_rng_note"] = ("draws from torch's global generator (torch.randn_like) without using the "
                                     "values at these settings (s_churn 0)")
    return fields


def record_samplers(a: A1111, c: ComfyUI, noise, out: Path, log) -> tuple[list, list, dict]:
    import torch

    cases, skipped, pairs = [], [], {}
    a1111_noise = ("randn_like -> sd_samplers_common.TorchHijack -> rng.ImageRNG.next(): per-image torch CPU "
                   "generators seeded p.seeds = [42, 43], one [4,8,8] draw each per call, stacked; the first draw of "
                   "each generator is the initial noise processing.py takes (consumed here; the run starts from "
                   "noise.npy)")
    a1111_brownian = ("BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=[42, 43]): one tree per image, torchsde "
                      "_randn = randn_local (see brownian[])")
    for d in a.table:
        auto = a.automatic(d.name)
        scheds = ["Automatic"]
        if auto["resolves_to"] != "Karras":
            scheds.append("Karras")
        for sched in scheds:
            name = f"a1111_{slug(d.name)}_{slug(sched)}"
            r = a.run(d.name, sched, noise)
            st = _stochastic(functools.partial(a.run, d.name, sched, noise), r)
            r["x0_scale"] = _x0_scale(r["x0"], noise)
            func = d.constructor.__defaults__[0]
            extra = {"sampler": func if isinstance(func, str) else func.__name__, "display_name": d.name,
                     "scheduler": sched, "resolves_to": auto["resolves_to"] if sched == "Automatic" else "Karras",
                     "discard_penultimate_sigma": auto["discard_penultimate_sigma"],
                     "seeds": list(r["p"].all_seeds), "options": _json_value(dict(d.options)),
                     **_noise_fields(st, r, a1111_brownian if r["brownian_queries"] else a1111_noise)}
            if extra["sampler"] in CALLBACK_NOTES:
                extra["callback_note"] = CALLBACK_NOTES[extra["sampler"]]
            if "sigmas" not in r["kwargs"]:
                extra["sigmas_note"] = ("the function takes sigma_min/sigma_max of the model table and n = steps "
                                        "(kwargs); sigmas.npy is get_sigmas' result, used for x0 = noise * sigmas[0] "
                                        "only")
            cases.append(_sampler_case(name, "a1111", r, out, extra))
            if d.name == "DPM++ SDE" and sched == "Automatic":
                pairs["a1111"] = r
            log(f"  {name}: {len(r['rec'].callback_i)} callbacks, {len(r['rec'].calls)} model calls"
                + (", stochastic" if st["seeded"] else ""))
    for d in a.timestep_table:
        name = f"a1111_{slug(d.name)}_automatic"
        r = a.run(d.name, "Automatic", noise)
        st = _stochastic(functools.partial(a.run, d.name, "Automatic", noise), r)
        r["x0_scale"] = _x0_scale(r["x0"], noise)
        func = d.constructor.__defaults__[0]
        extra = {"sampler": func.__name__, "display_name": d.name, "kind": "timesteps", "scheduler": "Automatic",
                 "resolves_to": "CompVisSampler.get_timesteps (no sigma schedule)",
                 "discard_penultimate_sigma": False, "seeds": list(r["p"].all_seeds),
                 "options": _json_value(dict(d.options)),
                 "callback_note": CALLBACK_NOTES["timesteps"] + CALLBACK_NOTES.get(f"a1111_{func.__name__}", ""),
                 **_noise_fields(st, r, a1111_noise)}
        cases.append(_sampler_case(name, "a1111", r, out, extra))
        log(f"  {name}: {len(r['rec'].callback_i)} callbacks, {len(r['rec'].calls)} model calls")

    comfy_noise = ("comfy.k_diffusion.sampling.default_noise_sampler(x, seed=extra_args['seed']=42): one torch CPU "
                   "generator manual_seed(42) for the batch, torch.randn([2,4,8,8]) per call")
    comfy_brownian = ("BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=42, cpu=True): one tree for the batch "
                      "(see brownian[])")
    scheduler = c.samplers.KSampler.SCHEDULERS[0]  # the KSampler node's default (first combo entry)
    results = {}
    for name in c.sampler_names():
        case_name = f"comfyui_{name}_{scheduler}"
        try:
            r = c.run(name, scheduler, noise)
            st = _stochastic(functools.partial(c.run, name, scheduler, noise), r)
        except Exception as e:  # noqa: BLE001
            skipped.append({"tool": "comfyui", "sampler": name, "reason": f"raised {type(e).__name__}: {e}"})
            log(f"  {case_name}: SKIPPED ({type(e).__name__}: {e})")
            continue
        results[name] = r
        r["x0_scale"] = _x0_scale(r["x0"], noise)
        if name in ("dpm_fast", "dpm_adaptive"):
            function = f"comfy.samplers.ksampler's {name}_function -> comfy.k_diffusion.sampling.sample_{name}"
        elif name in ("uni_pc", "uni_pc_bh2"):
            function = "comfy.extra_samplers.uni_pc.sample_" + name.replace("uni_pc", "unipc") + " (not k-diffusion)"
        elif name == "ddim":
            function = "comfy.samplers.sampler_object('ddim') = ksampler('euler', inpaint_options={'random': True})"
        else:
            function = f"comfy.k_diffusion.sampling.sample_{name}"
        extra = {"sampler": name, "display_name": None, "scheduler": scheduler,
                 "discard_penultimate_sigma": name in c.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS,
                 "seeds": None, "options": {}, "function": function,
                 **_noise_fields(st, r, comfy_brownian if r["brownian_queries"] else comfy_noise)}
        if name in CALLBACK_NOTES:
            extra["callback_note"] = CALLBACK_NOTES[name]
        if not torch.equal(r["sigmas_after"], r["sigmas"]):
            extra["sigmas_modified_in_place"] = _json_value(r["sigmas_after"])
        if name in COMFYUI_SAME_AS and COMFYUI_SAME_AS[name] in results:
            ref = results[COMFYUI_SAME_AS[name]]
            same = (torch.equal(ref["out"], r["out"]) and len(ref["rec"].xs) == len(r["rec"].xs)
                    and all(torch.equal(p, q) for p, q in zip(ref["rec"].xs, r["rec"].xs))
                    and all(torch.equal(p, q) for p, q in zip(ref["rec"].denoised, r["rec"].denoised)))
            if same:
                why = COMFYUI_SAME_AS_WHY["ddim" if name == "ddim" else "_gpu"]
                case = {"name": case_name, "tool": "comfyui", **extra, "steps": STEPS, "seed": SEED,
                        "same_as": f"comfyui_{COMFYUI_SAME_AS[name]}_{scheduler}", "why": why,
                        "noise_draws": r["noise_draws"], "brownian_queries": r["brownian_queries"],
                        "x0_scale": r["x0_scale"], "model_calls": len(r["rec"].calls)}
                cases.append(case)
                log(f"  {case_name}: same as {case['same_as']}")
                continue
            log(f"  {case_name}: differs from {COMFYUI_SAME_AS[name]}; recorded in full")
        cases.append(_sampler_case(case_name, "comfyui", r, out, extra))
        if name == "dpmpp_sde":
            pairs["comfyui"] = r
        log(f"  {case_name}: {len(r['rec'].callback_i)} callbacks, {len(r['rec'].calls)} model calls"
            + (", stochastic" if st["seeded"] else ""))
    return cases, skipped, pairs


def record_brownian(a: A1111, c: ComfyUI, runs: dict, out: Path, log) -> list:
    """The Brownian tree alone, built as each tool builds it for DPM++ SDE, queried in the order the 10-step
    sampler asked (checked against what the sampler itself got)."""
    import torch

    entries = []
    for tool, impl, sampler in (("a1111", a, "DPM++ SDE (Automatic = Karras)"), ("comfyui", c, "dpmpp_sde (simple)")):
        r = runs[tool]
        x, sigmas, qs = r["x0"], r["sigmas"], r["brownian_pairs"]
        construction, incs, normed = impl.brownian(x, sigmas, qs)
        name = f"{tool}_dpmpp_sde"
        for (s, sn), inc, nrm, got in zip(qs, incs, normed, r["brownian_noise"]):
            assert torch.equal(nrm, got), "a fresh tree differs from the sampler's"
            d = (torch.as_tensor(sn) - torch.as_tensor(s)).abs().sqrt()
            assert torch.allclose(inc / d, nrm, rtol=1e-6, atol=1e-6)
        entry = {"name": name, "tool": tool, "sampler": sampler, "x_shape": list(x.shape), "construction": construction,
                 "sigmas": f"samplers/{tool}_{'dpmpp_sde_automatic' if tool == 'a1111' else 'dpmpp_sde_simple'}"
                           ".sigmas.npy",
                 "n_queries": len(qs), "queries": f"brownian/{name}.queries.npy",
                 "increments": f"brownian/{name}.increments.npy",
                 "normalised": "noise the sampler got = increments / sqrt(|sigma_next - sigma|) (float32; equal to "
                               "the sampler run's noise, checked)"}
        _save(out / entry["queries"], np.array(qs, dtype=np.float64))
        _save(out / entry["increments"], torch.stack(incs))
        entries.append(entry)
        log(f"  brownian {name}: {len(qs)} queries")
    return entries


def main(out: Path, a1111_dir: str | None = None, comfyui_dir: str | None = None, log=print) -> int:
    import torch

    a1111_dir, comfyui_dir = upstream.checkouts("ref_kdiffusion", a1111_dir, comfyui_dir)
    out = Path(out)
    for sub in ("schedules", "samplers", "brownian"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.npy"):
        stale.unlink()

    torch.set_num_threads(1)  # single-threaded: bit-identical reruns on the same machine
    os.environ.setdefault("TQDM_DISABLE", "1")  # A1111 passes disable=False to the samplers' progress bars
    # torchsde warns when a query lies a rounding error outside [t0, t1] (t0/t1 are rounded to tol=1e-6 digits,
    # the queries are float32 sigmas); it proceeds as usual. Recorded as is, not shown.
    warnings.filterwarnings("ignore", message="Should have t")
    # ComfyUI's dpm_fast/dpm_adaptive wrappers call torch.tensor() on a tensor sigma; harmless.
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    c = ComfyUI(comfyui_dir)  # first: its make_beta_schedule also builds A1111's alphas_cumprod
    betas = sd15_betas()
    a = A1111(a1111_dir, betas)

    noise = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(LATENT_SEED), dtype=torch.float32)
    _save(out / "noise.npy", noise)
    _save(out / "model_sigmas_a1111.npy", a.make_sampler("Euler").model_wrap.sigmas)
    _save(out / "model_sigmas_comfyui.npy", c.ms.sigmas)

    schedules, automatic = record_schedules(a, c, out, log)
    samplers, skipped, pairs = record_samplers(a, c, noise, out, log)
    brownian = record_brownian(a, c, pairs, out, log)

    a_wrap = a.make_sampler("Euler").model_wrap
    index = {
        "what": "sigma schedules, per-step latents and Brownian-tree increments of the k-diffusion samplers of A1111 "
                "(modules/sd_samplers_kdiffusion.py + crowsonkb k-diffusion) and ComfyUI (comfy/samplers.py + "
                "comfy/k_diffusion), recorded by running their code around a deterministic stand-in model",
        "regenerate": "cd models && .venv/bin/python -m tooling.ref_kdiffusion --a1111 DIR --comfyui DIR "
                      "../tests/fixtures/kdiffusion",
        "source": {"a1111": a.source(log), "comfyui": c.source(log), **upstream.package_source()},
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "standin": STANDIN,
        "model": {
            "schedule": "SD 1.5: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000, float64) ** 2, "
                        "alphas_cumprod = cumprod(1 - betas) (float64), sigma = sqrt((1 - ac) / ac)",
            "a1111": {"sigmas": "model_sigmas_a1111.npy",
                      "how": "alphas_cumprod stored float32 (LatentDiffusion.register_schedule), k-diffusion "
                             "DiscreteEpsDDPMDenoiser: sigmas = ((1 - ac) / ac) ** 0.5 in float32, log_sigmas = "
                             "sigmas.log()",
                      "sigma_min": float(a_wrap.sigma_min), "sigma_max": float(a_wrap.sigma_max)},
            "comfyui": {"sigmas": "model_sigmas_comfyui.npy",
                        "how": "ModelSamplingDiscrete: sigmas computed in float64, stored .float(); log_sigmas = "
                               "sigmas.log().float() (of the float64 values)",
                        "sigma_min": float(c.ms.sigma_min), "sigma_max": float(c.ms.sigma_max)},
        },
        "latent": {"shape": list(SHAPE), "noise": "noise.npy", "latent_seed": LATENT_SEED},
        "a1111_automatic": automatic,
        "comfyui_default_scheduler": c.samplers.KSampler.SCHEDULERS[0],
        "schema": SCHEMA,
        "schedules": schedules,
        "samplers": samplers,
        "skipped": skipped,
        "brownian": brownian,
    }
    (out / "cases.json").write_text(_dumps(index) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"  kdiffusion: {len(schedules)} schedules, {len(samplers)} sampler cases, {len(skipped)} skipped, "
        f"{len(brownian)} brownian; {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    upstream.cli(main, __doc__, "../tests/fixtures/kdiffusion")
