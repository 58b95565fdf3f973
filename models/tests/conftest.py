"""Shared pytest set-up: makes ``tooling`` importable and provides the tiny torch model once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = MODELS_DIR.parent
if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_tool(*args: str, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m tooling ARGS`` as the sdtool wrapper does (same interpreter, models/ on the path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(MODELS_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("HF_HUB_OFFLINE", None)  # the tool decides by itself when to stay offline
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "tooling", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_torch_dir() -> Path:
    """models/tiny-sd-torch, rebuilt from seed 0 if needed and checked against the committed models/tiny-sd."""
    from tooling.reference import default_torch_model

    return default_torch_model(log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_components(tiny_torch_dir):
    from tooling.random_model import load_torch_folder

    return load_torch_folder(tiny_torch_dir)


@pytest.fixture(scope="session")
def tiny_inpaint_torch_dir() -> Path:
    """models/tiny-sd-inpaint-torch (9-channel UNet), rebuilt from seed 0 if needed, checked against models/tiny-sd-inpaint."""
    from tooling.reference import default_torch_model

    return default_torch_model(log=lambda *_: None, name="tiny-sd-inpaint")
