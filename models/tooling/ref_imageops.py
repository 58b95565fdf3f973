"""Reference fixtures for the picture operations Easel must reproduce byte for byte in Rust.

Owns: two deterministic synthetic source pictures drawn here and the outputs of Pillow's own functions
on them, the ones diffusers (and so Easel) uses around the pipelines:

* ``Image.resize((W, H), Image.LANCZOS)`` on an RGB picture (the hires fix's picture upscaler,
  diffusers' default resampling when an init picture or mask has the wrong size);
* ``Image.filter(ImageFilter.GaussianBlur(r))`` on an 8-bit grayscale mask (inpainting's mask blur,
  ``VaeImageProcessor.blur``);
* ``Image.convert("L")`` on an RGB picture (a mask given in colour becomes grayscale this way);
* what A1111's inpainting adds (``modules/images.py`` ``resize_image``, ``modules/masking.py``,
  ``processing.py``): ``Image.resize`` with Pillow's default bicubic, over a whole picture and over an
  empty ``box`` (the edge bands of ``resize_image`` mode 2); ``cv2.GaussianBlur`` of an 8-bit mask along
  x with a ``(k, 1)`` kernel, then along y with ``(1, k)`` (k = 2·int(2.5σ + 0.5) + 1); the picture's
  kept part (an empty ``RGBa`` picture pasted through the inverted mask, as ``RGBA``); a Gaussian blur
  of that ``RGBa`` picture back to ``RGBA``; and ``Image.alpha_composite``.

All on 8-bit pictures, where Pillow computes in fixed point with its own rounding: the outputs are exact
bytes to match, not values within a tolerance.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_imageops ../tests/fixtures/imageops`` (or
``sdtool reference imageops OUT``). Writes ``source.png`` (RGB 40x24: sharp edges, gradients, noise),
``lanczos_<W>x<H>.png`` (RGB), ``mask_source.png`` (L 48x40: hard-edged shapes at 0/255 and greys),
``blur_<r>.png`` (L, ``r`` as in ``str(float)`` minus a trailing ``.0``: ``blur_1.png``, ``blur_2.5.png``),
``gray.png`` (L) and ``cases.json`` (every file with its operation, input and parameters, and the Pillow
version).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SOURCE_SIZE = (40, 24)
MASK_SIZE = (48, 40)
# (W, H) and what each covers, for source.png (40x24)
LANCZOS_SIZES = [
    ((80, 48), "2x up"),
    ((60, 36), "1.5x up"),
    ((24, 14), "0.6x down (24 x 14.4 rounded down)"),
    ((64, 16), "mixed: 1.6x up in x, 0.67x down in y"),
    ((29, 37), "mixed: 0.725x down in x, 1.54x up in y (odd sizes)"),
]
BLUR_RADII = [1, 2.5, 4, 8]
# (W, H, box) for source.png (40x24) with Pillow's bicubic; None: the whole picture
BICUBIC_RESIZES = [
    (6, 5, None),
    (40, 5, (0, 0, 40, 0)),
    (40, 5, (0, 24, 40, 24)),
    (7, 24, (0, 0, 0, 24)),
    (7, 24, (40, 0, 40, 24)),
]
CV_BLUR_SIGMAS = [2, 4]
ALPHA_BLUR_RADII = [4, 64]


def source_picture():
    """RGB 40x24: a hard-edged two-colour checker, a diagonal edge, a gradient and seeded noise."""
    from PIL import Image

    w, h = SOURCE_SIZE
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(20240601)
    checker = ((x // 5 + y // 4) % 2).astype(np.float64)
    r = np.where(checker > 0, 230.0, 25.0)
    g = np.where(x > y + 8, 200.0, 40.0)  # a diagonal edge
    b = 255.0 * x / (w - 1)  # a smooth ramp
    rgb = np.stack([r, g, b], axis=-1) + rng.integers(-30, 31, size=(h, w, 3))
    rgb[9:15, 14:26] = (255, 255, 0)  # a flat yellow bar with sharp edges
    rgb[0, :] = 0  # a black first row and white last column: edge handling
    rgb[:, -1] = 255
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")


def mask_source():
    """L 48x40: a white rectangle, a white disc, a grey 128 bar, a grey 64 triangle, one-pixel lines."""
    from PIL import Image

    w, h = MASK_SIZE
    y, x = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), np.uint8)
    m[4:16, 6:20] = 255
    m[(x - 32) ** 2 + (y - 12) ** 2 <= 49] = 255
    m[24:30, 4:44] = 128
    m[(y >= 32) & (y < 39) & (x >= 30) & (x - 30 <= y - 32)] = 64
    m[34, 2:24] = 255  # a one-pixel line
    m[:, 46] = 200  # a one-pixel column near the edge
    return Image.fromarray(m, mode="L")


def radius_name(r: float) -> str:
    return f"{float(r):g}"


def main(out: Path) -> int:
    import PIL
    from PIL import Image, ImageFilter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = source_picture()
    mask = mask_source()
    src.save(out / "source.png")
    mask.save(out / "mask_source.png")
    files = [
        {"file": "source.png", "op": "source", "mode": "RGB", "width": src.width, "height": src.height},
        {"file": "mask_source.png", "op": "source", "mode": "L", "width": mask.width, "height": mask.height},
    ]
    for (w, h), what in LANCZOS_SIZES:
        name = f"lanczos_{w}x{h}.png"
        src.resize((w, h), Image.LANCZOS).save(out / name)
        files.append({"file": name, "op": "resize", "filter": "LANCZOS", "input": "source.png", "mode": "RGB",
                      "width": w, "height": h, "what": what,
                      "call": f"source.resize(({w}, {h}), Image.LANCZOS)"})
    for r in BLUR_RADII:
        name = f"blur_{radius_name(r)}.png"
        mask.filter(ImageFilter.GaussianBlur(r)).save(out / name)
        files.append({"file": name, "op": "gaussian_blur", "radius": float(r), "input": "mask_source.png", "mode": "L",
                      "width": mask.width, "height": mask.height,
                      "call": f"mask_source.filter(ImageFilter.GaussianBlur({r}))"})
    import cv2
    from PIL import ImageOps

    for w, h, box in BICUBIC_RESIZES:
        name = f"bicubic_{w}x{h}" + ("" if box is None else "_box_" + "_".join(map(str, box))) + ".png"
        src.resize((w, h), Image.BICUBIC, box=box).save(out / name)
        files.append({"file": name, "op": "resize", "filter": "BICUBIC", "box": box, "input": "source.png",
                      "mode": "RGB", "width": w, "height": h,
                      "call": f"source.resize(({w}, {h}), Image.BICUBIC, box={box})"})
    for sigma in CV_BLUR_SIGMAS:
        k = 2 * int(2.5 * sigma + 0.5) + 1
        blurred = cv2.GaussianBlur(np.asarray(mask), (k, 1), sigma)
        blurred = cv2.GaussianBlur(blurred, (1, k), sigma)
        name = f"cv_blur_{sigma}.png"
        Image.fromarray(blurred).save(out / name)
        files.append({"file": name, "op": "cv_blur", "sigma": sigma, "input": "mask_source.png", "mode": "L",
                      "width": mask.width, "height": mask.height, "opencv": cv2.__version__,
                      "call": f"cv2.GaussianBlur(cv2.GaussianBlur(mask, ({k}, 1), {sigma}), (1, {k}), {sigma})"})
    # The alpha operations work on source.png and the mask cut to its size.
    holes = mask.crop((0, 0) + src.size)
    holes.save(out / "mask_cut.png")
    files.append({"file": "mask_cut.png", "op": "source", "mode": "L", "width": holes.width, "height": holes.height})
    kept = Image.new("RGBa", src.size)
    kept.paste(src.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(holes))
    kept.convert("RGBA").save(out / "kept.png")
    files.append({"file": "kept.png", "op": "kept_part", "input": "source.png", "mask": "mask_cut.png", "mode": "RGBA",
                  "width": src.width, "height": src.height,
                  "call": 'Image.new("RGBa").paste(source RGBA -> RGBa, mask=ImageOps.invert(mask_cut)) -> RGBA'})
    for r in ALPHA_BLUR_RADII:
        name = f"kept_blur_{r}.png"
        kept.filter(ImageFilter.GaussianBlur(r)).convert("RGBA").save(out / name)
        files.append({"file": name, "op": "kept_blur", "radius": float(r), "input": "source.png", "mask": "mask_cut.png",
                      "mode": "RGBA", "width": src.width, "height": src.height,
                      "call": f"kept (RGBa).filter(ImageFilter.GaussianBlur({r})) -> RGBA"})
    under = kept.filter(ImageFilter.GaussianBlur(ALPHA_BLUR_RADII[0])).convert("RGBA")
    over = kept.convert("RGBA")
    Image.alpha_composite(under, over).save(out / "composite.png")
    files.append({"file": "composite.png", "op": "alpha_composite", "under": f"kept_blur_{ALPHA_BLUR_RADII[0]}.png",
                  "over": "kept.png", "input": "source.png", "mode": "RGBA", "width": src.width, "height": src.height,
                  "call": "Image.alpha_composite(kept_blur_4, kept)"})
    src.convert("L").save(out / "gray.png")
    files.append({"file": "gray.png", "op": "convert_l", "input": "source.png", "mode": "L",
                  "width": src.width, "height": src.height, "call": 'source.convert("L")'})
    index = {
        "generator": "Pillow on 8-bit pictures drawn by tooling/ref_imageops.py; outputs are exact bytes",
        "regenerate": "models/sdtool reference imageops tests/fixtures/imageops",
        "pillow": PIL.__version__,
        "files": files,
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../tests/fixtures/imageops")))
