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


# --- the tiny inpainting model (9-channel UNet): models/tiny-sd-inpaint ------------------------------------------

TINY_INPAINT = MODELS_DIR / "tiny-sd-inpaint"


def test_tiny_inpaint_rebuilds_from_its_seed_and_shares_tiny_components():
    import torch

    from tooling.provenance import read_record
    from tooling.random_model import build_random, component_hashes

    rec = read_record(TINY_INPAINT)
    assert rec["source"] == {**rec["source"], "kind": "random", "architecture": "tiny-inpaint", "seed": 0}
    inpaint = build_random("tiny-inpaint", 0)
    assert component_hashes(inpaint) == rec["source"]["weights_sha256"]
    tiny_hashes = read_record(TINY)["source"]["weights_sha256"]
    for k in ("vae", "text_encoder"):
        assert rec["source"]["weights_sha256"][k] == tiny_hashes[k], f"{k} must be the tiny model's"
    assert rec["source"]["weights_sha256"]["unet"] != tiny_hashes["unet"]
    tiny = build_random("tiny", 0)
    a, b = inpaint["unet"].state_dict(), tiny["unet"].state_dict()
    assert inpaint["unet"].config.in_channels == 9 and a["conv_in.weight"].shape[1] == 9
    assert torch.equal(a["conv_in.weight"][:, :4], b["conv_in.weight"]), "the latent channels keep the tiny weights"
    assert all(torch.equal(a[k], b[k]) for k in b if k != "conv_in.weight")
    extra = a["conv_in.weight"][:, 4:]
    assert 0.05 < float(extra.std()) < 0.2 and not torch.equal(extra[:, :4], b["conv_in.weight"])


def test_tiny_inpaint_layout_shares_the_tiny_files():
    files = {p.relative_to(TINY_INPAINT).as_posix() for p in TINY_INPAINT.rglob("*") if p.is_file()}
    assert files == {p.relative_to(TINY).as_posix() for p in TINY.rglob("*") if p.is_file()}
    same = [f for f in files if f.split("/")[0] in ("text_encoder", "vae_encoder", "vae_decoder", "tokenizer", "scheduler")]
    assert len(same) == 12
    for f in same:
        assert (TINY_INPAINT / f).read_bytes() == (TINY / f).read_bytes(), f"{f} differs from tiny-sd's (git stores it twice)"
    index = json.loads((TINY_INPAINT / "model_index.json").read_text())
    assert index["_class_name"] == "OnnxStableDiffusionInpaintPipeline"
    assert index["unet"] == ["diffusers", "OnnxRuntimeModel"] and "vae_encoder" in index
    assert json.loads((TINY_INPAINT / "unet" / "config.json").read_text())["in_channels"] == 9
    assert (TINY_INPAINT / "unet" / "model.onnx").stat().st_size < 6_000_000


def test_tiny_inpaint_unet_input_has_a_static_9_channel_axis():
    import onnx

    m = onnx.load(str(TINY_INPAINT / "unet" / "model.onnx"))
    dims = {i.name: i.type.tensor_type.shape.dim for i in list(m.graph.input) + list(m.graph.output)}
    sample = dims["sample"]
    assert sample[1].dim_value == 9 and not sample[1].dim_param
    assert all(d.dim_param and not d.dim_value for i, d in enumerate(sample) if i != 1), "batch, height, width dynamic"
    assert dims["out_sample"][1].dim_value == 4


def test_tiny_inpaint_onnx_unet_equals_torch(tiny_inpaint_torch_dir):
    import onnxruntime as ort
    import torch

    from tooling.random_model import load_torch_folder

    unet = load_torch_folder(tiny_inpaint_torch_dir)["unet"]
    rng = np.random.default_rng(3)
    sample = rng.standard_normal((2, 9, 8, 12)).astype(np.float32)
    sample[:, 4] = rng.random((2, 8, 12)) < 0.5  # a 0/1 mask channel
    ehs = rng.standard_normal((2, 77, 32)).astype(np.float32)
    with torch.no_grad():
        want = unet(torch.from_numpy(sample), torch.tensor(437.0), torch.from_numpy(ehs), return_dict=False)[0].numpy()
    sess = ort.InferenceSession(str(TINY_INPAINT / "unet" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"sample": sample, "timestep": np.array(437.0, np.float32), "encoder_hidden_states": ehs})[0]
    assert got.shape == (2, 4, 8, 12)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    assert 0.5 < want.std() < 2.0
    sample[:, 4:] = 0  # the extra channels matter
    assert np.abs(sess.run(None, {"sample": sample, "timestep": np.array(437.0, np.float32),
                                  "encoder_hidden_states": ehs})[0] - got).mean() > 1e-3


def test_convert_handles_a_9_channel_unet(tmp_path, tiny_inpaint_torch_dir):
    """`sdtool convert` of the 9-channel torch folder (with --validate) gives the committed ONNX folder."""
    from conftest import run_tool

    out = tmp_path / "inpaint-onnx"
    r = run_tool("convert", str(tiny_inpaint_torch_dir), str(out), "--validate")
    assert r.returncode == 0, r.stderr
    assert "unet.out_sample" in r.stdout and "FAIL" not in r.stdout
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "OnnxStableDiffusionInpaintPipeline"
    for g in ("text_encoder", "unet", "vae_encoder", "vae_decoder"):
        assert (out / g / "model.onnx").read_bytes() == (TINY_INPAINT / g / "model.onnx").read_bytes(), g
