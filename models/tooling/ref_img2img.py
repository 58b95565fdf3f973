"""Reference fixtures for Easel's image-to-image (``src/engine/pipeline.rs``, ``img2img``).

Owns: running diffusers' ``StableDiffusionImg2ImgPipeline`` (float32, CPU,
``torch.Generator("cpu").manual_seed(seed)``) on the tiny torch model, from synthetic init images
drawn here, with the scheduler built by ``<Class>.from_config`` of the model's original scheduler
config (as the txt2img fixtures do), and saving what the engine must reproduce.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_img2img ../tests/fixtures/img2img`` (or
``sdtool reference img2img OUT``). Per case folder: ``init.png`` (the init image), ``settings.json``
(the settings, the strength, the timesteps run), ``latents.npy`` [calls, B, 4, h, w] (after every
scheduler call), ``image_<i>.png``. ``cases.json`` lists the cases.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .reference import _f32, default_torch_model, load_pipeline, make_scheduler


@dataclass
class Img2ImgCase:
    name: str
    what: str
    sampler: str
    strength: float
    seed: int
    steps: int = 10
    width: int = 64
    height: int = 64
    batch_size: int = 1
    schedule: str = "default"
    cfg_scale: float = 7.5
    prompt: str = "a watercolor painting of a lighthouse"
    negative_prompt: str | None = None


# Every sampler (their add_noise and late start differ by family), two strengths for two of them,
# a non-square image and a batch of two.
CASES = [
    Img2ImgCase("euler_s05", "Euler, strength 0.5: sigma add_noise, start at call 5", "euler", 0.5, 101),
    Img2ImgCase("euler_s08", "Euler, strength 0.8", "euler", 0.8, 102),
    Img2ImgCase("dpmpp_2m_karras_s05", "DPM++ 2M Karras, strength 0.5: VP add_noise from sigma", "dpmpp_2m", 0.5, 103,
                schedule="karras"),
    Img2ImgCase("dpmpp_2m_karras_s08", "DPM++ 2M Karras, strength 0.8", "dpmpp_2m", 0.8, 104, schedule="karras"),
    Img2ImgCase("pndm_s07", "PNDM, strength 0.7: alphas_cumprod add_noise, PLMS warm-up on a late start", "pndm", 0.7, 105),
    Img2ImgCase("ddim_s06", "DDIM, strength 0.6", "ddim", 0.6, 106),
    Img2ImgCase("euler_a_s075", "Euler ancestral, strength 0.75: step noise continues after the image noise", "euler_a", 0.75,
                107),
    Img2ImgCase("heun_s06", "Heun, strength 0.6: order 2, starts at call 2 x t_start", "heun", 0.6, 108),
    Img2ImgCase("lms_96x64", "LMS, strength 0.7, non-square 96x64", "lms", 0.7, 109, width=96, height=64),
    Img2ImgCase("unipc_s05", "UniPC, strength 0.5", "unipc", 0.5, 110),
    Img2ImgCase("batch2_ddim", "batch of 2: one posterior sample repeated, one noise draw [2,4,h,w]", "ddim", 0.75, 111,
                batch_size=2),
]


def init_image(width: int, height: int, seed: int):
    """A deterministic picture with smooth and sharp parts: gradients, a disc and a bar."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 100 * np.sin((x + 2 * y + seed) / 5.0)
    disc = (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.25) ** 2
    r = np.where(disc, 240, r)
    g = np.where(disc, 200, g)
    b = np.where((y > height * 0.7) & (y < height * 0.8), 20, b)
    rgb = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def run_case(pipe, case: Img2ImgCase, out_dir: Path, log=print) -> None:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    torch.set_num_threads(1)
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    img2img.scheduler = make_scheduler(pipe, case.sampler, case.schedule)
    image = init_image(case.width, case.height, case.seed)
    latents = []

    def on_step_end(_pipe, i, t, cb_kwargs):
        latents.append(cb_kwargs["latents"].detach().clone())
        return cb_kwargs

    result = img2img(
        prompt=case.prompt,
        negative_prompt=case.negative_prompt,
        image=image,
        strength=case.strength,
        num_inference_steps=case.steps,
        guidance_scale=case.cfg_scale,
        num_images_per_prompt=case.batch_size,
        eta=0.0,
        generator=torch.Generator("cpu").manual_seed(case.seed),
        output_type="pil",
        callback_on_step_end=on_step_end,
        callback_on_step_end_tensor_inputs=["latents"],
    )
    sched = img2img.scheduler
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    image.save(out_dir / "init.png")
    np.save(out_dir / "latents.npy", _f32(torch.stack(latents)))
    for i, img in enumerate(result.images):
        img.save(out_dir / f"image_{i}.png")
    settings = asdict(case)
    settings["meta"] = {
        "pipeline": "diffusers StableDiffusionImg2ImgPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "scheduler_class": type(sched).__name__,
        "all_timesteps": [float(t) for t in sched.timesteps],
        "calls": len(latents),
        "images": [f"image_{i}.png" for i in range(len(result.images))],
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    log(f"  {case.name}: {case.sampler}/{case.schedule} strength {case.strength} -> {len(latents)} calls")


def main(out: Path) -> int:
    import diffusers
    import torch

    model = default_torch_model()
    pipe = load_pipeline(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        run_case(pipe, case, out / case.name)
    index = {
        "model": "models/tiny-sd (ONNX) = models/tiny-sd-torch (torch), random tiny SD 1.5 architecture, seed 0",
        "generator": "diffusers StableDiffusionImg2ImgPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "regenerate": "models/sdtool reference img2img tests/fixtures/img2img",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "cases": [asdict(c) for c in CASES],
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../tests/fixtures/img2img")))
