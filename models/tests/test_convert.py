"""``sdtool convert``: diffusers folder and single-file checkpoints to the ONNX layout, and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS_DIR, run_tool
from tooling import provenance
from tooling.configs import SD15_SCHEDULER

GRAPHS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


def onnx_outputs(folder: Path) -> dict:
    """All four graphs of an ONNX folder on fixed inputs (batch 2, 96x80 pixels)."""
    import onnxruntime as ort

    rng = np.random.default_rng(7)
    te_dim = json.loads((folder / "text_encoder" / "config.json").read_text())["hidden_size"]
    ids = rng.integers(0, 49406, size=(2, 77)).astype(np.int64)
    ids[:, 0], ids[:, 30:] = 49406, 49407
    feeds = {
        "text_encoder": {"input_ids": ids},
        "unet": {
            "sample": rng.standard_normal((2, 4, 12, 10)).astype(np.float32),
            "timestep": np.array(501.0, dtype=np.float32),
            "encoder_hidden_states": rng.standard_normal((2, 77, te_dim)).astype(np.float32),
        },
        "vae_encoder": {"sample": rng.uniform(-1, 1, (2, 3, 96, 80)).astype(np.float32)},
        "vae_decoder": {"latent_sample": rng.standard_normal((2, 4, 12, 10)).astype(np.float32)},
    }
    out = {}
    for g in GRAPHS:
        sess = ort.InferenceSession(str(folder / g / "model.onnx"), providers=["CPUExecutionProvider"])
        feed = {}
        for inp in sess.get_inputs():
            v = feeds[g][inp.name]
            feed[inp.name] = v.astype(np.float16) if inp.type == "tensor(float16)" else v
        for o, v in zip(sess.get_outputs(), sess.run(None, feed)):
            out[f"{g}.{o.name}"] = np.asarray(v, dtype=np.float32)
    return out


def max_diff(a: dict, b: dict) -> dict:
    assert a.keys() == b.keys()
    return {k: float(np.abs(a[k] - b[k]).max()) for k in a}


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {r.stderr!r}"
    assert lines[0].startswith("sdtool: error: "), lines[0]
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def direct_export(tmp_path_factory, tiny_torch_dir):
    out = tmp_path_factory.mktemp("direct") / "tiny-onnx"
    r = run_tool("convert", str(tiny_torch_dir), str(out), "--validate")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    return out, r.stdout


@pytest.fixture(scope="module")
def ldm_state(tiny_components):
    from tooling.ldm_layout import components_to_ldm

    return components_to_ldm(tiny_components)


@pytest.fixture(scope="module")
def ldm_safetensors(tmp_path_factory, ldm_state) -> Path:
    import safetensors.torch

    path = tmp_path_factory.mktemp("ldm") / "tiny-sd-ldm.safetensors"
    safetensors.torch.save_file(ldm_state, str(path))
    return path


def test_folder_convert_validates(direct_export):
    out, log = direct_export
    for name in ("text_encoder.last_hidden_state", "text_encoder.pooler_output", "unet.out_sample",
                 "vae_encoder.latent_parameters", "vae_decoder.sample"):
        assert any(name in ln and "max abs error" in ln and ln.rstrip().endswith("ok") for ln in log.splitlines()), log
    for rel in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                "tokenizer/tokenizer.json", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
                "easel-model.json"):
        assert (out / rel).is_file(), rel
    for g in GRAPHS:
        assert (out / g / "model.onnx").is_file() and (out / g / "config.json").is_file()
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text()) == SD15_SCHEDULER
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "OnnxStableDiffusionPipeline"
    rec = provenance.read_record(out)
    assert rec["source"]["kind"] == "diffusers-folder" and len(rec["source"]["sha256_of_files"]) == 64
    assert rec["dtype"] == "float32" and rec["libraries"]["onnxruntime"] == "1.31.1"
    assert all(v["ok"] for v in rec["validation"].values())


def test_direct_export_equals_committed_tiny_model(direct_export):
    out, _ = direct_export
    diffs = max_diff(onnx_outputs(out), onnx_outputs(MODELS_DIR / "tiny-sd"))
    assert all(d == 0.0 for d in diffs.values()), diffs


def test_single_file_safetensors_equals_direct_export(tmp_path, direct_export, ldm_safetensors, tiny_torch_dir):
    out = tmp_path / "from-single-file"
    r = run_tool("convert", str(ldm_safetensors), str(out), "--config", str(tiny_torch_dir))
    assert r.returncode == 0, r.stderr
    diffs = max_diff(onnx_outputs(out), onnx_outputs(direct_export[0]))
    assert all(d <= 1e-6 for d in diffs.values()), diffs
    rec = provenance.read_record(out)
    assert rec["source"]["kind"] == "single-file-checkpoint"
    assert rec["source"]["sha256"] == provenance.sha256_file(ldm_safetensors)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text()) == SD15_SCHEDULER


def test_single_file_ckpt_loads_the_same_weights(tmp_path, ldm_state, tiny_components, tiny_torch_dir):
    """A .ckpt (pickled, weights_only) goes through the same loader; its weights equal the original model's."""
    import torch

    from tooling.convert import check_single_file, load_single_file
    from tooling.random_model import component_hashes

    ckpt = tmp_path / "tiny-sd-ldm.ckpt"
    torch.save({"state_dict": ldm_state, "global_step": 1234}, str(ckpt))
    info = check_single_file(ckpt)
    assert info["family"] == "sd1" and info["in_channels"] == 4
    components, sched, tok = load_single_file(ckpt, tiny_torch_dir, info, tmp_path)
    assert component_hashes(components) == component_hashes(tiny_components)
    assert sched == SD15_SCHEDULER


def _copy_export(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_int8_quantization(tmp_path, tiny_components, direct_export):
    import onnx

    from tooling.export_onnx import quantize_int8
    from tooling.validate import validate_folder

    out = _copy_export(direct_export[0], tmp_path / "int8")
    for g in ("unet", "text_encoder"):
        quantize_int8(out / g / "model.onnx")
    res = validate_folder(tiny_components, out, "int8", log=lambda *_: None)
    assert all(v["ok"] for v in res.values()), res
    ops = {n.op_type for n in onnx.load(str(out / "unet" / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    assert (out / "unet" / "model.onnx").stat().st_size < (direct_export[0] / "unet" / "model.onnx").stat().st_size


def test_fp16_conversion(tmp_path, tiny_components, direct_export):
    import onnxruntime as ort

    from tooling.export_onnx import convert_fp16
    from tooling.validate import validate_folder

    out = _copy_export(direct_export[0], tmp_path / "fp16")
    for g in GRAPHS:
        convert_fp16(out / g / "model.onnx")
    res = validate_folder(tiny_components, out, "float16", log=lambda *_: None)
    assert all(v["ok"] for v in res.values()), res
    sess = ort.InferenceSession(str(out / "unet" / "model.onnx"), providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in sess.get_inputs()}
    assert types == {"sample": "tensor(float16)", "timestep": "tensor(float16)",
                     "encoder_hidden_states": "tensor(float16)"}
    te = ort.InferenceSession(str(out / "text_encoder" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert te.get_inputs()[0].type == "tensor(int64)"


def test_convert_rejects_fp16_with_int8(tmp_path, ldm_safetensors):
    assert_one_line_error(run_tool("convert", str(ldm_safetensors), str(tmp_path / "o"), "--fp16", "--quantize", "int8"),
                          "pick one")


# ------------------------------------------------------------------------------------------------
# bad inputs: one clear line on stderr, non-zero exit, before any heavy work


def test_missing_path(tmp_path):
    assert_one_line_error(run_tool("convert", str(tmp_path / "nope.safetensors"), str(tmp_path / "o")),
                          "no such file or directory")


def test_text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not a model\n" * 20)
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "text file")
    q = tmp_path / "model.safetensors"
    q.write_text("hello, I only look like a checkpoint\n" * 20)
    assert_one_line_error(run_tool("convert", str(q), str(tmp_path / "o2")), "text file")


def test_git_lfs_pointer(tmp_path):
    p = tmp_path / "v1-5.safetensors"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 4265380512\n")
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "git lfs")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "empty")


def test_truncated_safetensors(tmp_path, ldm_safetensors):
    data = ldm_safetensors.read_bytes()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "truncated")
    q = tmp_path / "cut-header.safetensors"
    q.write_bytes(data[:100])
    assert_one_line_error(run_tool("convert", str(q), str(tmp_path / "o2")), "truncated")


def test_truncated_ckpt(tmp_path, ldm_state):
    import torch

    small = {k: v for k, v in list(ldm_state.items())[:50]}
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": small}, str(full))
    data = full.read_bytes()
    p = tmp_path / "cut.ckpt"
    p.write_bytes(data[: len(data) * 2 // 3])
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "corrupt")


def _fake_checkpoint(path: Path, keys: dict) -> None:
    import safetensors.torch
    import torch

    safetensors.torch.save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))


def test_sdxl_checkpoint_is_rejected(tmp_path):
    p = tmp_path / "sdxl.safetensors"
    _fake_checkpoint(p, {
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (8, 4),
        "conditioner.embedders.1.model.token_embedding.weight": (8, 4),
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "first_stage_model.decoder.conv_in.weight": (4, 4, 1, 1),
    })
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "SDXL", "1.x")


def test_sd2_checkpoint_is_rejected(tmp_path):
    p = tmp_path / "sd2.safetensors"
    _fake_checkpoint(p, {
        "cond_stage_model.model.token_embedding.weight": (8, 4),
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "first_stage_model.decoder.conv_in.weight": (4, 4, 1, 1),
    })
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "2.x")


def test_not_a_stable_diffusion_checkpoint(tmp_path):
    p = tmp_path / "other.safetensors"
    _fake_checkpoint(p, {"encoder.layer.0.weight": (4, 4)})
    assert_one_line_error(run_tool("convert", str(p), str(tmp_path / "o")), "not a stable diffusion")


def test_tiny_checkpoint_needs_config(tmp_path, ldm_safetensors):
    assert_one_line_error(run_tool("convert", str(ldm_safetensors), str(tmp_path / "o")), "--config")


def test_repo_id_offline(tmp_path):
    r = run_tool("convert", "easel-tests/no-such-model", str(tmp_path / "o"))
    assert_one_line_error(r)
    line = r.stderr.strip()
    assert "cannot reach the hugging face hub" in line.lower() or "no such repository" in line.lower(), line


def test_destination_not_empty(tmp_path, ldm_safetensors):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("x")
    assert_one_line_error(run_tool("convert", str(ldm_safetensors), str(dst)), "not empty")


def test_sdtool_wrapper_reports_one_line(tmp_path):
    r = subprocess.run([str(MODELS_DIR / "sdtool"), "convert", str(tmp_path / "missing.ckpt"), str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=600)
    assert_one_line_error(r, "no such file or directory")


def test_onnx_folder_is_not_converted_again(tmp_path):
    assert_one_line_error(run_tool("convert", str(MODELS_DIR / "tiny-sd"), str(tmp_path / "o")), "already an onnx")


def test_folder_that_is_not_a_model(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG")
    assert_one_line_error(run_tool("convert", str(src), str(tmp_path / "o")), "not a diffusers model folder")
