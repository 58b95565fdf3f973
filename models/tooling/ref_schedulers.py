"""Reference fixtures for Easel's samplers (``src/engine/scheduler/``), from real diffusers + torch.

Owns: writing ``tests/fixtures/schedulers/``. For each sampler x schedule x step count x config variant it
builds the scheduler the way a diffusers pipeline does when the user swaps samplers
(``<Class>.from_config(PNDMScheduler.from_config(file).config)``, plus ``use_karras_sigmas=True`` for the
Karras schedule), records ``timesteps``, ``init_noise_sigma`` and ``sigmas``, and runs a full denoising
loop exactly like ``StableDiffusionPipeline``'s (``randn`` latents from a seeded CPU generator times
``init_noise_sigma``; per call ``scale_model_input``, a model, then ``step`` with the same generator when
``step`` accepts one), saving every intermediate sample.

The "model" is a fixed non-linear function that uses only +, -, * and / in float32 so that the Rust test
can evaluate it bit for bit: ``eps = x*0.9 / (x*x*0.1 + 1) + 0.01*t/1000`` with ``x`` the scaled input.

Config variants: ``sd15`` is the SD 1.5 ``scheduler_config.json`` as first published (no
``timestep_spacing`` key, so each class uses its own default spacing); ``sd15_leading`` and
``sd15_trailing`` add the key as newer diffusers saves do; ``bare`` has only the beta schedule, so every
other setting is the target class's default (DDIM then clips x0 and ends at alpha 1).

Run from ``models/``: ``.venv/bin/python -m tooling.ref_schedulers ../tests/fixtures/schedulers`` (any
output folder works; ``tests/parity_schedulers.rs`` and the σ-table unit test read that one). Needs scipy,
which diffusers imports for LMSDiscreteScheduler.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

SD15_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# variant name -> (config, step counts, samplers to leave out)
VARIANTS = {
    "sd15": (SD15_CONFIG, [1, 2, 10, 25], []),
    "sd15_leading": ({**SD15_CONFIG, "timestep_spacing": "leading"}, [1, 2, 10], []),
    "sd15_trailing": ({**SD15_CONFIG, "timestep_spacing": "trailing"}, [1, 3, 10], []),
    # PNDM's own default is skip_prk_steps=False (Runge-Kutta warm-up), which Easel does not implement.
    "bare": (
        {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        [10],
        ["pndm"],
    ),
}

SAMPLERS = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "lms": LMSDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
KARRAS_SAMPLERS = {"euler", "heun", "lms", "dpmpp_2m", "unipc"}

SEED = 1234
LATENT_SHAPE = (1, 4, 8, 8)


def fake_denoiser(x: torch.Tensor, t) -> torch.Tensor:
    """The stand-in UNet: float32, only +, -, *, / (the Rust test repeats it op for op)."""
    c = 0.01 * float(t) / 1000.0
    return x * 0.9 / (x * x * 0.1 + 1.0) + c


def build(sampler: str, karras: bool, config: dict):
    # What a pipeline holds after loading the model folder, then the user's sampler swap.
    loaded = PNDMScheduler.from_config(dict(config))
    cls = SAMPLERS[sampler]
    if karras:
        return cls.from_config(loaded.config, use_karras_sigmas=True)
    return cls.from_config(loaded.config)


def run_case(sampler: str, karras: bool, config: dict, steps: int) -> tuple[dict, np.ndarray]:
    sched = build(sampler, karras, config)
    sched.set_timesteps(steps)
    generator = torch.Generator("cpu").manual_seed(SEED)
    latents = torch.randn(LATENT_SHAPE, generator=generator, dtype=torch.float32)
    init_noise_sigma = sched.init_noise_sigma
    latents = latents * init_noise_sigma
    accepts_generator = "generator" in inspect.signature(sched.step).parameters
    timesteps = [float(t) for t in sched.timesteps]
    samples = []
    for t in sched.timesteps:
        model_input = sched.scale_model_input(latents, t)
        eps = fake_denoiser(model_input, t)
        extra = {"generator": generator} if accepts_generator else {}
        latents = sched.step(eps, t, latents, return_dict=False, **extra)[0]
        samples.append(latents.detach().numpy().astype(np.float32))
    sigmas = getattr(sched, "sigmas", None)
    record = {
        "class": type(sched).__name__,
        "timesteps": timesteps,
        "init_noise_sigma": float(init_noise_sigma),
        "sigmas": None if sigmas is None else [float(s) for s in sigmas],
        "timestep_spacing": sched.config.timestep_spacing,
    }
    return record, np.stack(samples).astype(np.float32)


def main(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "seed": SEED,
        "latent_shape": list(LATENT_SHAPE),
        "denoiser": "eps = x*0.9 / (x*x*0.1 + 1) + f32(0.01*t/1000), x = scale_model_input(sample), float32",
        "variants": {name: cfg for name, (cfg, _, _) in VARIANTS.items()},
        "cases": [],
    }
    # The training table diffusers builds for SD 1.5 (float32), for a bit-level check of betas/cumprod.
    np.save(out / "sd15_alphas_cumprod.npy", PNDMScheduler.from_config(SD15_CONFIG).alphas_cumprod.numpy())
    for variant, (config, step_counts, skip) in VARIANTS.items():
        for sampler in SAMPLERS:
            if sampler in skip:
                continue
            for schedule in ["default", "karras"] if sampler in KARRAS_SAMPLERS else ["default"]:
                for steps in step_counts:
                    record, samples = run_case(sampler, schedule == "karras", config, steps)
                    name = f"{variant}_{sampler}_{schedule}_{steps}"
                    np.save(out / f"{name}.npy", samples)
                    manifest["cases"].append(
                        {
                            "name": name,
                            "variant": variant,
                            "sampler": sampler,
                            "schedule": schedule,
                            "steps": steps,
                            "file": f"{name}.npy",
                            **record,
                        }
                    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ref_schedulers.py OUT_DIR")
    print(main(sys.argv[1]))
