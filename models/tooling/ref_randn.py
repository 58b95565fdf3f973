"""Reference fixtures for Easel's torch-compatible CPU noise (``src/engine/torch_rng.rs``).

Owns: writing ``tests/fixtures/randn/`` from real torch: for several seeds, the output of
``torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)`` for
shapes on both sides of torch's 16-element split (the float64 path with its cached second value below
16, the vectorised Box-Muller path with its tail redraw from 16 up), and sequences of consecutive draws
from one generator (the generator state, including the cached normal, must carry across calls).

Run from ``models/``: ``.venv/bin/python -m tooling.ref_randn ../tests/fixtures/randn`` (any output
folder works; ``tests/parity_randn.rs`` reads that one). The files are ``<case>.npy`` (float32, the draws of one case concatenated in order)
and ``manifest.json`` (seed, draw shapes, torch version and the CPU capability torch dispatched to, since
the x86 AVX2 kernel and the portable kernel differ in the last bits).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

# (seed, draws): each draw is one torch.randn call's shape on the same generator.
SEEDS_ALL_SHAPES = [0, 1, 42, 2**32 + 5, 2**63 - 1]
SINGLE_SHAPES = [(1,), (3,), (15,), (16,), (17,), (31,), (100,), (1, 4, 8, 8), (2, 4, 12, 8)]
# The full 512x512 latent is 64 KiB per seed, so only two seeds carry it.
LATENT_SEEDS = [0, 42]
LATENT_SHAPE = (1, 4, 64, 64)
SEQUENCES = [
    [(5,), (300,), (7,)],  # small, large, small: the cache survives the large draw
    [(3,), (1,), (16,), (2,), (33,)],  # odd counts leave a cached value for the next small call
    [(1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8)],  # latents then two ancestral-sampler noises
]


def _draw(seed: int, shapes: list[tuple[int, ...]]) -> np.ndarray:
    g = torch.Generator("cpu").manual_seed(seed)
    parts = [torch.randn(shape, generator=g, dtype=torch.float32).reshape(-1) for shape in shapes]
    return torch.cat(parts).numpy().astype(np.float32)


def main(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, int, list[tuple[int, ...]]]] = []
    for seed in SEEDS_ALL_SHAPES:
        for shape in SINGLE_SHAPES:
            numel = int(np.prod(shape))
            cases.append((f"seed{seed}_n{numel}", seed, [shape]))
        for i, seq in enumerate(SEQUENCES):
            cases.append((f"seed{seed}_seq{i}", seed, seq))
    for seed in LATENT_SEEDS:
        cases.append((f"seed{seed}_latent64", seed, [LATENT_SHAPE]))

    manifest = {
        "generator": 'torch.Generator("cpu").manual_seed(seed); torch.randn(shape, generator=g) per draw',
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cases": [],
    }
    for name, seed, shapes in cases:
        values = _draw(seed, shapes)
        np.save(out / f"{name}.npy", values)
        manifest["cases"].append(
            {"name": name, "seed": seed, "draws": [list(s) for s in shapes], "file": f"{name}.npy"}
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ref_randn.py OUT_DIR")
    print(main(sys.argv[1]))
