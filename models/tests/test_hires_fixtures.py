"""The committed hires-fix fixtures (tests/fixtures/hires) are complete, consistent and reproducible: the
index lists exactly the case folders ``tooling.ref_hires`` defines, target sizes round down to multiples of
8, the latent upscaler's output is the bilinear resize of the first pass, and regenerating cases with
diffusers gives the committed arrays and images again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "hires"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def _settings(name: str) -> dict:
    return json.loads((FIXTURES / name / "settings.json").read_text())


def test_target_size_rounds_down_to_multiples_of_8():
    from tooling.ref_hires import target_size

    assert target_size(64, 64, 2.0) == (128, 128)
    assert target_size(64, 64, 1.5) == (96, 96)
    assert target_size(64, 48, 1.25) == (80, 56)  # 60 -> 56
    assert target_size(72, 56, 1.3) == (88, 72)  # 93.6 -> 88, 72.8 -> 72


def test_index_matches_the_case_list_and_folders():
    from dataclasses import asdict

    from PIL import Image

    from tooling.ref_hires import CASES, UPSCALERS, target_size

    names = [c["name"] for c in INDEX["cases"]]
    assert names == [c.name for c in CASES]
    assert INDEX["cases"] == [json.loads(json.dumps(asdict(c))) for c in CASES]
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(names)
    assert {c.hires.upscaler for c in CASES} == set(UPSCALERS)
    for case in CASES:
        d = FIXTURES / case.name
        s = _settings(case.name)
        meta = s["meta"]
        tw, th = target_size(case.width, case.height, case.hires.scale)
        assert (meta["target_width"], meta["target_height"]) == (tw, th)
        b = case.batch_size
        first = np.load(d / "latents.npy")
        second = np.load(d / "hires_latents.npy")
        assert first.dtype == second.dtype == np.float32
        assert first.shape == (meta["first_pass"]["calls"], b, 4, case.height // 8, case.width // 8)
        assert second.shape == (meta["hires_pass"]["calls"], b, 4, th // 8, tw // 8)
        steps2 = case.hires.steps or case.steps
        assert meta["hires_pass"]["steps"] == steps2 and 0 < meta["hires_pass"]["calls"] <= steps2
        lanczos = case.hires.upscaler == "lanczos"
        assert meta["first_pass_images"] == ([f"first_pass_{i}.png" for i in range(b)] if lanczos else [])
        assert (d / "upscaled_latents.npy").is_file() == (not lanczos)
        for f in meta["first_pass_images"]:
            assert Image.open(d / f).size == (case.width, case.height)
        assert meta["images"] == [f"image_{i}.png" for i in range(b)]
        for f in meta["images"]:
            assert Image.open(d / f).size == (tw, th)
        # second-pass draws: a posterior sample of the resized pictures (lanczos), then the noise
        draws = [(x["by"], x["shape"]) for x in meta["hires_pass"]["random_draws"]]
        want = [("prepare_latents", [b, 4, th // 8, tw // 8])]
        assert draws == ([("sample", [b, 4, th // 8, tw // 8])] + want if lanczos else want)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5_000_000


def test_latent_upscale_is_bilinear_interpolation_of_the_first_pass():
    import torch

    from tooling.ref_hires import CASES

    for case in CASES:
        if case.hires.upscaler != "latent":
            continue
        d = FIXTURES / case.name
        meta = _settings(case.name)["meta"]
        last = torch.from_numpy(np.load(d / "latents.npy")[-1])
        size = (meta["target_height"] // 8, meta["target_width"] // 8)
        up = torch.nn.functional.interpolate(last, size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_array_equal(up, np.load(d / "upscaled_latents.npy"))


@pytest.mark.parametrize("name", ["lanczos_dpmpp_2m_karras_1_5x", "latent_ddim_1_25x_64x48_batch2"])
def test_regenerated_case_matches(tmp_path, tiny_torch_dir, name):
    from PIL import Image

    from tooling.ref_hires import CASES, run_case
    from tooling.reference import load_pipeline

    case = next(c for c in CASES if c.name == name)
    out = tmp_path / name
    run_case(load_pipeline(tiny_torch_dir), case, out, log=lambda *_: None)
    s = _settings(name)
    for arr in s["meta"]["arrays"]:
        a, b = np.load(out / arr), np.load(FIXTURES / name / arr)
        # The Lanczos path goes through 8-bit pixels, where float32 differences between CPUs flip a
        # few roundings that the second pass carries on (seen: 3e-4 on a machine of another CPU).
        scale = (1e-3 if case.hires.upscaler == "lanczos" else 1e-5) * max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=scale, err_msg=arr)
    for f in s["meta"]["first_pass_images"] + s["meta"]["images"]:
        got = np.asarray(Image.open(out / f), dtype=np.int16)
        want = np.asarray(Image.open(FIXTURES / name / f), dtype=np.int16)
        assert np.abs(got - want).max() <= 1, f
    assert json.loads((out / "settings.json").read_text()) == s
