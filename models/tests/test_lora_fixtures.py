"""The committed LoRA fixtures (tests/fixtures/lora) are complete, consistent and reproducible: the index
lists exactly the case folders ``tooling.ref_lora`` defines, the LoRA files are byte-for-byte what the
generator writes (hashes as recorded), the PEFT file is the kohya file with alpha/rank folded in, the
equalities the generator asserted hold in the committed arrays, and regenerating cases with diffusers gives
the committed latents and images again."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "lora"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def _latents(name: str) -> np.ndarray:
    return np.load(FIXTURES / name / "latents.npy")


def _embeds(name: str) -> np.ndarray:
    return np.load(FIXTURES / name / "text_embeddings.npy")


def test_index_matches_the_case_list_and_folders():
    from tooling.ref_lora import CASES

    names = [c["name"] for c in INDEX["cases"]]
    assert names == [c.name for c in CASES]
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        s = json.loads((FIXTURES / name / "settings.json").read_text())
        assert _latents(name).shape == (1, 4, 8, 8) == tuple(s["meta"]["latent_shape"])
        assert _embeds(name).shape == (2, 77, 32)
        for image in s["meta"]["images"]:
            assert (FIXTURES / name / image).is_file()
        for use in s["loras"]:
            assert (FIXTURES / use["file"]).is_file()
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 1_000_000


def test_lora_files_hashes_as_recorded():
    from tooling.ref_lora import addnet_hash

    for entry in INDEX["files"]:
        data = (FIXTURES / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        (n,) = struct.unpack("<Q", data[:8])
        assert data[8 + n:8 + n + 1] != b" "  # the header's padding is inside n: tensor bytes start here
        assert addnet_hash(FIXTURES / entry["file"]) == entry["addnet_hash"] == hashlib.sha256(data[8 + n:]).hexdigest()
        assert entry["a1111_lora_hash"] == entry["addnet_hash"][:12]
    assert (FIXTURES / "sdxl-lora-keys.safetensors").stat().st_size < 50_000


def test_lora_files_are_reproducible(tmp_path, tiny_components):
    """The generator's tensors, saved again, give the same bytes (so the recorded hashes are stable)."""
    from tooling.ref_lora import (DETAIL_KOHYA, DETAIL_LDM, SDXL_KEYS, STYLE_KOHYA, STYLE_PEFT, _save, detail_lora,
                                  sdxl_lora_keys, style_lora)

    kohya, peft, _, _ = style_lora(tiny_components)
    detail, detail_ldm, _ = detail_lora(tiny_components)
    for tensors, file, meta in [(kohya, STYLE_KOHYA, {"ss_output_name": "style"}), (peft, STYLE_PEFT, None),
                                (detail, DETAIL_KOHYA, {"ss_output_name": "detail"}),
                                (detail_ldm, DETAIL_LDM, {"ss_output_name": "detail"}),
                                (sdxl_lora_keys(), SDXL_KEYS, {"ss_output_name": "sdxl"})]:
        _save(tensors, tmp_path / file, meta)
        assert (tmp_path / file).read_bytes() == (FIXTURES / file).read_bytes(), file


def test_peft_file_is_the_kohya_file_with_the_scale_folded_in():
    from safetensors import safe_open
    from safetensors.numpy import load_file

    kohya = load_file(str(FIXTURES / "style-kohya.safetensors"))
    peft = load_file(str(FIXTURES / "style-peft.safetensors"))
    with safe_open(str(FIXTURES / "style-kohya.safetensors"), framework="np") as f:
        assert f.metadata() == {"ss_output_name": "style"}
    bases = sorted(k[: -len(".lora_down.weight")] for k in kohya if k.endswith(".lora_down.weight"))
    assert len(kohya) == 3 * len(bases) and len(peft) == 2 * len(bases)
    for base in bases:
        alpha = kohya[f"{base}.alpha"]
        down, up = kohya[f"{base}.lora_down.weight"], kohya[f"{base}.lora_up.weight"]
        assert alpha.shape == () and alpha.dtype == np.float32 and float(alpha) == 2.0
        assert down.dtype == up.dtype == np.float16 and down.shape[0] == up.shape[1] == 4
        if down.ndim == 4:
            assert up.shape[2:] == (1, 1)
        if base.startswith("lora_unet_"):
            path = "unet." + _module_path(base[len("lora_unet_"):])
        else:
            path = "text_encoder." + _module_path(base[len("lora_te_"):])
        np.testing.assert_array_equal(peft[f"{path}.lora_A.weight"], down.astype(np.float32))
        np.testing.assert_array_equal(peft[f"{path}.lora_B.weight"], up.astype(np.float32) * np.float32(0.5))
    kinds = {b.rsplit("_", 1)[-1] for b in bases}
    assert {"q", "k", "v", "0", "proj", "2", "in", "out", "conv1", "conv2", "fc1", "fc2"} <= kinds


def _module_path(underscored: str) -> str:
    """kohya's underscored name back to the module path, for the names the tiny model has."""
    import re

    path = underscored.replace("_", ".")
    for fixed in ("down.blocks", "mid.block", "up.blocks", "transformer.blocks", "to.q", "to.k", "to.v", "to.out",
                  "proj.in", "proj.out", "text.model", "self.attn", "q.proj", "k.proj", "v.proj", "out.proj"):
        path = path.replace(fixed, fixed.replace(".", "_"))
    return re.sub(r"\.+", ".", path)


def test_recorded_equalities_hold_in_the_arrays():
    assert np.array_equal(_latents("style_0"), _latents("none"))
    assert np.array_equal(_embeds("style_0"), _embeds("none"))
    assert np.abs(_latents("style_peft_0.8") - _latents("style_0.8")).max() <= 1e-5
    assert np.array_equal(_embeds("style_unet0.8_te0"), _embeds("none"))
    assert not np.array_equal(_embeds("style_0.8"), _embeds("none"))
    for name in ("style_0.8", "style_-0.5", "style_unet0.8_te0", "style_0.8+detail_0.6"):
        assert np.abs(_latents(name) - _latents("none")).max() > 1e-2, name
    assert not np.array_equal(_latents("style_0.8+detail_0.6"), _latents("style_0.8"))


@pytest.mark.parametrize("name", ["style_unet0.8_te0", "style_0.8+detail_0.6"])
def test_regenerated_case_matches(tmp_path, tiny_torch_dir, name):
    from PIL import Image

    from tooling.ref_lora import CASES, run_case
    from tooling.reference import load_pipeline

    case = next(c for c in CASES if c.name == name)
    out = tmp_path / name
    run_case(load_pipeline(tiny_torch_dir), case, FIXTURES, out, log=lambda *_: None)
    a, b = np.load(out / "latents.npy"), _latents(name)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))
    np.testing.assert_allclose(np.load(out / "text_embeddings.npy"), _embeds(name), rtol=1e-5, atol=1e-5)
    got = np.asarray(Image.open(out / "image_0.png"), dtype=np.int16)
    want = np.asarray(Image.open(FIXTURES / name / "image_0.png"), dtype=np.int16)
    assert np.abs(got - want).max() <= 1
