"""Shared by the client tests: one real `easel serve` (the binary the Rust tests built) on loopback,
with ComfyUI's API on a second port and an A1111-layout extra models dir holding a LoRA and a VAE.

Run by scripts/test.sh as `models/sdtool test ../tests/clients` (the models venv has the clients:
`webuiapi`, `websocket-client`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from easel_harness import Server, find_binary  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"


def compat_case(name: str) -> tuple[dict, Path]:
    """A case recorded from A1111's or ComfyUI's own code: its settings and its folder."""
    folder = FIXTURES / "compat_images" / name
    return json.loads((folder / "settings.json").read_text(encoding="utf-8")), folder


def assert_same_picture(got: Image.Image, want: Path | Image.Image) -> None:
    """The parity bar: within 1/255 on 99.9% of values, never more than 2/255."""
    want = Image.open(want) if isinstance(want, Path) else want
    a = np.asarray(got.convert("RGB"), dtype=np.int16)
    b = np.asarray(want.convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape
    d = np.abs(a - b)
    assert d.max() <= 2 and (d > 1).mean() <= 0.001, (int(d.max()), float((d > 1).mean()))


@pytest.fixture(scope="session")
def easel():
    binary = os.environ.get("EASEL_BINARY") or find_binary(str(REPO / "target" / "debug" / "easel"))
    extra = Path(tempfile.mkdtemp(prefix="easel-clients-"))
    for sub in ("models/Stable-diffusion", "models/Lora", "models/VAE"):
        (extra / sub).mkdir(parents=True)
    shutil.copy(FIXTURES / "lora" / "style-kohya.safetensors", extra / "models/Lora/style.safetensors")
    shutil.copy(FIXTURES / "checkpoints" / "vae-standalone-bf16.safetensors", extra / "models/VAE/tiny-vae.safetensors")
    with Server(binary, extra_args=["--extra-models-dir", str(extra)], comfyui=True) as server:
        yield server
    shutil.rmtree(extra, ignore_errors=True)
