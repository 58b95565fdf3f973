"""The committed pipeline fixtures (tests/fixtures/pipeline) are complete, well-formed, reproducible, and
reachable from the committed ONNX tiny model with a plain loop like the Easel engine's.

The ONNX loop here is the Python analogue of what the Rust engine does: tokenizer.json (fast tokenizer),
text_encoder/unet/vae_decoder through ONNX Runtime, the scheduler from diffusers, the noise from the fixture
(after checking it equals torch.randn from the seed), ancestral noise from the same generator.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS_DIR, REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "pipeline"
TINY = MODELS_DIR / "tiny-sd"
CASE_NAMES = [c["name"] for c in json.loads((FIXTURES / "cases.json").read_text())["cases"]]


def _settings(name):
    return json.loads((FIXTURES / name / "settings.json").read_text(encoding="utf-8"))


def test_index_matches_folders():
    from tooling.reference import CASES, SAMPLERS

    assert CASE_NAMES == [c.name for c in CASES]
    dirs = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert dirs == sorted(CASE_NAMES)
    samplers = {_settings(n)["sampler"] for n in CASE_NAMES}
    assert samplers == set(SAMPLERS)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 10_000_000


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_files(name):
    from PIL import Image

    d = FIXTURES / name
    s = _settings(name)
    b, h, w = s["batch_size"], s["height"] // 8, s["width"] // 8
    arrays = {}
    for f in s["meta"]["arrays"]:
        a = np.load(d / f)
        assert a.dtype == np.dtype("<f4") and a.flags["C_CONTIGUOUS"], f
        arrays[f] = a
    n_t = len(arrays["timesteps.npy"])
    assert arrays["noise.npy"].shape == (b, 4, h, w)
    assert arrays["latents.npy"].shape == (n_t, b, 4, h, w)
    rows = 2 * b if s["cfg_scale"] > 1 else b
    assert arrays["text_embeddings.npy"].shape[:2] == (rows, 77)
    for i in range(b):
        img = Image.open(d / f"image_{i}.png")
        assert img.size == (s["width"], s["height"]) and img.mode == "RGB"
        px = np.asarray(img)
        assert px.std() > 10, "degenerate image"


@pytest.mark.parametrize("name", ["euler_a", "batch2_ddim", "size_96x64"])
def test_regenerated_case_matches(tmp_path, tiny_torch_dir, name):
    from PIL import Image

    from tooling.reference import CASES, run_case

    case = next(c for c in CASES if c.name == name)
    out = tmp_path / name
    run_case(tiny_torch_dir, case.settings, out, log=lambda *_: None)
    for f in _settings(name)["meta"]["arrays"]:
        a, b = np.load(out / f), np.load(FIXTURES / name / f)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())), err_msg=f)
    for i in range(case.settings.batch_size):
        a = np.asarray(Image.open(out / f"image_{i}.png"), dtype=np.int16)
        b = np.asarray(Image.open(FIXTURES / name / f"image_{i}.png"), dtype=np.int16)
        assert np.abs(a - b).max() <= 1


@pytest.fixture(scope="module")
def onnx_sessions():
    import onnxruntime as ort

    return {
        g: ort.InferenceSession(str(TINY / g / "model.onnx"), providers=["CPUExecutionProvider"])
        for g in ("text_encoder", "unet", "vae_decoder")
    }


def _onnx_pipeline(name, sessions):
    """Run one fixture case through the ONNX tiny model; returns (embeddings, latents per step, images)."""
    import diffusers
    import torch
    from transformers import CLIPTokenizerFast

    from tooling.reference import SAMPLERS

    s = _settings(name)
    tok = CLIPTokenizerFast.from_pretrained(str(TINY / "tokenizer"))

    def encode(text):
        ids = tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="np").input_ids
        return sessions["text_encoder"].run(["last_hidden_state"], {"input_ids": ids.astype(np.int64)})[0]

    b = s["batch_size"]
    cond = np.repeat(encode(s["prompt"]), b, axis=0)
    cfg = s["cfg_scale"] > 1.0
    if cfg:
        uncond = np.repeat(encode(s["negative_prompt"] or ""), b, axis=0)
        embeds = np.concatenate([uncond, cond])
    else:
        embeds = cond

    base = diffusers.PNDMScheduler.from_config(json.loads((TINY / "scheduler" / "scheduler_config.json").read_text()))
    extra = {"use_karras_sigmas": True} if s["schedule"] == "karras" else {}
    sched = getattr(diffusers, SAMPLERS[s["sampler"]]).from_config(base.config, **extra)
    sched.set_timesteps(s["steps"])

    noise = np.load(FIXTURES / name / "noise.npy")
    gen = torch.Generator("cpu").manual_seed(s["seed"])
    assert np.array_equal(torch.randn(noise.shape, generator=gen).numpy(), noise)
    latents = torch.from_numpy(noise) * sched.init_noise_sigma
    params = set(inspect.signature(sched.step).parameters)
    step_kwargs = {k: v for k, v in (("eta", 0.0), ("generator", gen)) if k in params}

    steps = []
    for t in sched.timesteps:
        model_in = torch.cat([latents] * 2) if cfg else latents
        model_in = sched.scale_model_input(model_in, t)
        eps = sessions["unet"].run(["out_sample"], {
            "sample": model_in.numpy().astype(np.float32),
            "timestep": np.array(float(t), dtype=np.float32),
            "encoder_hidden_states": embeds.astype(np.float32),
        })[0]
        eps = torch.from_numpy(eps)
        if cfg:
            e_u, e_c = eps.chunk(2)
            eps = e_u + s["cfg_scale"] * (e_c - e_u)
        latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
        steps.append(latents.numpy().copy())
    image = sessions["vae_decoder"].run(["sample"], {"latent_sample": (latents / 0.18215).numpy().astype(np.float32)})[0]
    image = np.clip(image / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    return embeds, np.stack(steps), np.round(image * 255).astype(np.uint8)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_onnx_tiny_model_reproduces_fixture(name, onnx_sessions):
    from PIL import Image

    embeds, steps, images = _onnx_pipeline(name, onnx_sessions)
    ref_e = np.load(FIXTURES / name / "text_embeddings.npy")
    assert np.abs(embeds - ref_e).max() <= 1e-5 * max(1.0, float(np.abs(ref_e).max()))
    ref_l = np.load(FIXTURES / name / "latents.npy")
    assert steps.shape == ref_l.shape
    rel = np.abs(steps - ref_l).max() / max(1.0, float(np.abs(ref_l).max()))
    assert rel <= 1e-4, f"latents differ: relative {rel:.2e}"
    for i, img in enumerate(images):
        ref = np.asarray(Image.open(FIXTURES / name / f"image_{i}.png"), dtype=np.int16)
        assert np.abs(img.astype(np.int16) - ref).max() <= 2
