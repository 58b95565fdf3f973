"""Reference fixtures for Easel's tiled VAE decoding and encoding.

Owns: running diffusers' own ``AutoencoderKL`` of the tiny torch model (float32, CPU, one thread)
with ``enable_tiling()`` and without, on deterministic inputs larger than one tile, and saving what
the engine must reproduce. The tiny VAE's config gives ``sample_size`` 64 and four blocks, so
diffusers tiles at 64 pixels (8 latents), starting a tile every 6 latents (48 pixels) and
cross-fading over 16 pixels (2 latents) — the same rule that gives SD 1.5's 512-pixel tiles.

* decode: ``vae.decode(z)`` for ``z`` float32 [1, 4, 16, 20] (a 128x160 picture; tiles start at
  latents 0, 6, 12 down and 0, 6, 12, 18 across), tiled and whole;
* encode: ``vae.encode(x).latent_dist`` for ``x`` float32 [1, 3, 128, 160] in [-1, 1], tiled and
  whole: the mean and log-variance as the encoder gives them (``latent_dist.parameters``,
  ``[1, 8, 16, 20]``: mean channels first), before any sampling.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_vae_tiling ../tests/fixtures/vae_tiling`` (or
``sdtool reference vae_tiling OUT``). Writes ``decode_input.npy``, ``decode_tiled.npy``,
``decode_whole.npy``, ``encode_input.npy``, ``encode_tiled.npy``, ``encode_whole.npy`` and
``cases.json`` (shapes, the tile sizes diffusers used, the diffusers and torch versions).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

DECODE_SHAPE = (1, 4, 16, 20)
ENCODE_SHAPE = (1, 3, 128, 160)


def decode_input() -> np.ndarray:
    """Smooth latents with some structure (waves) at the magnitude of real scaled latents."""
    _, c, h, w = DECODE_SHAPE
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    planes = [np.sin(0.45 * x + 0.7 * k) * np.cos(0.3 * y - 0.2 * k) * (1.0 + 0.25 * k) for k in range(c)]
    return np.stack(planes)[None].astype(np.float32)


def encode_input() -> np.ndarray:
    """A picture in [-1, 1]: gradients, a disc and stripes, so every tile sees something different."""
    _, c, h, w = ENCODE_SHAPE
    y, x = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.08).astype(np.float64)
    planes = [
        np.clip(2 * x - 1 + 0.5 * disc, -1, 1),
        np.clip(np.sin(18 * y) * 0.8 - 0.3 * disc, -1, 1),
        np.clip(1 - 2 * y * x + 0.2 * np.cos(25 * x), -1, 1),
    ]
    return np.stack(planes)[None].astype(np.float32)


def main(out: Path) -> int:
    import torch

    from .reference import default_torch_model, load_pipeline

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_pipeline(default_torch_model()).vae
    arrays: dict[str, np.ndarray] = {"decode_input": decode_input(), "encode_input": encode_input()}
    with torch.no_grad():
        z = torch.from_numpy(arrays["decode_input"])
        x = torch.from_numpy(arrays["encode_input"])
        vae.disable_tiling()
        arrays["decode_whole"] = vae.decode(z).sample.numpy()
        arrays["encode_whole"] = vae.encode(x).latent_dist.parameters.numpy()
        vae.enable_tiling()
        arrays["decode_tiled"] = vae.decode(z).sample.numpy()
        arrays["encode_tiled"] = vae.encode(x).latent_dist.parameters.numpy()
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array.astype(np.float32))
    import diffusers

    index = {
        "generator": "diffusers AutoencoderKL of models/tiny-sd-torch, float32, CPU, enable_tiling() vs disable_tiling()",
        "regenerate": "models/sdtool reference vae_tiling tests/fixtures/vae_tiling",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "tile_sample_min_size": vae.tile_sample_min_size,
        "tile_latent_min_size": vae.tile_latent_min_size,
        "tile_overlap_factor": vae.tile_overlap_factor,
        "shapes": {name: list(array.shape) for name, array in arrays.items()},
        "encode_note": "latent_dist.parameters: mean (channels 0-3) then log-variance (4-7), unclamped",
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../tests/fixtures/vae_tiling")))
