"""The committed tiled-VAE fixtures (tests/fixtures/vae_tiling) are complete, were made with the tiling
Easel reproduces (8-latent tiles of the tiny VAE, overlap 0.25), and regenerating them gives the same
arrays."""

from __future__ import annotations

import json

import numpy as np

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "vae_tiling"
INDEX = json.loads((FIXTURES / "cases.json").read_text())


def test_index_lists_every_array_with_its_shape():
    names = sorted(p.stem for p in FIXTURES.glob("*.npy"))
    assert names == sorted(INDEX["shapes"])
    for name, shape in INDEX["shapes"].items():
        array = np.load(FIXTURES / f"{name}.npy")
        assert array.dtype == np.float32 and list(array.shape) == shape, name
    assert (INDEX["tile_sample_min_size"], INDEX["tile_latent_min_size"], INDEX["tile_overlap_factor"]) == (64, 8, 0.25)
    # Larger than one tile in both directions, and not a multiple of the stride across.
    _, _, h, w = INDEX["shapes"]["decode_input"]
    assert h > 8 and w > 8 and w % 6 != 0
    # Tiling changed the result (else the fixture could not tell a tiled decode from a whole one).
    tiled, whole = np.load(FIXTURES / "decode_tiled.npy"), np.load(FIXTURES / "decode_whole.npy")
    assert np.abs(tiled - whole).max() > 0.1


def test_regenerated_arrays_match(tmp_path):
    from tooling.ref_vae_tiling import main

    main(tmp_path)
    for name in INDEX["shapes"]:
        a, b = np.load(tmp_path / f"{name}.npy"), np.load(FIXTURES / f"{name}.npy")
        assert np.allclose(a, b, rtol=0, atol=1e-6), name
