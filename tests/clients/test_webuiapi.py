"""The `webuiapi` package (PyPI), unchanged, against the real binary's A1111 API (`/sdapi/v1`).

Pictures are compared with the ones A1111's own code made for the same settings
(tests/fixtures/compat_images, recorded by models/tooling/ref_compat_images.py) and with the same
settings sent through Easel's own API in the a1111 mode."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pytest
import webuiapi
from PIL import Image

from conftest import assert_same_picture, compat_case

# What A1111's txt2img answers carry in `info` (modules/processing.py, Processed.js()).
A1111_INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
    "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
    "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
    "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip", "is_using_inpainting_conditioning",
    "version",
}


@pytest.fixture(scope="module")
def api(easel):
    u = urlparse(easel.url)
    return webuiapi.WebUIApi(host=u.hostname, port=u.port, sampler="Euler a", steps=6)


def easel_json(easel, path, body=None):
    req = urllib.request.Request(f"{easel.url}{path}", data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def easel_image(easel, url):
    with urllib.request.urlopen(f"{easel.url}{url}", timeout=60) as resp:
        return Image.open(io.BytesIO(resp.read()))


def run_own(easel, body):
    """Runs `body` through Easel's own API; returns its first image."""
    job = easel_json(easel, "/api/v1/generate", body)
    for _ in range(600):
        job = easel_json(easel, f"/api/v1/generate/{job['id']}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    return easel_image(easel, job["images"][0]["url"])


def upload(easel, image):
    """Uploads a picture through Easel's own API; returns its id."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    req = urllib.request.Request(f"{easel.url}/api/v1/uploads", data=buf.getvalue(), method="POST",
                                 headers={"content-type": "image/png"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["id"]


def test_txt2img_batch_of_two_is_a1111s_picture_with_every_field(api):
    s, case = compat_case("a1111_euler_a_automatic_s42_b2")
    r = api.txt2img(prompt=s["prompt"], negative_prompt=s["negative_prompt"], seed=42, steps=6, cfg_scale=7,
                    width=64, height=64, batch_size=2, sampler_name="Euler a",
                    override_settings={"randn_source": "CPU"})
    assert set(r.json) == {"images", "parameters", "info"}
    assert len(r.images) == 2
    for i, image in enumerate(r.images):
        assert image.size == (64, 64)
        assert_same_picture(image, case / f"image_{i}.png")
    assert set(r.info) == A1111_INFO_KEYS, set(r.info) ^ A1111_INFO_KEYS
    assert r.info["all_seeds"] == [42, 43] and r.info["seed"] == 42
    assert r.info["sampler_name"] == "Euler a" and r.info["steps"] == 6 and r.info["batch_size"] == 2
    assert "Seed: 43," in r.info["infotexts"][1]
    assert r.parameters["prompt"] == s["prompt"] and r.parameters["batch_size"] == 2


def test_a_second_sampler_with_karras_and_nv_noise_is_a1111s_picture(api, easel):
    s, case = compat_case("a1111_dpmpp_2m_karras_s7_nv")
    args = dict(prompt=s["prompt"], negative_prompt=s["negative_prompt"], seed=7, steps=6, cfg_scale=7,
                width=64, height=64, sampler_name="DPM++ 2M", scheduler="Karras")
    first = api.txt2img(**args)
    assert_same_picture(first.image, case / "image_0.png")
    assert "Schedule type: Karras" in first.info["infotexts"][0]
    # The same request twice: the same pixels, exactly.
    again = api.txt2img(**args)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    # The same settings through Easel's own API in the a1111 mode: the same pixels, exactly.
    own = run_own(easel, {
        "prompt": s["prompt"], "negative_prompt": s["negative_prompt"], "seed": 7, "steps": 6, "cfg_scale": 7.0,
        "width": 64, "height": 64, "sampler": "DPM++ 2M", "schedule": "karras", "compat": "a1111",
        "prompt_syntax": "a1111", "randn_source": "nv"})
    assert np.array_equal(np.asarray(own.convert("RGB")), np.asarray(first.image.convert("RGB")))


def test_the_hires_fix_is_a1111s_picture_and_easels_own(api, easel):
    s, case = compat_case("a1111_hires_latent_euler_a_automatic_s47_b2")
    r = api.txt2img(prompt=s["prompt"], negative_prompt=s["negative_prompt"], seed=47, steps=6, cfg_scale=7,
                    width=64, height=64, batch_size=2, sampler_name="Euler a", enable_hr=True, hr_scale=1.5,
                    hr_upscaler="Latent", denoising_strength=0.55, override_settings={"randn_source": "CPU"})
    assert [image.size for image in r.images] == [(96, 96), (96, 96)]
    for i, image in enumerate(r.images):
        assert_same_picture(image, case / f"image_{i}.png")
    assert "Hires upscale: 1.5" in r.info["infotexts"][0] and "Denoising strength: 0.55" in r.info["infotexts"][0]
    own = run_own(easel, {
        "prompt": s["prompt"], "negative_prompt": s["negative_prompt"], "seed": 47, "steps": 6, "cfg_scale": 7.0,
        "width": 64, "height": 64, "sampler": "Euler a", "compat": "a1111", "prompt_syntax": "a1111",
        "randn_source": "cpu", "batch_size": 2, "hires": {"scale": 1.5, "strength": 0.55, "upscaler": "latent"}})
    assert np.array_equal(np.asarray(own.convert("RGB")), np.asarray(r.images[0].convert("RGB")))


def test_img2img_with_a_mask_and_png_info(api, easel):
    s, case = compat_case("a1111_img2img_euler_a_automatic_d06_s16_b2")
    init = Image.open(case / "init.png").convert("RGB")
    # Without a mask: A1111's own img2img picture.
    r = api.img2img(images=[init], prompt=s["prompt"], negative_prompt=s["negative_prompt"], seed=16, steps=6,
                    cfg_scale=7, width=64, height=64, batch_size=2, denoising_strength=0.6, sampler_name="Euler a",
                    override_settings={"randn_source": "CPU"})
    assert len(r.images) == 2
    for i, image in enumerate(r.images):
        assert_same_picture(image, case / f"image_{i}.png")
    assert r.info["denoising_strength"] == 0.6
    # With a mask (white = repaint the right half): the same picture as Easel's own API gives for
    # the same inpainting settings (A1111's own inpainting: compat a1111, its default GPU noise), and
    # not the unmasked one.
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    m = api.img2img(images=[init], mask_image=mask, mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
                    prompt=s["prompt"], seed=16, steps=6, width=64, height=64, denoising_strength=0.8)
    assert m.image.size == (64, 64) and m.info["denoising_strength"] == 0.8
    own = run_own(easel, {"prompt": s["prompt"], "seed": 16, "steps": 6, "width": 64, "height": 64, "sampler": "Euler a",
                          "init_image": upload(easel, init), "mask": upload(easel, mask), "mask_blur": 0, "strength": 0.8,
                          "prompt_syntax": "a1111", "compat": "a1111"})
    assert np.array_equal(np.asarray(m.image.convert("RGB")), np.asarray(own.convert("RGB")))
    # A1111's API defaults for a mask: "Only masked" (the mask's box cut out, run at 64x64 and pasted
    # back) with masked content fill; the picture keeps the init's size.
    box = Image.new("L", (80, 64), 0)
    box.paste(255, (44, 10, 60, 30))
    wide = init.resize((80, 64))
    f = api.img2img(images=[wide], mask_image=box, mask_blur=4, inpainting_fill=0, inpaint_full_res=True,
                    inpaint_full_res_padding=4, prompt=s["prompt"], seed=16, steps=6, width=64, height=64,
                    denoising_strength=0.8)
    assert f.image.size == (80, 64)
    assert "Inpaint area: Only masked, Masked area padding: 4, Masked content: fill" in f.info["infotexts"][0]
    own = run_own(easel, {"prompt": s["prompt"], "seed": 16, "steps": 6, "width": 64, "height": 64, "sampler": "Euler a",
                          "init_image": upload(easel, wide), "mask": upload(easel, box), "mask_blur": 4, "strength": 0.8,
                          "prompt_syntax": "a1111", "compat": "a1111", "inpaint_area": "only_masked",
                          "inpaint_padding": 4, "masked_content": "fill"})
    assert np.array_equal(np.asarray(f.image.convert("RGB")), np.asarray(own.convert("RGB")))
    # Outside the padded box the picture is the init's, pixel for pixel (the overlay).
    assert np.array_equal(np.asarray(f.image.convert("RGB"))[:, :20], np.asarray(wide)[:, :20])
    plain = api.img2img(images=[init], prompt=s["prompt"], seed=16, steps=6, width=64, height=64, denoising_strength=0.8)
    assert not np.array_equal(np.asarray(plain.image), np.asarray(m.image))
    # PNG Info reads the image's parameters back.
    info = api.png_info(m.image)
    assert "Steps: 6" in info.info and "Denoising strength: 0.8" in info.info, info.info
    assert info.json["parameters"]["Steps"] in (6, "6"), info.json["parameters"]
    # Easel's PNGs also carry a ComfyUI graph of the settings (A1111 lists it among the items).
    assert "prompt" not in info.json["items"]  # inpainting: no graph of ComfyUI's basic nodes says it
    graph = json.loads(api.png_info(r.images[0]).json["items"]["prompt"])
    assert graph["3"]["class_type"] == "KSampler" and graph["3"]["inputs"]["seed"] == 16
    assert graph["3"]["inputs"]["denoise"] == 0.6 and graph["12"]["class_type"] == "LoadImage"


def test_options_models_samplers_and_lists(api):
    options = api.get_options()
    assert options["sd_model_checkpoint"]
    assert options["CLIP_stop_at_last_layers"] == 1
    api.set_options({"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337})
    changed = api.get_options()
    assert changed["CLIP_stop_at_last_layers"] == 2 and changed["eta_noise_seed_delta"] == 31337
    api.set_options({"CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0})
    assert any(m.startswith("tiny-sd") for m in api.util_get_model_names())
    models = api.get_sd_models()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    samplers = api.util_get_sampler_names()
    assert {"Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DDIM"} <= set(samplers)
    assert {"Karras", "Automatic"} <= {s["label"] for s in api.get_schedulers()}
    assert [l["name"] for l in api.get_loras()] == ["style"]
    assert any(v["model_name"] == "tiny-vae.safetensors" for v in api.get_sd_vae())
    assert "Lanczos" in [u["name"] for u in api.get_upscalers()]
    assert "Latent" in [m["name"] for m in api.get_latent_upscale_modes()]
    assert "ram" in api.get_memory()
    assert "loaded" in api.get_embeddings()
    assert api.get_cmd_flags()["api"] is True
    api.refresh_checkpoints()


def test_progress_during_a_job_then_interrupt(api, easel):
    result = {}

    def long_call():
        t0 = time.monotonic()
        try:
            result["r"] = api.txt2img(prompt="a slow one", seed=1, steps=150, width=256, height=256)
        except Exception as e:  # the assertion below reports it
            result["error"] = e
        result["took"] = time.monotonic() - t0

    worker = threading.Thread(target=long_call)
    worker.start()
    seen = None
    for _ in range(600):
        p = api.get_progress()
        if p["state"]["sampling_step"] >= 2:
            seen = p
            break
        time.sleep(0.1)
    assert seen is not None, "no progress reported while the job ran"
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 150 and seen["state"]["job_count"] == 1
    assert seen["eta_relative"] >= 0
    interrupted_at = time.monotonic()
    api.interrupt()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the interrupted call did not return"
    assert "error" not in result, result.get("error")
    assert time.monotonic() - interrupted_at < 60
    jobs = easel_json(easel, "/api/v1/generate?limit=1")["jobs"]
    assert jobs[0]["status"] == "cancelled", jobs[0]["status"]
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
