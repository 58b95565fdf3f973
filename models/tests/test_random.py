"""``sdtool random``: seeded models with the SD 1.5 architecture, and the committed tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MODELS_DIR
from tooling.configs import SD15_SCHEDULER

TINY = MODELS_DIR / "tiny-sd"


def test_tiny_model_rebuilds_bit_exactly_from_its_seed():
    from tooling.provenance import read_record
    from tooling.random_model import build_random, component_hashes

    rec = read_record(TINY)
    assert rec["source"] == {**rec["source"], "kind": "random", "architecture": "tiny", "seed": 0}
    assert component_hashes(build_random("tiny", 0)) == rec["source"]["weights_sha256"]
    assert component_hashes(build_random("tiny", 1)) != rec["source"]["weights_sha256"]


def test_committed_tiny_layout_and_size():
    files = {p.relative_to(TINY).as_posix() for p in TINY.rglob("*") if p.is_file()}
    expected = {
        "model_index.json", "easel-model.json", "scheduler/scheduler_config.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer.json",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    } | {f"{g}/{f}" for g in ("text_encoder", "unet", "vae_encoder", "vae_decoder") for f in ("model.onnx", "config.json")}
    assert files == expected
    total = sum(p.stat().st_size for p in TINY.rglob("*") if p.is_file())
    assert total < 20_000_000, total
    index = json.loads((TINY / "model_index.json").read_text())
    assert index["_class_name"] == "OnnxStableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "OnnxRuntimeModel"] and index["tokenizer"] == ["transformers", "CLIPTokenizer"]


def test_scheduler_config_is_the_original_sd15_file():
    cfg = json.loads((TINY / "scheduler" / "scheduler_config.json").read_text())
    assert cfg == SD15_SCHEDULER
    assert "timestep_spacing" not in cfg and "prediction_type" not in cfg
    assert cfg["beta_start"] == 0.00085 and cfg["beta_end"] == 0.012 and cfg["steps_offset"] == 1


def test_onnx_inputs_and_outputs():
    import onnxruntime as ort

    want = {
        "text_encoder": ([("input_ids", "tensor(int64)", 2)], [("last_hidden_state", 3), ("pooler_output", 2)]),
        "unet": ([("sample", "tensor(float)", 4), ("timestep", "tensor(float)", 0),
                  ("encoder_hidden_states", "tensor(float)", 3)], [("out_sample", 4)]),
        "vae_encoder": ([("sample", "tensor(float)", 4)], [("latent_parameters", 4)]),
        "vae_decoder": ([("latent_sample", "tensor(float)", 4)], [("sample", 4)]),
    }
    for g, (ins, outs) in want.items():
        s = ort.InferenceSession(str(TINY / g / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [(i.name, i.type, len(i.shape)) for i in s.get_inputs()] == ins, g
        assert [(o.name, len(o.shape)) for o in s.get_outputs()] == outs, g
        assert isinstance(s.get_inputs()[0].shape[0], str), f"{g}: batch axis must be dynamic"
    import onnx

    assert onnx.load(str(TINY / "unet" / "model.onnx")).opset_import[0].version == 17


def test_tiny_outputs_are_not_degenerate():
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    dec = ort.InferenceSession(str(TINY / "vae_decoder" / "model.onnx"), providers=["CPUExecutionProvider"])
    img = dec.run(None, {"latent_sample": rng.standard_normal((1, 4, 8, 8)).astype(np.float32) / 0.18215})[0]
    px = np.clip(img / 2 + 0.5, 0, 1)
    assert 0.1 < px.std() < 0.45 and ((px == 0) | (px == 1)).mean() < 0.3
    unet = ort.InferenceSession(str(TINY / "unet" / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"sample": rng.standard_normal((2, 4, 8, 8)).astype(np.float32), "timestep": np.array(500.0, np.float32),
            "encoder_hidden_states": rng.standard_normal((2, 77, 32)).astype(np.float32)}
    eps = unet.run(None, feed)[0]
    assert 0.5 < eps.std() < 2.0
    feed["timestep"] = np.array(20.0, np.float32)
    assert np.abs(unet.run(None, feed)[0] - eps).mean() > 1e-3, "UNet ignores the timestep"


def test_sd15_architecture_parameter_counts():
    """The sd15 configs give exactly SD 1.5's parameter counts (built on the meta device: no memory)."""
    import torch

    from tooling.random_model import build_modules

    with torch.device("meta"):
        c = build_modules("sd15")
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in c.items()}
    assert n == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
