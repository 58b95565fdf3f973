"""Reference fixtures for the latent resizes of the hires fix, from torch's own ``interpolate``.

Owns: one deterministic latent tensor drawn here ([1, 4, 8, 12] float32) and what
``torch.nn.functional.interpolate`` makes of it with every mode A1111's ``shared.latent_upscale_modes`` and
ComfyUI's ``LatentUpscale`` methods use: ``bilinear`` and ``bicubic`` (``align_corners=False``, with and
without ``antialias``), ``nearest``, ``nearest-exact`` and ``area``; and ComfyUI's own ``bislerp``
(``comfy/utils.py`` from a ComfyUI checkout: ``--comfyui DIR`` or ``EASEL_COMFYUI``); to a larger size (the
hires fix) and to a smaller one (a shrinking upscale, where antialiasing widens the filter).

Run from ``models/``: ``.venv/bin/python -m tooling.ref_latent_resize --comfyui DIR ../tests/fixtures/latent_resize``
(or ``EASEL_COMFYUI=DIR sdtool reference latent_resize OUT``). Writes ``source.npy`` and ``<mode>[_aa]_<h>x<w>.npy`` ([1, 4, h, w]
float32) and ``cases.json`` (each file with its call, and the torch version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import upstream

SHAPE = (1, 4, 8, 12)
# (mode, antialias): the modes the two tools' latent upscales call
MODES = [("bilinear", False), ("bilinear", True), ("bicubic", False), ("bicubic", True), ("nearest", False),
         ("nearest-exact", False), ("area", False)]
SIZES = [(13, 19), (5, 7)]  # (h, w): larger (not a whole factor), smaller


def source() -> np.ndarray:
    """Smooth waves plus a few sharp steps, so edges and overshoot both show."""
    b, c, h, w = SHAPE
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [np.sin(x * 0.7 + k) * np.cos(y * 0.5 - k) * (1 + k) + (x > w / 2 + k - 2) * 1.5 for k in range(c)]
    return np.stack(planes)[None].astype(np.float32)


def main(out: Path, a1111_dir: str | None = None, comfyui_dir: str | None = None) -> int:
    import torch

    from .ref_compat_images import COMFYUI_FILES

    comfyui_dir = comfyui_dir or os.environ.get("EASEL_COMFYUI")
    if not comfyui_dir:
        raise SystemExit("ref_latent_resize: give --comfyui DIR (or EASEL_COMFYUI) for ComfyUI's bislerp")
    utils_py = Path(comfyui_dir) / "comfy/utils.py"
    pinned = COMFYUI_FILES["comfy/utils.py"][-1]
    if upstream.file_digest(utils_py) != pinned:
        raise SystemExit(f"ref_latent_resize: {utils_py} is not the pinned revision (sha256 {pinned})")
    bislerp = upstream.defs_from_source(utils_py, ["bislerp"], {"torch": torch}, "comfy_utils_bislerp")["bislerp"]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    src = source()
    np.save(out / "source.npy", src)
    files = [{"file": "source.npy", "shape": list(src.shape)}]
    x = torch.from_numpy(src)
    for mode, antialias in MODES:
        for h, w in SIZES:
            name = f"{mode}{'_aa' if antialias else ''}_{h}x{w}.npy"
            kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
            if antialias:
                kwargs["antialias"] = True
            y = torch.nn.functional.interpolate(x, size=(h, w), mode=mode, **kwargs)
            np.save(out / name, y.numpy().astype(np.float32))
            args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
            files.append({"file": name, "mode": mode, "antialias": antialias, "size": [h, w],
                          "call": f"interpolate(source, size=({h}, {w}), mode={mode!r}{', ' + args if args else ''})"})
    for h, w in SIZES:
        name = f"bislerp_{h}x{w}.npy"
        np.save(out / name, bislerp(x, w, h).numpy().astype(np.float32))
        files.append({"file": name, "mode": "bislerp", "antialias": False, "size": [h, w],
                      "call": f"comfy.utils.bislerp(source, width={w}, height={h})"})
    index = {
        "generator": "torch.nn.functional.interpolate on a float32 latent drawn by tooling/ref_latent_resize.py",
        "regenerate": "models/sdtool reference latent_resize tests/fixtures/latent_resize",
        "torch": torch.__version__,
        "comfyui": {"file": "comfy/utils.py", "sha256_lf": pinned, "commit": COMFYUI_FILES["comfy/utils.py"][-2]},
        "files": files,
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    upstream.cli(main, __doc__, "../tests/fixtures/latent_resize")
