"""Reference fixtures for Easel's inpainting (a picture, a mask, repaint the masked part).

Owns: running diffusers' ``StableDiffusionInpaintPipeline`` (float32, CPU, one thread,
``torch.Generator("cpu").manual_seed(seed)``) on the two tiny torch models, with the 4-channel UNet of
``models/tiny-sd`` (diffusers then blends the known region back into the latents after every scheduler
call) and the 9-channel UNet of ``models/tiny-sd-inpaint`` (latents ‖ mask ‖ masked-image latents as the
UNet input); the synthetic masks drawn here (``inpaint_mask``); the scheduler built with
``make_scheduler`` as for the txt2img and img2img fixtures; and saving what the engine must reproduce.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_inpaint ../tests/fixtures/inpaint`` (or
``sdtool reference inpaint OUT``). Both torch models are rebuilt from their seeds when absent. Per case
folder:

* ``init.png``: the RGB init picture (``ref_img2img.init_image``);
* ``mask.png``: the mask as Easel is given it, 8-bit grayscale, *before* any blur (white = repaint);
* ``mask_blurred.png``: only when ``mask_blur`` > 0, what the pipeline was given
  (``mask_processor.blur(mask, blur_factor=mask_blur)``, Pillow's GaussianBlur);
* ``settings.json``: the case fields plus ``meta`` (scheduler class, all timesteps, the number of
  scheduler calls, the images, and the order and shapes of the generator's random draws);
* ``latents.npy`` float32 [calls, B, 4, h, w]: ``latents`` after every scheduler call, as
  ``callback_on_step_end`` sees them (for 4-channel UNets: after the blend with the noised init latents);
* ``mask_latent.npy`` float32 [1, 1, h, w]: the binarised mask at latent size, as concatenated / blended;
* ``masked_image_latents.npy`` float32 [1, 4, h, w]: the VAE latents (posterior sample x 0.18215) of
  the init picture with the masked pixels set to 0 (used by 9-channel UNets only, drawn in both cases);
* ``image_<i>.png``: the output pictures.

``cases.json`` lists the cases.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .ref_img2img import init_image
from .reference import _f32, default_torch_model, load_pipeline, make_scheduler

MODELS = ("tiny-sd", "tiny-sd-inpaint")


@dataclass
class InpaintCase:
    name: str
    what: str
    model: str  # the ONNX folder under models/: "tiny-sd" (4-channel UNet) or "tiny-sd-inpaint" (9 channels)
    sampler: str
    strength: float
    seed: int
    mask: str = "ellipse"  # "ellipse" (see inpaint_mask) or "black" (nothing to repaint)
    mask_blur: float = 0  # Gaussian blur radius applied to mask.png before the pipeline (0 = none)
    steps: int = 10
    width: int = 64
    height: int = 64
    batch_size: int = 1
    schedule: str = "default"
    cfg_scale: float = 7.5
    prompt: str = "a red brick chimney on a roof"
    negative_prompt: str | None = None


CASES = [
    InpaintCase("euler_s1", "4-channel UNet, Euler, strength 1: pure noise start, blend after every call",
                "tiny-sd", "euler", 1.0, 201),
    InpaintCase("ddim_s075", "4-channel UNet, DDIM, strength 0.75: img2img-style start", "tiny-sd", "ddim", 0.75, 202),
    InpaintCase("dpmpp_2m_karras_s08_batch2", "4-channel UNet, DPM++ 2M Karras, strength 0.8, batch of 2 "
                "(one image posterior repeated, one noise draw [2,4,h,w])", "tiny-sd", "dpmpp_2m", 0.8, 203,
                schedule="karras", batch_size=2),
    InpaintCase("euler_a_s1_blur4", "4-channel UNet, Euler ancestral, strength 1, mask blurred with radius 4 "
                "before binarisation; step noise after the three pipeline draws", "tiny-sd", "euler_a", 1.0, 204,
                mask_blur=4),
    InpaintCase("black_mask_s1", "4-channel UNet, all-black mask, strength 1: the result is the init "
                "picture's VAE round trip (its posterior sample)", "tiny-sd", "euler", 1.0, 205, mask="black"),
    InpaintCase("inpaint9_euler_s1", "9-channel UNet, Euler, strength 1: noise drawn before the masked-image "
                "posterior, no init-picture encode", "tiny-sd-inpaint", "euler", 1.0, 206),
    InpaintCase("inpaint9_unipc_s06", "9-channel UNet, UniPC, strength 0.6: init posterior, noise, masked posterior",
                "tiny-sd-inpaint", "unipc", 0.6, 207),
    InpaintCase("inpaint9_euler_a_96x64", "9-channel UNet, Euler ancestral, strength 1, non-square 96x64",
                "tiny-sd-inpaint", "euler_a", 1.0, 208, width=96, height=64),
]


def inpaint_mask(width: int, height: int, kind: str = "ellipse"):
    """The mask as an 8-bit grayscale ("L") picture; white = repaint.

    "ellipse": an ellipse of 255 with a soft ring falling from 200 to 100, a rectangle of 127 (just
    below diffusers' threshold 0.5 = 127.5/255) and one of 128 (just above), placed so that latent
    sampling (the top-left pixel of each 8x8 block) hits the ring and both rectangles. "black": all 0.
    """
    from PIL import Image

    if kind == "black":
        return Image.new("L", (width, height), 0)
    if kind != "ellipse":
        raise ValueError(f"unknown mask kind {kind!r}")
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    d = np.sqrt(((x - 0.45 * width) / (0.28 * width)) ** 2 + ((y - 0.40 * height) / (0.30 * height)) ** 2)
    ring = np.clip(np.rint(200.0 - (d - 1.0) / 0.4 * 100.0), 100, 200)
    m = np.where(d < 1.0, 255.0, np.where(d < 1.4, ring, 0.0))
    by0, by1 = height - 20, height - 4  # bottom band: rectangles of 127 (left) and 128 (right)
    m[by0:by1, 4:20] = 127
    m[by0:by1, width - 24:width - 4] = 128
    return Image.fromarray(m.astype(np.uint8), mode="L")


class _DrawRecorder:
    """Records every ``torch.randn`` drawn from one generator: the shape and the diffusers function that asked."""

    def __init__(self, generator):
        self.generator = generator
        self.draws = []

    def __enter__(self):
        import torch

        self._orig = torch.randn
        recorder = self

        def randn(*args, **kwargs):
            if kwargs.get("generator") is recorder.generator:
                caller = sys._getframe(2).f_code.co_name  # randn_tensor's caller
                shape = args[0] if len(args) == 1 else args
                recorder.draws.append({"by": caller, "shape": [int(s) for s in shape]})
            return recorder._orig(*args, **kwargs)

        torch.randn = randn
        return self

    def __exit__(self, *exc):
        import torch

        torch.randn = self._orig
        return False


def run_case(pipe, case: InpaintCase, out_dir: Path, log=print) -> None:
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    torch.set_num_threads(1)
    inpaint = StableDiffusionInpaintPipeline(**pipe.components)
    inpaint.set_progress_bar_config(disable=True)
    inpaint.scheduler = make_scheduler(pipe, case.sampler, case.schedule)
    want_channels = 9 if case.model == "tiny-sd-inpaint" else 4
    if inpaint.unet.config.in_channels != want_channels:
        raise ValueError(f"{case.name}: model {case.model} needs a {want_channels}-channel UNet")
    image = init_image(case.width, case.height, case.seed)
    mask = inpaint_mask(case.width, case.height, case.mask)
    given_mask = inpaint.mask_processor.blur(mask, blur_factor=case.mask_blur) if case.mask_blur > 0 else mask
    latents, captured = [], {}

    original_prepare = inpaint.prepare_mask_latents

    def recording_prepare(*args, **kwargs):
        m, mil = original_prepare(*args, **kwargs)
        b = case.batch_size
        captured["mask"], captured["masked_image_latents"] = m[:1].clone(), mil[:1].clone()
        assert m.shape[0] in (b, 2 * b) and torch.equal(m, m[:1].expand_as(m))
        return m, mil

    inpaint.prepare_mask_latents = recording_prepare

    def on_step_end(_pipe, i, t, cb_kwargs):
        latents.append(cb_kwargs["latents"].detach().clone())
        return cb_kwargs

    generator = torch.Generator("cpu").manual_seed(case.seed)
    with _DrawRecorder(generator) as draws:
        result = inpaint(
            prompt=case.prompt,
            negative_prompt=case.negative_prompt,
            image=image,
            mask_image=given_mask,
            height=case.height,
            width=case.width,
            strength=case.strength,
            num_inference_steps=case.steps,
            guidance_scale=case.cfg_scale,
            num_images_per_prompt=case.batch_size,
            eta=0.0,
            generator=generator,
            output_type="pil",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
    sched = inpaint.scheduler
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    image.save(out_dir / "init.png")
    mask.save(out_dir / "mask.png")
    if case.mask_blur > 0:
        given_mask.save(out_dir / "mask_blurred.png")
    np.save(out_dir / "latents.npy", _f32(torch.stack(latents)))
    np.save(out_dir / "mask_latent.npy", _f32(captured["mask"]))
    np.save(out_dir / "masked_image_latents.npy", _f32(captured["masked_image_latents"]))
    for i, img in enumerate(result.images):
        img.save(out_dir / f"image_{i}.png")
    settings = asdict(case)
    settings["meta"] = {
        "pipeline": "diffusers StableDiffusionInpaintPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "unet_in_channels": want_channels,
        "scheduler_class": type(sched).__name__,
        "all_timesteps": [float(t) for t in sched.timesteps],
        "calls": len(latents),
        "images": [f"image_{i}.png" for i in range(len(result.images))],
        "random_draws": draws.draws,
        "arrays": ["latents.npy", "mask_latent.npy", "masked_image_latents.npy"],
        **({"mask_blurred": "mask_blurred.png"} if case.mask_blur > 0 else {}),
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    log(f"  {case.name}: {case.model} {case.sampler}/{case.schedule} strength {case.strength} -> {len(latents)} calls, "
        f"draws {[d['by'] for d in draws.draws[:4]]}")


def load_models(log=print) -> dict:
    """ONNX folder name -> the torch pipeline of its rebuilt torch form."""
    return {m: load_pipeline(default_torch_model(log=log, name=m)) for m in MODELS}


def main(out: Path) -> int:
    import diffusers
    import PIL
    import torch

    pipes = load_models()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        run_case(pipes[case.model], case, out / case.name)
    index = {
        "models": {
            "tiny-sd": "models/tiny-sd (ONNX) = models/tiny-sd-torch, random tiny SD 1.5, 4-channel UNet, seed 0",
            "tiny-sd-inpaint": "models/tiny-sd-inpaint (ONNX) = models/tiny-sd-inpaint-torch, the same with a "
                               "9-channel UNet (sdtool random tiny-inpaint --seed 0)",
        },
        "generator": "diffusers StableDiffusionInpaintPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "regenerate": "models/sdtool reference inpaint tests/fixtures/inpaint",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "cases": [asdict(c) for c in CASES],
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../tests/fixtures/inpaint")))
