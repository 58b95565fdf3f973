"""The committed picture-operation fixtures (tests/fixtures/imageops) are complete and are exactly what
this Pillow produces: the index lists every file, and regenerating gives the same pixels."""

from __future__ import annotations

import json

import numpy as np

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "imageops"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def test_index_lists_every_file_with_its_parameters():
    import PIL
    from PIL import Image

    from tooling.ref_imageops import BICUBIC_RESIZES, BLUR_RADII, CV_BLUR_SIGMAS, LANCZOS_SIZES

    listed = [f["file"] for f in INDEX["files"]]
    assert sorted(listed) == sorted(p.name for p in FIXTURES.iterdir() if p.name != "cases.json")
    assert INDEX["pillow"] == PIL.__version__
    resizes = [f for f in INDEX["files"] if f["op"] == "resize"]
    assert [(f["width"], f["height"]) for f in resizes if f["filter"] == "LANCZOS"] == [s for s, _ in LANCZOS_SIZES]
    assert [(f["width"], f["height"], f["box"] and tuple(f["box"])) for f in resizes if f["filter"] == "BICUBIC"] == \
        [(w, h, box) for w, h, box in BICUBIC_RESIZES]
    assert [f["sigma"] for f in INDEX["files"] if f["op"] == "cv_blur"] == CV_BLUR_SIGMAS
    assert [f["radius"] for f in INDEX["files"] if f["op"] == "gaussian_blur"] == [float(r) for r in BLUR_RADII]
    for f in INDEX["files"]:
        im = Image.open(FIXTURES / f["file"])
        assert (im.mode, im.size) == (f["mode"], (f["width"], f["height"])), f["file"]
    src = Image.open(FIXTURES / "source.png")
    sizes = [s for s, _ in LANCZOS_SIZES]
    assert any(w == 2 * src.width and h == 2 * src.height for w, h in sizes)
    assert any(w < src.width and h < src.height for w, h in sizes)
    assert any(w > src.width and h < src.height for w, h in sizes)
    mask = np.asarray(Image.open(FIXTURES / "mask_source.png"))
    assert {0, 255} < set(np.unique(mask).tolist())
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 500_000


def test_regenerated_files_match(tmp_path):
    from PIL import Image

    from tooling.ref_imageops import main

    main(tmp_path)
    assert json.loads((tmp_path / "cases.json").read_text()) == INDEX
    for f in INDEX["files"]:
        a = np.asarray(Image.open(tmp_path / f["file"]))
        b = np.asarray(Image.open(FIXTURES / f["file"]))
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b), f["file"]
