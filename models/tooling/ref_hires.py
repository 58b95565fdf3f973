"""Reference fixtures for Easel's hires fix (generate small, upscale, refine with image-to-image).

Owns: the definition of the hires fix as a composition of diffusers calls (float32, CPU, one thread),
run on the tiny torch model, and saving what the engine must reproduce:

1. first pass: ``StableDiffusionPipeline`` txt2img at width x height, ``output_type="latent"``,
   ``generator = torch.Generator("cpu").manual_seed(seed)``, ``num_images_per_prompt = batch_size``;
2. target size: ``floor(side * scale / 8) * 8`` for each side (``target_size``);
3. upscale, by ``upscaler``:
   * ``"latent"``: ``torch.nn.functional.interpolate(latents, size=(target_h // 8, target_w // 8),
     mode="bilinear", align_corners=False)``;
   * ``"lanczos"``: decode the first-pass latents with the pipeline's VAE and its normal postprocess
     (uint8 pictures), then ``picture.resize((target_w, target_h), Image.LANCZOS)``;
4. second pass: ``StableDiffusionImg2ImgPipeline`` (same components, a fresh scheduler of the same
   class and config) with ``image`` = the upscaled latents (4 channels: used as the init latents as they
   are, no VAE encode) or the resized pictures (VAE-encoded, a posterior sample), ``strength =
   hires.strength``, ``num_inference_steps = hires.steps or steps``, a NEW generator
   ``manual_seed(seed)``, the same prompt, negative prompt and guidance. The batch comes from the first
   pass: the prompt is given as a list of ``batch_size`` copies with ``num_images_per_prompt=1`` (diffusers
   does not pair a batch of init latents with one prompt), which gives the same text embeddings.

Both passes build their scheduler with ``make_scheduler`` from the model's original scheduler config.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_hires ../tests/fixtures/hires`` (or
``sdtool reference hires OUT``). Per case folder: ``settings.json`` (the case fields with ``hires``
{scale, strength, steps, upscaler}, and ``meta``: target width/height, both schedulers' timesteps, calls
and random draws), ``latents.npy`` float32 [calls, B, 4, h, w] (first pass, after every scheduler call),
``upscaled_latents.npy`` float32 [B, 4, H/8, W/8] (latent upscaler only: the second pass's init latents),
``first_pass_<i>.png`` (lanczos only: the decoded first pass, before resizing), ``hires_latents.npy``
float32 [calls2, B, 4, H/8, W/8] (second pass, after every scheduler call), ``image_<i>.png`` (final).
``cases.json`` lists the cases.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .ref_inpaint import _DrawRecorder
from .reference import _f32, default_torch_model, load_pipeline, make_scheduler

UPSCALERS = ("latent", "lanczos")


@dataclass
class HiresSettings:
    scale: float
    strength: float
    steps: int = 0  # second-pass steps; 0 = the first pass's
    upscaler: str = "latent"


@dataclass
class HiresCase:
    name: str
    what: str
    sampler: str
    seed: int
    hires: HiresSettings = field(default_factory=lambda: HiresSettings(2.0, 0.55))
    steps: int = 10
    width: int = 64
    height: int = 64
    batch_size: int = 1
    schedule: str = "default"
    cfg_scale: float = 7.5
    prompt: str = "a castle on a hill at sunset, detailed"
    negative_prompt: str | None = None


CASES = [
    HiresCase("latent_euler_2x", "latent upscaler (bilinear), Euler, 64 -> 128, strength 0.55, hires steps = steps",
              "euler", 301, HiresSettings(2.0, 0.55, 0, "latent")),
    HiresCase("lanczos_dpmpp_2m_karras_1_5x", "Lanczos upscaler on decoded pictures, DPM++ 2M Karras, 64 -> 96, "
              "strength 0.6, 6 hires steps (VAE encode of the resized picture draws a posterior sample first)",
              "dpmpp_2m", 302, HiresSettings(1.5, 0.6, 6, "lanczos"), schedule="karras"),
    HiresCase("latent_ddim_1_25x_64x48_batch2", "latent upscaler, DDIM, 64x48 -> 80x56 (60 rounded down to 56), "
              "batch of 2", "ddim", 303, HiresSettings(1.25, 0.5, 0, "latent"), height=48, batch_size=2),
]


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(target_w, target_h): each side times scale, rounded down to a multiple of 8."""
    return math.floor(width * scale) // 8 * 8, math.floor(height * scale) // 8 * 8


def run_case(pipe, case: HiresCase, out_dir: Path, log=print) -> None:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from PIL import Image

    torch.set_num_threads(1)
    h = case.hires
    if h.upscaler not in UPSCALERS:
        raise ValueError(f"{case.name}: unknown upscaler {h.upscaler!r}")
    tw, th = target_size(case.width, case.height, h.scale)

    def recorder(into):
        def on_step_end(_pipe, i, t, cb_kwargs):
            into.append(cb_kwargs["latents"].detach().clone())
            return cb_kwargs
        return on_step_end

    # 1. first pass: txt2img, latents out
    txt2img = StableDiffusionPipeline(**pipe.components)
    txt2img.set_progress_bar_config(disable=True)
    txt2img.scheduler = make_scheduler(pipe, case.sampler, case.schedule)
    first = []
    g1 = torch.Generator("cpu").manual_seed(case.seed)
    with _DrawRecorder(g1) as draws1:
        lat = txt2img(
            prompt=case.prompt,
            negative_prompt=case.negative_prompt,
            width=case.width,
            height=case.height,
            num_inference_steps=case.steps,
            guidance_scale=case.cfg_scale,
            num_images_per_prompt=case.batch_size,
            eta=0.0,
            generator=g1,
            output_type="latent",
            callback_on_step_end=recorder(first),
            callback_on_step_end_tensor_inputs=["latents"],
        ).images
    assert torch.equal(lat, first[-1])

    # 2./3. upscale
    first_pass_pictures = None
    if h.upscaler == "latent":
        init = torch.nn.functional.interpolate(lat, size=(th // 8, tw // 8), mode="bilinear", align_corners=False)
    else:
        with torch.no_grad():
            decoded = pipe.vae.decode(lat / pipe.vae.config.scaling_factor, return_dict=False)[0]
        first_pass_pictures = txt2img.image_processor.postprocess(decoded, output_type="pil")
        init = [p.resize((tw, th), Image.LANCZOS) for p in first_pass_pictures]

    # 4. second pass: img2img from the upscaled latents or pictures, a new generator with the same seed
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    img2img.scheduler = make_scheduler(pipe, case.sampler, case.schedule)
    second = []
    g2 = torch.Generator("cpu").manual_seed(case.seed)
    with _DrawRecorder(g2) as draws2:
        result = img2img(
            prompt=[case.prompt] * case.batch_size,
            negative_prompt=None if case.negative_prompt is None else [case.negative_prompt] * case.batch_size,
            image=init,
            strength=h.strength,
            num_inference_steps=h.steps or case.steps,
            guidance_scale=case.cfg_scale,
            num_images_per_prompt=1,
            eta=0.0,
            generator=g2,
            output_type="pil",
            callback_on_step_end=recorder(second),
            callback_on_step_end_tensor_inputs=["latents"],
        )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    np.save(out_dir / "latents.npy", _f32(torch.stack(first)))
    np.save(out_dir / "hires_latents.npy", _f32(torch.stack(second)))
    arrays = ["latents.npy", "hires_latents.npy"]
    if h.upscaler == "latent":
        np.save(out_dir / "upscaled_latents.npy", _f32(init))
        arrays.insert(1, "upscaled_latents.npy")
    for i, p in enumerate(first_pass_pictures or []):
        p.save(out_dir / f"first_pass_{i}.png")
    for i, img in enumerate(result.images):
        img.save(out_dir / f"image_{i}.png")
    settings = asdict(case)
    settings["meta"] = {
        "pipeline": "diffusers StableDiffusionPipeline (output_type='latent') then StableDiffusionImg2ImgPipeline, "
                    "float32, CPU, each pass torch.Generator('cpu').manual_seed(seed)",
        "target_width": tw,
        "target_height": th,
        "scheduler_class": type(txt2img.scheduler).__name__,
        "first_pass": {
            "all_timesteps": [float(t) for t in txt2img.scheduler.timesteps],
            "calls": len(first),
            "random_draws": draws1.draws,
        },
        "hires_pass": {
            "steps": h.steps or case.steps,
            "all_timesteps": [float(t) for t in img2img.scheduler.timesteps],
            "calls": len(second),
            "random_draws": draws2.draws,
        },
        "first_pass_images": [f"first_pass_{i}.png" for i in range(len(first_pass_pictures or []))],
        "images": [f"image_{i}.png" for i in range(len(result.images))],
        "arrays": arrays,
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    log(f"  {case.name}: {case.sampler}/{case.schedule} {case.width}x{case.height} -> {tw}x{th} ({h.upscaler}), "
        f"{len(first)} + {len(second)} calls")


def main(out: Path) -> int:
    import diffusers
    import PIL
    import torch

    pipe = load_pipeline(default_torch_model())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        run_case(pipe, case, out / case.name)
    index = {
        "model": "models/tiny-sd (ONNX) = models/tiny-sd-torch (torch), random tiny SD 1.5 architecture, seed 0",
        "generator": "txt2img (output_type='latent') + upscale + img2img, diffusers, float32, CPU, "
                     "torch.Generator('cpu').manual_seed(seed) for each pass",
        "regenerate": "models/sdtool reference hires tests/fixtures/hires",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "cases": [asdict(c) for c in CASES],
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../tests/fixtures/hires")))
