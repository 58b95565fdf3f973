"""A diffusers folder saved with ``.safetensors`` weights (what ``save_pretrained`` writes, and what the
Hugging Face hub holds for most SD 1.x repositories) runs in Easel without conversion.

``models/tiny-sd-torch`` is written by diffusers itself (``save_pretrained``), so its file layout and key
names are diffusers', not ours. ``easel generate --model <that folder>`` must give the same final latents
(within 1e-6) and pixels as ``--model models/tiny-sd``, the committed ONNX export of the same weights,
which the Rust parity suites hold to diffusers. Runs the real binary (built before ``sdtool test``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import REPO_ROOT


def easel_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    exe = (target if target.is_absolute() else REPO_ROOT / target) / "debug" / "easel"
    assert exe.is_file(), f"{exe} is missing: build it first (`cargo build`); this test runs the real binary"
    return exe


def generate(tmp_path: Path, model: Path, name: str):
    out, latents = tmp_path / f"{name}.png", tmp_path / f"{name}.npy"
    env = dict(os.environ, EASEL_DATA_DIR=str(tmp_path / "data"), EASEL_MODELS_DIR=str(tmp_path / "models"))
    (tmp_path / "models").mkdir(exist_ok=True)
    args = [str(easel_binary()), "generate", "--model", str(model), "--prompt", "a red fox in the snow", "--seed", "21",
            "--steps", "4", "--width", "64", "--height", "64", "--sampler", "euler", "--output", str(out),
            "--save-latents", str(latents), "--threads", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"easel generate --model {model} failed:\n{proc.stdout}\n{proc.stderr}"
    return np.load(latents), np.asarray(Image.open(out), dtype=np.int16)


def test_a_diffusers_safetensors_folder_equals_the_onnx_export(tmp_path, tiny_torch_dir):
    assert (tiny_torch_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tiny_torch_dir.rglob("*.onnx")), "the folder must hold no ONNX graphs"
    got_latents, got_pixels = generate(tmp_path, tiny_torch_dir, "diffusers")
    want_latents, want_pixels = generate(tmp_path, REPO_ROOT / "models" / "tiny-sd", "onnx")
    assert got_latents.shape == want_latents.shape == (1, 4, 8, 8)
    np.testing.assert_allclose(got_latents, want_latents, rtol=0, atol=1e-6)
    assert np.abs(got_pixels - want_pixels).max() <= 1
