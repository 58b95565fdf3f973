"""The committed inpainting fixtures (tests/fixtures/inpaint) are complete and reproducible: the index lists
exactly the case folders ``tooling.ref_inpaint`` defines, every case has its files, the masks exercise the
binarisation threshold, and regenerating cases with diffusers gives the committed arrays and images again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "inpaint"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def _settings(name: str) -> dict:
    return json.loads((FIXTURES / name / "settings.json").read_text())


def test_index_matches_the_case_list_and_folders():
    from PIL import Image

    from tooling.ref_inpaint import CASES, MODELS

    names = [c["name"] for c in INDEX["cases"]]
    assert names == [c.name for c in CASES]
    assert INDEX["cases"] == [json.loads(json.dumps(c.__dict__)) for c in CASES]
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(names)
    assert {c.model for c in CASES} == set(MODELS)
    for case in CASES:
        d = FIXTURES / case.name
        s = _settings(case.name)
        assert {k: v for k, v in s.items() if k != "meta"} == INDEX["cases"][names.index(case.name)]
        latents = np.load(d / "latents.npy")
        h, w = case.height // 8, case.width // 8
        assert latents.dtype == np.float32 and latents.shape == (s["meta"]["calls"], case.batch_size, 4, h, w)
        assert s["meta"]["calls"] > 0 and s["meta"]["unet_in_channels"] == (9 if case.model == "tiny-sd-inpaint" else 4)
        assert np.load(d / "mask_latent.npy").shape == (1, 1, h, w)
        assert np.load(d / "masked_image_latents.npy").shape == (1, 4, h, w)
        init, mask = Image.open(d / "init.png"), Image.open(d / "mask.png")
        assert init.mode == "RGB" and mask.mode == "L" and init.size == mask.size == (case.width, case.height)
        assert (d / "mask_blurred.png").is_file() == (case.mask_blur > 0)
        assert s["meta"]["images"] == [f"image_{i}.png" for i in range(case.batch_size)]
        for image in s["meta"]["images"]:
            assert Image.open(d / image).size == (case.width, case.height)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5_000_000


def test_masks_straddle_the_threshold_and_binarise_at_one_half():
    """mask.png has greys on both sides of 127.5 (127 and 128 included); mask_latent.npy is the
    (blurred) mask thresholded at 0.5 and sampled at the top-left pixel of every 8x8 block."""
    from PIL import Image

    from tooling.ref_inpaint import CASES

    for case in CASES:
        d = FIXTURES / case.name
        m = np.asarray(Image.open(d / "mask.png"))
        given = np.asarray(Image.open(d / ("mask_blurred.png" if case.mask_blur else "mask.png")))
        latent = np.load(d / "mask_latent.npy")[0, 0]
        assert np.array_equal(latent, (given[::8, ::8] >= 128).astype(np.float32)), case.name
        if case.mask == "black":
            assert not m.any() and not latent.any()
            continue
        values = set(np.unique(m).tolist())
        assert {0, 127, 128, 255} <= values
        assert any(100 <= v < 127 for v in values) and any(128 < v <= 200 for v in values)
        sampled = set(np.unique(given[::8, ::8]).tolist())
        assert 0 < latent.mean() < 1 and (case.mask_blur or {127, 128} <= sampled)


def test_random_draw_order_recorded():
    """diffusers' generator order: 4-channel UNets encode the init picture first (even at strength 1);
    9-channel UNets only below strength 1; the masked picture's posterior is always drawn, after the noise."""
    from tooling.ref_inpaint import CASES

    for case in CASES:
        by = [d["by"] for d in _settings(case.name)["meta"]["random_draws"]]
        first = ["prepare_latents", "sample"] if case.model == "tiny-sd-inpaint" and case.strength == 1.0 else \
            ["sample", "prepare_latents", "sample"]
        assert by[:len(first)] == first, (case.name, by)
        assert all(b == "step" for b in by[len(first):]) and (len(by) > len(first)) == (case.sampler == "euler_a")


def test_black_mask_gives_the_init_pictures_vae_round_trip(tiny_components):
    import torch
    from PIL import Image

    d = FIXTURES / "black_mask_s1"
    s = _settings("black_mask_s1")
    vae = tiny_components["vae"]
    x = torch.from_numpy(np.asarray(Image.open(d / "init.png"), np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        eps = torch.randn(dist.mean.shape, generator=torch.Generator("cpu").manual_seed(s["seed"]))  # the first draw
        z = (dist.mean + dist.std * eps) * vae.config.scaling_factor
    last = np.load(d / "latents.npy")[-1]
    np.testing.assert_allclose(last, z.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["dpmpp_2m_karras_s08_batch2", "inpaint9_unipc_s06"])
def test_regenerated_case_matches(tmp_path, tiny_torch_dir, tiny_inpaint_torch_dir, name):
    from PIL import Image

    from tooling.ref_inpaint import CASES, run_case
    from tooling.reference import load_pipeline

    case = next(c for c in CASES if c.name == name)
    model = tiny_inpaint_torch_dir if case.model == "tiny-sd-inpaint" else tiny_torch_dir
    out = tmp_path / name
    run_case(load_pipeline(model), case, out, log=lambda *_: None)
    for arr in ("latents.npy", "mask_latent.npy", "masked_image_latents.npy"):
        a, b = np.load(out / arr), np.load(FIXTURES / name / arr)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())), err_msg=arr)
    for i in range(case.batch_size):
        got = np.asarray(Image.open(out / f"image_{i}.png"), dtype=np.int16)
        want = np.asarray(Image.open(FIXTURES / name / f"image_{i}.png"), dtype=np.int16)
        assert np.abs(got - want).max() <= 1
    for f in ("init.png", "mask.png"):
        assert np.array_equal(np.asarray(Image.open(out / f)), np.asarray(Image.open(FIXTURES / name / f))), f
    assert json.loads((out / "settings.json").read_text()) == _settings(name)
