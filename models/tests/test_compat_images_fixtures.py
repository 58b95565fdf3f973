"""The committed compat image fixtures (tests/fixtures/compat_images) are complete and consistent.

``tooling.ref_compat_images`` records them by running A1111's and ComfyUI's txt2img code from checkouts, which
these tests do not need: they check that the index, the case list and the files agree, recompute what can be
recomputed from the stored arrays alone (the CPU start noise with torch's generator, closed-form Karras
schedules, the initial latent scaling) and decode every ``latents.npy`` with the tiny diffusers VAE the way the
tool does, requiring the stored 8-bit image (truncated pixels) within one level (for A1111's inpainting: where the
mask repaints; elsewhere the init picture, which its overlay puts back)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT
from tooling.ref_compat_images import CASES as DEFINED
from tooling.ref_compat_images import REQUEST_KEYS

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "compat_images"
INDEX = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in INDEX["cases"]}
NAMES = list(CASES)
SCALE = 0.18215
TOL = dict(rtol=1e-5, atol=1e-6)  # torch's float32 CPU kernels may differ in the last bits between CPU kinds


def load(case: str, what: str) -> np.ndarray:
    return np.load(FIXTURES / case / what)


def settings(case: str) -> dict:
    return json.loads((FIXTURES / case / "settings.json").read_text(encoding="utf-8"))


def image(case: str, i: int) -> np.ndarray:
    with Image.open(FIXTURES / case / f"image_{i}.png") as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def karras(n: int, smin: float, smax: float, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    s = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.append(s, 0.0)


def timestep_sampler(name: str) -> bool:
    """A1111's DDIM / PLMS: CompVisSampler over whole timesteps (sigmas.npy holds the timesteps walked)."""
    return CASES[name]["tool"].get("schedule_resolves_to", "").startswith("CompVisSampler.get_timesteps")


def a1111_timesteps(steps: int) -> list[int]:
    return [min(t + 1, 999) for t in range(0, 1000, 1000 // steps)]


def output_size(s: dict) -> tuple[int, int]:
    """(width, height) of the case's images: the request's, or the hires fix's target (each side times the scale,
    rounded down to a multiple of 8)."""
    if "hires" in s:
        return tuple(int(side * s["hires"]["scale"]) // 8 * 8 for side in (s["width"], s["height"]))
    return s["width"], s["height"]


def a1111_inpainting(s: dict) -> bool:
    return s["compat"] == "a1111" and "masked_content" in s


def image_size(name: str) -> tuple[int, int]:
    """(width, height) of the case's images: A1111's "only masked" pastes its results into the init picture, so
    they have init.png's size; otherwise output_size."""
    s = settings(name)
    if s.get("inpaint_area") == "only_masked":
        with Image.open(FIXTURES / name / "init.png") as im:
            return im.size
    return output_size(s)


def run_sigmas(s: dict) -> int:
    """How many sigmas the tool's sampler walks: steps + 1, or A1111's img2img tail of t_enc + 2; A1111's timestep
    samplers walk ceil(1000 / (1000 // steps)) timesteps, or the first t_enc in image-to-image."""
    if s["sampler"] in ("DDIM", "DDIM CFG++", "PLMS", "UniPC"):
        t_enc = int(min(s.get("strength") or 1, 0.999) * s["steps"])
        return t_enc if "strength" in s else len(a1111_timesteps(s["steps"]))
    if s["compat"] == "a1111" and "strength" in s:
        return int(min(s["strength"], 0.999) * s["steps"]) + 2
    if "hires" in s:  # the second KSampler's: its own steps (0 = the first pass's)
        return (s["hires"]["steps"] or s["steps"]) + 1
    if "sampling_range" in s:  # KSampler.sample's window: cut after end_at_step, then from start_at_step
        r = s["sampling_range"]
        return min(s["steps"], r["end_at_step"]) + 1 - r["start_at_step"]
    return s["steps"] + 1


DISCARD_PENULTIMATE = ("uni_pc", "uni_pc_bh2")  # ComfyUI: a steps + 1 schedule less its second-to-last sigma


def test_index_matches_the_case_list_and_the_sources():
    assert NAMES == [c.name for c in DEFINED]
    for c in DEFINED:
        assert CASES[c.name]["settings"] == c.settings.request()
    for key in ("a1111", "comfyui"):
        src = INDEX["source"][key]
        assert src["repo"] and src["commit"] and len(src["commit"]) == 40, key
        for f, rec in src["files"].items():
            # pinned by the commit that last changed the file, or by its git blob id
            pin = rec["commit"] if "commit" in rec else rec["git_blob"]
            assert rec["role"] in ("run", "read") and pin and len(pin) == 40 and len(rec["sha256_lf"]) == 64, (key, f)
    assert INDEX["model"]["vae_scaling_factor"] == SCALE
    assert INDEX["model"]["a1111_scale_factor"] == SCALE == INDEX["model"]["comfyui_latent_format_scale_factor"]
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    # 1.4 MB before A1111's four inpainting cases (77 kB with their index entries), 1.45 MB before the six cases of
    # the inpainting model (82 kB), 1.53 MB before the two antialiased hires cases, the bislerp one and A1111's
    # Lanczos hires fix (200 kB), 1.73 MB before the two KSamplerAdvanced chains (45 kB)
    assert total < 1_800_000
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_a_request_in_easels_vocabulary(name):
    s = settings(name)
    # ``strength`` only for image-to-image cases (ComfyUI's denoise over the case's init.png);
    # ``sampling_range`` only for ComfyUI's KSamplerAdvanced cases, ``masked_content`` grey and ``mask_grow`` for its
    # VAEEncodeForInpaint, ``hires`` for its two-pass graph, ``batch_index`` for its LatentFromBatch,
    # ``combined_prompts`` for its ConditioningCombine, ``conditioning`` for its conditioning nodes; ``mask_blur``,
    # ``masked_content``, ``inpaint_area`` and ``inpaint_padding`` (only masked) for A1111's inpainting; ``model``
    # only for the cases of the tiny inpainting model.
    optional = ("strength", "mask_blur", "sampling_range", "stages", "masked_content", "mask_grow", "inpaint_area",
                "inpaint_padding", "hires", "batch_index", "combined_prompts", "conditioning", "model")
    assert list(s) == REQUEST_KEYS + [k for k in optional if k in s]
    assert s.get("model", "tiny-sd-inpaint") == "tiny-sd-inpaint"
    if "masked_content" in s and s["compat"] == "comfyui":
        assert s["masked_content"] == "grey" and 0 <= s["mask_grow"] <= 64
        assert not {"mask_blur", "inpaint_area", "inpaint_padding"} & set(s)
    if a1111_inpainting(s):
        assert s["masked_content"] in ("fill", "original", "latent_noise", "latent_nothing") and "mask_grow" not in s
        assert 0 <= s["mask_blur"] <= 64 and 0 < s["strength"] <= 1
        assert s["inpaint_area"] in ("whole", "only_masked")
        assert ("inpaint_padding" in s) == (s["inpaint_area"] == "only_masked")
        assert (FIXTURES / name / "init.png").exists() and (FIXTURES / name / "mask.png").exists()
    else:
        assert not {"mask_blur", "inpaint_area", "inpaint_padding"} & set(s)
    assert s == CASES[name]["settings"]
    assert s["compat"] in ("a1111", "comfyui") and s["prompt_syntax"] == s["compat"]
    if s["compat"] == "a1111":
        assert s["randn_source"] in ("nv", "cpu")
        assert (s["subseed"] is None) == (s["subseed_strength"] == 0)
    else:
        assert s["randn_source"] is None and s["subseed"] is None and s["subseed_strength"] == 0
    # 6 steps, except A1111's Restart, which only restarts from 20 steps on; 64x64 but for the area cases,
    # whose areas (at least 64 pixels a side) need a larger picture, and A1111's only masked, whose processing
    # aspect differs from the mask's box.
    sized = "conditioning" in s or CASES[name].get("graph", {}).get("init_crop") or s.get("inpaint_area") == "only_masked"
    size = (s["width"], s["height"]) if sized else (64, 64)
    assert (s["width"], s["height"], s["cfg_scale"]) == (*size, 7.0)
    assert s["steps"] == (20 if s["sampler"] == "Restart" else 6)


@pytest.mark.parametrize("name", NAMES)
def test_files_have_the_right_shapes(name):
    s, case = settings(name), CASES[name]
    width, height = output_size(s)
    b, shape = s["batch_size"], [s["batch_size"], 4, height // 8, width // 8]
    width, height = image_size(name)
    init = (["init.png"] if "strength" in s else []) + (["mask.png"] if (FIXTURES / name / "mask.png").exists() else [])
    assert case["files"] == ["settings.json", "latents.npy", "noise.npy", "sigmas.npy"] + init + \
        [f"image_{i}.png" for i in range(b)]
    assert sorted(p.name for p in (FIXTURES / name).iterdir()) == sorted(case["files"])
    for what in ("latents.npy", "noise.npy"):
        arr = load(name, what)
        assert arr.dtype == np.float32 and list(arr.shape) == shape and np.isfinite(arr).all(), (name, what)
    sig = load(name, "sigmas.npy")
    assert sig.dtype == np.float32 and sig.shape == (run_sigmas(s),)
    np.testing.assert_array_equal(sig, np.asarray(case["sigmas"], dtype=np.float32))
    if timestep_sampler(name):
        assert sig[0] == 1 and np.all(np.diff(sig) > 0) and np.array_equal(sig, np.round(sig))
    else:
        r = s.get("sampling_range") or {}
        leftover = r.get("return_with_leftover_noise") and r["end_at_step"] < s["steps"]
        assert (sig[-1] > 0 if leftover else sig[-1] == 0) and np.all(np.diff(sig) < 0)
    for i in range(b):
        assert image(name, i).shape == (height, width, 3)
    if b > 1:
        assert not np.array_equal(image(name, 0), image(name, 1))


@pytest.mark.parametrize("name", NAMES)
def test_start_noise_is_the_tools_seeding(name):
    s, tool = settings(name), CASES[name]["tool"]
    noise = load(name, "noise.npy")
    shape = noise.shape
    if not (s.get("sampling_range") or {}).get("add_noise", True):  # KSamplerAdvanced add_noise disabled
        assert not noise.any()
        return
    if s["compat"] == "comfyui":  # prepare_noise: one draw for the batch from torch.manual_seed(seed)
        # (a two-pass case stores its second KSampler's noise, from that sampler's seed)
        seed = s["hires"].get("seed", s["seed"]) if "hires" in s else s["seed"]
        # (LatentFromBatch: one image at a time up to the last index, the batch's images kept)
        skip = s.get("batch_index", 0)
        draws = torch.randn([skip + shape[0], *shape[1:]], generator=torch.Generator("cpu").manual_seed(seed)).numpy()
        want = draws[skip:]
        np.testing.assert_allclose(noise, want, **TOL)
        return
    if s["randn_source"] == "nv":  # Philox (tests/fixtures/noise covers the generator itself)
        return
    if s["subseed_strength"] == 0:  # image i: its own CPU generator seeded seed + i
        assert tool["seeds"] == [s["seed"] + i for i in range(shape[0])]
        for i in range(shape[0]):
            want = torch.randn(shape[1:], generator=torch.Generator("cpu").manual_seed(s["seed"] + i)).numpy()
            np.testing.assert_allclose(noise[i], want, **TOL)
        return
    # variation seed: every image uses `seed` (not seed + i), slerped towards subseed + i's noise
    assert tool["seeds"] == [s["seed"]] * shape[0]
    assert tool["subseeds"] == [s["subseed"] + i for i in range(shape[0])]
    base = torch.randn(shape[1:], generator=torch.Generator("cpu").manual_seed(s["seed"])).numpy()
    for i in range(shape[0]):
        sub = torch.randn(shape[1:], generator=torch.Generator("cpu").manual_seed(s["subseed"] + i)).numpy()
        assert not np.allclose(noise[i], base)
        assert np.corrcoef(noise[i].ravel(), base.ravel())[0, 1] > 0.8
        assert np.corrcoef(noise[i].ravel(), sub.ravel())[0, 1] > 0.2
    assert not np.allclose(noise[0], noise[1])


@pytest.mark.parametrize("name", NAMES)
def test_schedule_and_initial_scaling(name):
    s, tool = settings(name), CASES[name]["tool"]
    sig = load(name, "sigmas.npy").astype(np.float64)
    smin, smax = 0.029167532920837402, 14.614643096923828  # SD 1.5's discrete sigma table ends (float32)
    if timestep_sampler(name):  # the timesteps of get_timesteps(steps), the first t_enc of them in img2img
        want = a1111_timesteps(s["steps"])
        assert list(sig) == (want[:int(min(s["strength"], 0.999) * s["steps"])] if "strength" in s else want)
        assert tool["x0_scale"] == (None if "strength" in s else 1.0)
        assert tool["unet_batch"] == ["cond"] * s["batch_size"] + ["uncond"] * s["batch_size"]
        return
    if "strength" in s and s["compat"] == "a1111":
        # sample_img2img: the last t_enc + 2 sigmas of the full schedule (the txt2img case's, same steps),
        # started at init_latent + noise * sigma_sched[0].
        assert sig[0] < smax and tool["x0_scale"] == np.float32(sig[0])
        assert len(sig) == int(min(s["strength"], 0.999) * s["steps"]) + 2 and sig[-1] == 0
        if s["schedule"] == "Karras":
            np.testing.assert_allclose(sig, karras(s["steps"], smin, smax)[-len(sig):], rtol=1e-5, atol=1e-6)
            return
        full = load("a1111_euler_a_automatic_s42_b2", "sigmas.npy").astype(np.float64)
        assert s["schedule"] == "Automatic" and s["steps"] == len(full) - 1
        np.testing.assert_array_equal(sig, full[len(full) - len(sig):])
        return
    if "hires" in s and s["compat"] == "a1111":
        # sample_hr_pass: sample_img2img(steps=the hires steps), so setup_img2img_steps runs all of them (t_enc =
        # steps - 1) out of a schedule of int(steps / min(strength, 0.999)), from latent + noise * sigma_sched[0];
        # the latents resized with torch's interpolate at shared.latent_upscale_modes' mode and antialias.
        h, steps = s["hires"], s["hires"]["steps"] or s["steps"]
        assert tool["hires"]["schedule_steps"] == int(steps / min(h["strength"], 0.999))
        assert len(sig) == steps + 1 and sig[-1] == 0 and sig[0] < smax and tool["x0_scale"] == np.float32(sig[0])
        if h["upscaler"] == "lanczos":  # the picture branch: resize_image with the Lanczos upscaler
            assert tool["hires"]["interpolate"]["upscaler"] == "Lanczos"
            assert tool["hires"]["latent_size"] == [side // 8 for side in reversed(output_size(s))]
            return
        mode = {"latent": "bilinear", "latent-nearest-exact": "nearest-exact", "latent-bicubic": "bicubic",
                "latent-nearest": "nearest", "latent-antialiased": "bilinear",
                "latent-bicubic-antialiased": "bicubic"}[h["upscaler"]]
        antialias = h["upscaler"].endswith("-antialiased")
        assert tool["hires"]["interpolate"] == {"mode": mode, "antialias": antialias}
        assert tool["hires"]["latent_size"] == [side // 8 for side in reversed(output_size(s))]
        return
    if "hires" in s:
        # The second KSampler of ComfyUI's two-pass graph at denoise < 1 over the scaled LATENT: the last steps + 1
        # sigmas of an int(steps / denoise)-step schedule from noise * sigma0 + latent; the first pass at full
        # denoise.
        assert sig[0] < smax and tool["max_denoise"] is False and tool["x0_scale"] == pytest.approx(sig[0], rel=1e-6)
        assert tool["first_pass"]["max_denoise"] is True
        return
    # ComfyUI's KSampler.set_steps: denoise below 1 runs the tail of int(steps / denoise) steps, which is the
    # whole schedule when that is steps again (0.9 of 6 steps).
    whole = "strength" in s and (s["strength"] > 0.9999 or int(s["steps"] / s["strength"]) == s["steps"])
    if whole and "sampling_range" not in s:
        # ComfyUI at full denoise over a VAEEncode: the whole schedule, noise * sqrt(1 + sigma0^2) + latent.
        assert sig[0] == pytest.approx(smax, rel=1e-6) and tool["max_denoise"] is True
        assert tool["x0_scale"] == pytest.approx(float(np.sqrt(1 + sig[0] ** 2)), rel=1e-6)
        return
    if "strength" in s:
        # ComfyUI's denoise < 1: the last steps + 1 sigmas of an int(steps / denoise)-step schedule,
        # started at noise * sigma0 + latent (not max_denoise).
        assert sig[0] < smax and tool["max_denoise"] is False and tool["x0_scale"] == pytest.approx(sig[0], rel=1e-6)
        return
    assert sig[0] == pytest.approx(smax, rel=1e-6)
    if s["schedule"].lower() == "karras":
        want = karras(s["steps"], smin, smax)
        if s["compat"] == "comfyui" and s["sampler"] in DISCARD_PENULTIMATE:
            want = np.delete(karras(s["steps"] + 1, smin, smax), -2)
        if "sampling_range" in s:  # KSamplerAdvanced's window of it (cut, zeroed unless leftover, started)
            r = s["sampling_range"]
            want = want[:min(s["steps"], r["end_at_step"]) + 1].copy()
            if not r["return_with_leftover_noise"] and r["end_at_step"] < s["steps"]:
                want[-1] = 0.0
            want = want[r["start_at_step"]:]
        np.testing.assert_allclose(sig, want, rtol=1e-5, atol=1e-6)
    if s["compat"] == "a1111":  # KDiffusionSampler.sample: x = noise * sigmas[0]
        assert tool["x0_scale"] == np.float32(sig[0])
    else:  # KSAMPLER.sample at full denoise: noise * sqrt(1 + sigma0^2)
        assert tool["max_denoise"] is True
        assert tool["x0_scale"] == pytest.approx(float(np.sqrt(1 + sig[0] ** 2)), rel=1e-6)
    cond_first = s["compat"] == "a1111"  # A1111: [cond, uncond] rows; ComfyUI: [uncond, cond]
    b = s["batch_size"]
    # ComfyUI's ConditioningCombine: every combined prompt's rows between (to_batch reversed), last added first
    others = ["other"] * (b * len(s.get("combined_prompts", [])))
    if "conditioning" in s:
        # ComfyUI batches area crops and token lengths its own way; what must hold is the lists process_conds made:
        # each side's entries as sent (areas in latent pixels h, w, y, x), then a copy on the other side for every
        # area it lacks, with that area and strength.
        def side(entries):
            return [[None if "area" not in e else [e["area"]["height"] // 8, e["area"]["width"] // 8,
                                                   e["area"]["y"] // 8, e["area"]["x"] // 8], e.get("strength", 1.0)]
                    for e in entries]
        c = s["conditioning"]
        pos, neg = side(c["positive"]), side(c.get("negative") or [{"encoding": {}}])
        pos_areas, neg_areas = [a for a in pos if a[0]], [a for a in neg if a[0]]
        want = {"positive": pos + [a for a in neg_areas if a[0] not in [p[0] for p in pos]],
                "negative": neg + [a for a in pos_areas if a[0] not in [n[0] for n in neg]]}
        assert tool["conds"] == want
        return
    assert tool["unet_batch"] == (["cond"] * b + ["uncond"] * b if cond_first else ["uncond"] * b + others + ["cond"] * b)


@pytest.fixture(scope="module")
def vae(tiny_torch_dir):
    from diffusers import AutoencoderKL

    from tooling import quiet_diffusers

    quiet_diffusers()
    return AutoencoderKL.from_pretrained(str(tiny_torch_dir / "vae"), torch_dtype=torch.float32).eval()


def decode(vae, name: str) -> np.ndarray:
    """latents.npy -> [B,h,w,3] float pixels in 0..255 before the uint8 conversion, as the tool decodes."""
    z = torch.from_numpy(load(name, "latents.npy"))
    with torch.no_grad():
        if settings(name)["compat"] == "a1111":  # one image at a time, 1. / scale_factor * z
            x = torch.cat([vae.decode(1. / SCALE * z[i:i + 1]).sample for i in range(z.shape[0])])
        else:  # process_latent_out (z / scale_factor), whole batch
            x = vae.decode(z / SCALE).sample
    x = torch.clamp((x.float() + 1.0) / 2.0, min=0.0, max=1.0)
    return 255. * x.movedim(1, -1).numpy()


def a1111_overlay_alpha(name: str) -> np.ndarray:
    """The opacity (0..255) of A1111's overlay (the init picture) over the decoded picture of an inpainting case, at
    the init picture's size: 255 - mask.png blurred by OpenCV along x then y (kernel 2 * int(2.5 * blur + 0.5) + 1,
    sigma blur), for the whole picture doubled first (the recorder's findings)."""
    import cv2

    s = settings(name)
    with Image.open(FIXTURES / name / "mask.png") as im:
        assert im.mode == "L"
        mask = np.asarray(im)
    blur = s["mask_blur"]
    if blur > 0:
        kernel = 2 * int(2.5 * blur + 0.5) + 1
        mask = cv2.GaussianBlur(cv2.GaussianBlur(mask, (kernel, 1), blur), (1, kernel), blur)
    if s["inpaint_area"] == "whole":
        mask = np.clip(mask.astype(np.float32) * 2, 0, 255).astype(np.uint8)
    return 255 - mask.astype(np.int16)


def shown_decode(name: str, pictures: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The decoded uint8 pictures as A1111's inpainting lays them under its overlay, and where they are: "only
    masked" resizes them into the paste box (uncrop: resize_image(1), a plain Lanczos resize when the box has the
    processing aspect) on a picture of the init picture's size."""
    s, tool = settings(name), CASES[name]["tool"]["inpainting"]
    alpha = a1111_overlay_alpha(name)
    if tool["paste_to"] is None:
        return pictures, np.ones(alpha.shape, bool)
    x, y, w, h = tool["paste_to"]
    assert w * s["height"] == h * s["width"]
    inside = np.zeros(alpha.shape, bool)
    inside[y:y + h, x:x + w] = True
    out = []
    for pic in pictures:
        full = np.zeros((*alpha.shape, 3), np.uint8)
        full[y:y + h, x:x + w] = np.asarray(Image.fromarray(pic).resize((w, h), Image.Resampling.LANCZOS))
        out.append(full)
    return out, inside


@pytest.mark.parametrize("name", NAMES)
def test_images_are_the_truncated_decode_of_the_latents(vae, name):
    pixels = decode(vae, name)
    for i in range(pixels.shape[0]):
        img = image(name, i).astype(np.int16)
        truncated = np.clip(pixels[i], 0, 255).astype(np.uint8)
        rounded = np.clip(np.rint(pixels[i]), 0, 255).astype(np.uint8)
        if a1111_inpainting(settings(name)):  # A1111's overlay: where it is transparent, the decode as it is
            (truncated, rounded), inside = shown_decode(name, [truncated, rounded])
            alpha = a1111_overlay_alpha(name)
            with Image.open(FIXTURES / name / "init.png") as im:
                init = np.asarray(im.convert("RGB")).astype(np.int16)
            # anywhere the overlay is not opaque: between the decode and the init picture (alpha compositing)
            blended = inside & (alpha < 255)
            lo = np.minimum(init, truncated.astype(np.int16))[blended]
            hi = np.maximum(init, truncated.astype(np.int16))[blended]
            assert np.all((lo - 1 <= img[blended]) & (img[blended] <= hi + 1)), (name, i)
            where = inside & (alpha == 0)
            if where.sum() < 200:  # "only masked": the blurred mask is nowhere fully opaque
                continue
            img, truncated, rounded = img[where], truncated[where], rounded[where]
        truncated, rounded = truncated.astype(np.int16), rounded.astype(np.int16)
        assert np.abs(img - truncated).max() <= 1, (name, i)
        same = np.mean(img == truncated)
        assert same >= 0.99, (name, i, same)
        assert same > np.mean(img == rounded), (name, i)  # truncation, not rounding


@pytest.mark.parametrize("name", [n for n in NAMES if a1111_inpainting(settings(n))])
def test_a1111_inpainting_keeps_the_init_picture_and_records_its_masks(name):
    s, tool = settings(name), CASES[name]["tool"]["inpainting"]
    with Image.open(FIXTURES / name / "init.png") as im:
        init = np.asarray(im.convert("RGB"))
    kept = a1111_overlay_alpha(name) == 255
    assert kept.sum() > 200, name
    for i in range(s["batch_size"]):  # the overlay: the init picture itself away from the blurred mask
        np.testing.assert_array_equal(image(name, i)[kept], init[kept])
    assert tool["inpainting_fill"] == ["fill", "original", "latent_noise", "latent_nothing"].index(s["masked_content"])
    assert tool["inpaint_full_res"] == (s["inpaint_area"] == "only_masked")
    assert tool["mask_blur_x"] == tool["mask_blur_y"] == s["mask_blur"]
    assert tool["overlay_size"] == [init.shape[1], init.shape[0]] == list(image_size(name))
    rows = tool["latent_mask"]  # nmask at the latent size, rounded: something repainted, something kept
    assert len(rows) == s["height"] // 8 and {len(r) for r in rows} == {s["width"] // 8}
    assert set("".join(rows)) == {"0", "1"}
    if s["inpaint_area"] == "only_masked":  # the paste box: inside the picture, not all of it
        x, y, w, h = tool["paste_to"]
        assert 0 <= x and 0 <= y and x + w <= init.shape[1] and y + h <= init.shape[0]
        assert (w, h) != (init.shape[1], init.shape[0])
    else:
        assert tool["paste_to"] is None and init.shape[:2] == (s["height"], s["width"])
    # where the latent mask keeps, the stored latents are the init latents (Img2Img.sample's final blend): the same
    # for every image of the batch
    keep = np.array([[c == "0" for c in r] for r in rows])
    latents = load(name, "latents.npy")
    for i in range(1, s["batch_size"]):
        np.testing.assert_array_equal(latents[i][:, keep], latents[0][:, keep])


def test_the_tools_differ_where_their_seeding_differs():
    # Same seed 42 and batch 2: A1111 seeds image i with 42 + i, ComfyUI draws the batch from one generator.
    a = load("a1111_euler_a_automatic_s42_b2", "noise.npy")
    c = load("comfyui_euler_ancestral_normal_s42_b2", "noise.npy")
    np.testing.assert_allclose(a[0], c[0], **TOL)  # the first image's noise is the same draw
    assert not np.allclose(a[1], c[1])
    assert not np.allclose(load("a1111_euler_a_automatic_s42_b2", "latents.npy"),
                           load("comfyui_euler_ancestral_normal_s42_b2", "latents.npy"))
