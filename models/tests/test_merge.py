"""``easel models merge`` follows the A1111 checkpoint merger (``modules/extras.py``, ``run_modelmerger``)
tensor for tensor, on tiny LDM-layout checkpoints built here from seeds.

The contract under test (the Rust binary at ``<repo>/target/debug/easel``; ``models/sdtool test`` runs
after it is built, so a missing binary is a failure, not a skip):

    easel models merge A B --alpha M --output OUT.safetensors
    easel models merge A B --alpha M --mode add-difference --base C --output OUT.safetensors

A1111's rules (see /work/notes/a1111-merge.md for the full write-up):

* weighted sum: ``(1 - M) * A + M * B``; add difference: ``A + M * (B - C)``;
* only keys of A that contain the substring ``"model"``, are also in B, and are not
  ``cond_stage_model.transformer.text_model.embeddings.position_ids`` are merged; every other key of A is
  written unchanged (value and dtype); keys only B has are dropped (the output's keys are A's keys);
* add difference: a key of B that C lacks contributes nothing (``B - C`` is replaced by zeros);
* an inpainting A (9-channel ``input_blocks.0.0.weight``) with a normal B merges the first 4 input channels
  and keeps A's other 5; a normal A with an inpainting B is an error.

Exactness: the reference is computed in torch exactly as A1111 does it, in float32 with every operation
rounded separately: ``f32(1-M) * a + f32(M) * b`` (``1-M`` formed in double, then rounded) and
``a + f32(M) * (b - c)``. Merged float32 tensors must be bit-identical to that (no tolerance). Computing in
double and rounding once, or fusing multiply-adds, is off by one ulp in about 40 % of the elements and fails.
Unmerged tensors must be byte-identical copies of A's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT

ALPHA = 0.3
ALPHA_ADD = 0.65
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
B_ONLY_KEY = "model.diffusion_model.only_in_b.weight"
C_MISSING_KEY = "model.diffusion_model.out.2.bias"
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def easel_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    exe = target / "debug" / "easel"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: build it first (`cargo build` in {REPO_ROOT}); these tests run the real binary")
    return exe


# --- the checkpoints ----------------------------------------------------------------------------------


def _ldm(components) -> dict:
    """The tiny model in the LDM layout (float32), as tests/fixtures/checkpoints/tiny-ldm.safetensors is written."""
    import torch

    from tooling.ref_checkpoints import tiny_ldm_state

    return tiny_ldm_state(components, torch.float32)


def _without_ema(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith("model_ema.")}


def _save(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_components):
    """A (seed 1, full: EMA entries, int64 position ids), B (seed 2, pruned: no EMA, float32 position ids,
    different betas, one key A lacks), C (seed 0, pruned, one UNet key missing), and an inpainting A9
    (tiny-inpaint, seed 1)."""
    import torch

    from tooling.random_model import build_random

    d = tmp_path_factory.mktemp("merge")
    a = _ldm(build_random("tiny", 1))
    b = _without_ema(_ldm(build_random("tiny", 2)))
    b[POSITION_IDS] = b[POSITION_IDS].to(torch.float32) + 1e-3  # a "broken position ids" file: never merged
    b["betas"] = b["betas"] * 1.01  # not a "model" key: A's is kept
    b[B_ONLY_KEY] = torch.full((4,), 0.5)
    c = _without_ema(_ldm(tiny_components))
    del c[C_MISSING_KEY]
    a9 = _without_ema(_ldm(build_random("tiny-inpaint", 1)))
    assert a[CONV_IN].shape[1] == 4 and a9[CONV_IN].shape[1] == 9
    paths = {name: _save(sd, d / f"{name}.safetensors") for name, sd in {"A": a, "B": b, "C": c, "A9": a9}.items()}
    return {"dir": d, "paths": paths, "sd": {"A": a, "B": b, "C": c, "A9": a9}}


# --- A1111's arithmetic in torch ----------------------------------------------------------------------

SKIP_ON_MERGE = {POSITION_IDS}


def a1111_merge(theta_0: dict, theta_1: dict, multiplier: float, theta_2: dict | None = None) -> tuple[dict, set]:
    """``run_modelmerger``'s tensor work (weighted sum, or add difference when ``theta_2`` is given), on
    copies; returns the merged dict and the set of keys that were merged."""
    import torch

    theta_0 = {k: v.clone() for k, v in theta_0.items()}
    theta_1 = {k: v.clone() for k, v in theta_1.items()}
    if theta_2 is not None:
        for key in theta_1:
            if key in SKIP_ON_MERGE or "model" not in key:
                continue
            theta_1[key] = theta_1[key] - theta_2[key] if key in theta_2 else torch.zeros_like(theta_1[key])

    def f(a, b):
        return a + multiplier * b if theta_2 is not None else (1 - multiplier) * a + multiplier * b

    merged = set()
    for key in theta_0:
        if "model" not in key or key not in theta_1 or key in SKIP_ON_MERGE:
            continue
        a, b = theta_0[key], theta_1[key]
        if a.shape != b.shape and a.shape[0:1] + a.shape[2:] == b.shape[0:1] + b.shape[2:]:
            if a.shape[1] == 4 and b.shape[1] == 9:
                raise RuntimeError("When merging inpainting model with a normal one, A must be the inpainting model.")
            assert a.shape[1] == 9 and b.shape[1] == 4
            theta_0[key][:, 0:4, :, :] = f(a[:, 0:4, :, :], b)
        else:
            theta_0[key] = f(a, b)
        merged.add(key)
    return theta_0, merged


# --- running the binary -------------------------------------------------------------------------------


def run_merge(tmp_path: Path, a: Path, b: Path, alpha: float, out: Path, base: Path | None = None):
    args = [str(easel_binary()), "models", "merge", str(a), str(b), "--alpha", repr(alpha)]
    if base is not None:
        args += ["--mode", "add-difference", "--base", str(base)]
    args += ["--output", str(out)]
    env = dict(os.environ)
    # A private data dir and models dir: the test never touches the user's.
    env["EASEL_DATA_DIR"] = str(tmp_path / "data")
    env["EASEL_MODELS_DIR"] = str(tmp_path / "models")
    (tmp_path / "models").mkdir(exist_ok=True)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def _load(path: Path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    return load_file(str(path)), metadata


def _check(out: dict, want: dict, merged: set, a: dict) -> None:
    import torch

    assert sorted(out) == sorted(want), (
        f"key set differs from A's: extra {sorted(set(out) - set(want))[:5]}, missing {sorted(set(want) - set(out))[:5]}")
    for key, w in want.items():
        o = out[key]
        assert o.dtype == w.dtype and tuple(o.shape) == tuple(w.shape), f"{key}: {o.dtype}{tuple(o.shape)} != {w.dtype}{tuple(w.shape)}"
        if key not in merged:
            assert torch.equal(o, a[key]), f"{key} is not merged under A1111's rules and must be A's tensor unchanged"
            continue
        if not torch.equal(o, w):
            diff = (o.double() - w.double()).abs()
            raise AssertionError(
                f"{key}: {int((o != w).sum())} of {o.numel()} elements differ from A1111's float32 arithmetic "
                f"(max |d| {float(diff.max()):.3g}); compute f32(1-M)*a + f32(M)*b / a + f32(M)*(b-c) in float32, "
                "rounding each operation (no f64 intermediate, no fused multiply-add)")


def _run_and_load(tmp_path, a, b, alpha, base=None):
    out = tmp_path / "merged.safetensors"
    proc = run_merge(tmp_path, a, b, alpha, out, base)
    assert proc.returncode == 0, f"easel models merge failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert out.is_file(), f"no output file at {out}:\n{proc.stdout}\n{proc.stderr}"
    return _load(out)


# --- the tests ----------------------------------------------------------------------------------------


def test_reference_arithmetic_is_float32_with_separate_roundings(checkpoints):
    """The Python half on its own: torch's merge equals the numpy float32 recipe the docstring states, the
    edge cases are present in the checkpoints, and the rules select what they should."""
    sd = checkpoints["sd"]
    a, b, c = sd["A"], sd["B"], sd["C"]
    ws, merged = a1111_merge(a, b, ALPHA)
    key = "model.diffusion_model.middle_block.1.proj_in.weight"
    an, bn, cn = a[key].numpy(), b[key].numpy(), c[key].numpy()
    assert np.array_equal(ws[key].numpy(), np.float32(1 - ALPHA) * an + np.float32(ALPHA) * bn)
    ad, merged_ad = a1111_merge(a, b, ALPHA_ADD, c)
    assert np.array_equal(ad[key].numpy(), an + np.float32(ALPHA_ADD) * (bn - cn))
    # The rules: EMA (A only), position ids (skip list), betas/alphas_cumprod (no "model") are not merged;
    # the B-only key is not in the result; C's missing key leaves A's value.
    assert merged == merged_ad
    assert not any(k.startswith("model_ema.") for k in merged) and any(k.startswith("model_ema.") for k in ws)
    assert POSITION_IDS not in merged and ws[POSITION_IDS].dtype == a[POSITION_IDS].dtype
    assert "betas" not in merged and np.array_equal(ws["betas"].numpy(), a["betas"].numpy())
    assert B_ONLY_KEY not in ws
    assert C_MISSING_KEY in merged and np.array_equal(ad[C_MISSING_KEY].numpy(), a[C_MISSING_KEY].numpy())
    n_model = sum("model" in k for k in a)
    assert len(merged) == n_model - 4 - 1  # 4 model_ema.* entries, position ids
    # float64-then-round would not be bit-identical (this is why the recipe is spelled out).
    f64 = ((1 - ALPHA) * an.astype(np.float64) + ALPHA * bn.astype(np.float64)).astype(np.float32)
    assert not np.array_equal(f64, ws[key].numpy())


def test_weighted_sum(tmp_path, checkpoints):
    p, sd = checkpoints["paths"], checkpoints["sd"]
    out, metadata = _run_and_load(tmp_path, p["A"], p["B"], ALPHA)
    want, merged = a1111_merge(sd["A"], sd["B"], ALPHA)
    _check(out, want, merged, sd["A"])
    _check_metadata(metadata)


def test_add_difference(tmp_path, checkpoints):
    p, sd = checkpoints["paths"], checkpoints["sd"]
    out, metadata = _run_and_load(tmp_path, p["A"], p["B"], ALPHA_ADD, base=p["C"])
    want, merged = a1111_merge(sd["A"], sd["B"], ALPHA_ADD, sd["C"])
    _check(out, want, merged, sd["A"])
    _check_metadata(metadata)


def test_alpha_0_and_1_are_the_inputs(tmp_path, checkpoints):
    """Weighted sum at M=0 is A and at M=1 is B on every merged key (exact in float32)."""
    p, sd = checkpoints["paths"], checkpoints["sd"]
    for alpha, src in ((0.0, "A"), (1.0, "B")):
        (tmp_path / "merged.safetensors").unlink(missing_ok=True)
        out, _ = _run_and_load(tmp_path, p["A"], p["B"], alpha)
        want, merged = a1111_merge(sd["A"], sd["B"], alpha)
        _check(out, want, merged, sd["A"])
        key = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
        assert np.array_equal(out[key].numpy(), sd[src][key].numpy())


def test_inpainting_a_with_a_normal_b(tmp_path, checkpoints):
    p, sd = checkpoints["paths"], checkpoints["sd"]
    out, _ = _run_and_load(tmp_path, p["A9"], p["B"], ALPHA)
    want, merged = a1111_merge(sd["A9"], sd["B"], ALPHA)
    assert CONV_IN in merged
    _check(out, want, merged, sd["A9"])
    assert np.array_equal(out[CONV_IN][:, 4:].numpy(), sd["A9"][CONV_IN][:, 4:].numpy())


def test_normal_a_with_an_inpainting_b_is_refused(tmp_path, checkpoints):
    p = checkpoints["paths"]
    out = tmp_path / "refused.safetensors"
    proc = run_merge(tmp_path, p["A"], p["A9"], ALPHA, out)
    assert proc.returncode != 0, "A1111 refuses a normal A with an inpainting B (A must be the inpainting model)"
    assert not out.exists(), "a refused merge must not leave an output file"
    assert "inpaint" in (proc.stderr + proc.stdout).lower(), f"the error should say why:\n{proc.stderr}"


def _check_metadata(metadata: dict) -> None:
    """A1111 writes ``format: pt``; a merge recipe, when written, is JSON naming the method and multiplier."""
    if metadata:
        assert metadata.get("format", "pt") == "pt"
    if "sd_merge_recipe" in metadata:
        recipe = json.loads(metadata["sd_merge_recipe"])
        assert "interp_method" in recipe and "multiplier" in recipe
