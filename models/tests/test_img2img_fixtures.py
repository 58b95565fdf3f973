"""The committed img2img fixtures (tests/fixtures/img2img) are complete and reproducible: the index
lists exactly the case folders ``tooling.ref_img2img`` defines, every case has its files, and
regenerating cases with diffusers gives the committed latents and images again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "img2img"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def test_index_matches_the_case_list_and_folders():
    from tooling.ref_img2img import CASES
    from tooling.reference import SAMPLERS

    names = [c["name"] for c in INDEX["cases"]]
    assert names == [c.name for c in CASES]
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(names)
    assert {c.sampler for c in CASES} == set(SAMPLERS), "every sampler family's add_noise is covered"
    for name in names:
        s = json.loads((FIXTURES / name / "settings.json").read_text())
        latents = np.load(FIXTURES / name / "latents.npy")
        assert latents.shape[0] == s["meta"]["calls"] > 0
        assert (FIXTURES / name / "init.png").is_file()
        for image in s["meta"]["images"]:
            assert (FIXTURES / name / image).is_file()
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5_000_000


@pytest.mark.parametrize("name", ["heun_s06", "batch2_ddim"])
def test_regenerated_case_matches(tmp_path, tiny_torch_dir, name):
    from PIL import Image

    from tooling.ref_img2img import CASES, run_case
    from tooling.reference import load_pipeline

    case = next(c for c in CASES if c.name == name)
    out = tmp_path / name
    run_case(load_pipeline(tiny_torch_dir), case, out, log=lambda *_: None)
    a, b = np.load(out / "latents.npy"), np.load(FIXTURES / name / "latents.npy")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))
    for i in range(case.batch_size):
        got = np.asarray(Image.open(out / f"image_{i}.png"), dtype=np.int16)
        want = np.asarray(Image.open(FIXTURES / name / f"image_{i}.png"), dtype=np.int16)
        assert np.abs(got - want).max() <= 1
    assert np.array_equal(np.asarray(Image.open(out / "init.png")), np.asarray(Image.open(FIXTURES / name / "init.png")))
