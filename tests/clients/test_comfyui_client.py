"""A ComfyUI client written the way ComfyUI's own `websockets_api_example.py` is (the
`websocket-client` package plus urllib), against the real binary's ComfyUI API (`--comfyui-port`):
queue API-format graphs covering every node Easel runs, follow the websocket to the end, download
the images via `/view`. Pictures are compared with ComfyUI's own (tests/fixtures/compat_images) or
with the same settings through Easel's own API in the comfyui mode."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
import websocket  # websocket-client
from PIL import Image

from conftest import assert_same_picture, compat_case

CLIENT_ID = str(uuid.uuid4())


def http(base, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"{base}{path}", data=data, headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=300) as resp:
        out = resp.read()
        return json.loads(out) if resp.headers.get_content_type() == "application/json" else out


def queue_prompt(base, graph, extra_data=None):
    body = {"prompt": graph, "client_id": CLIENT_ID, **({"extra_data": extra_data} if extra_data else {})}
    return http(base, "/prompt", body)["prompt_id"]


def run_graph(base, ws, graph, extra_data=None):
    """Queues `graph`, reads the websocket until ComfyUI's end signal; returns events, previews and images."""
    prompt_id = queue_prompt(base, graph, extra_data)
    events, previews = [], 0
    while True:
        message = ws.recv()
        if isinstance(message, bytes):
            assert message[:8] == bytes([0, 0, 0, 1, 0, 0, 0, 2])  # a preview, PNG
            previews += 1
            continue
        event = json.loads(message)
        events.append(event)
        if event["type"] == "execution_error" and event["data"]["prompt_id"] == prompt_id:
            raise AssertionError(event)
        if event["type"] == "executing" and event["data"]["node"] is None and event["data"]["prompt_id"] == prompt_id:
            break
    history = http(base, f"/history/{prompt_id}")[prompt_id]
    images = {}
    for node, output in history["outputs"].items():
        images[node] = []
        for image in output["images"]:
            query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
            images[node].append(Image.open(io.BytesIO(http(base, f"/view?{query}"))))
    return events, previews, images, history


@pytest.fixture(scope="module")
def base(easel):
    return easel.comfyui_url


@pytest.fixture(scope="module")
def ws(base):
    sock = websocket.WebSocket()
    sock.connect(f"ws://{urllib.parse.urlparse(base).netloc}/ws?clientId={CLIENT_ID}", timeout=300)
    hello = json.loads(sock.recv())
    assert hello["type"] == "status" and hello["data"]["sid"] == CLIENT_ID
    yield sock
    sock.close()


def graph_for(s, seed, ckpt="tiny-sd"):
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": s["steps"], "cfg": s["cfg_scale"],
              "sampler_name": s["sampler"], "scheduler": s["schedule"], "denoise": 1.0, "model": ["4", 0],
              "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": s["width"], "height": s["height"], "batch_size": s["batch_size"]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": s["prompt"], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": s["negative_prompt"], "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def test_object_info_lists_the_nodes_and_the_models(base):
    info = http(base, "/object_info")
    # The node set of SD 1.5 workflows, every one of them.
    for node in ("CheckpointLoaderSimple", "VAELoader", "LoraLoader", "LoraLoaderModelOnly", "CLIPTextEncode",
                 "CLIPSetLastLayer", "ConditioningCombine", "ConditioningConcat", "ConditioningAverage",
                 "ConditioningSetArea", "EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch",
                 "RepeatLatentBatch", "KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint",
                 "SetLatentNoiseMask", "LoadImage", "LoadImageMask", "ImageScale", "ImageScaleBy", "ImageInvert",
                 "ImagePadForOutpaint", "SaveImage", "PreviewImage"):
        assert node in info, node
    area = info["ConditioningSetArea"]["input"]["required"]
    assert area["width"][1]["min"] == 64 and area["strength"][1]["max"] == 10.0
    assert "dpmpp_2m" in info["KSampler"]["input"]["required"]["sampler_name"][0]
    assert "karras" in info["KSampler"]["input"]["required"]["scheduler"][0]
    stats = http(base, "/system_stats")
    assert "system" in stats and "devices" in stats


def test_txt2img_graph_is_comfyuis_picture(base, ws):
    s, case = compat_case("comfyui_dpmpp_2m_karras_s7")
    ckpts = http(base, "/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    ckpt = next(c for c in ckpts if c.startswith("tiny-sd") and "inpaint" not in c)
    # As ComfyUI's frontend queues it: the UI's workflow rides along in extra_pnginfo.
    workflow = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    graph = graph_for(s, 7, ckpt)
    events, previews, images, history = run_graph(base, ws, graph, {"extra_pnginfo": {"workflow": workflow}})
    kinds = [e["type"] for e in events]
    assert kinds.index("execution_start") < kinds.index("progress") < kinds.index("executed") < kinds.index("execution_success")
    assert [e["data"]["value"] for e in events if e["type"] == "progress"][-1] == 6
    assert previews >= 1
    assert history["status"]["status_str"] == "success" and history["status"]["completed"] is True
    assert_same_picture(images["9"][0], case / "image_0.png")
    # The PNG carries the graph and the workflow as ComfyUI's SaveImage writes them, and A1111's infotext.
    chunks = images["9"][0].info
    assert json.loads(chunks["prompt"]) == graph
    assert json.loads(chunks["workflow"]) == workflow
    assert "Steps: 6" in chunks["parameters"]


def test_img2img_graph_through_upload_is_comfyuis_picture(base, ws):
    s, case = compat_case("comfyui_img2img_euler_ancestral_normal_d06_s9_b2")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"init.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + (case / "init.png").read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    uploaded = http(base, "/upload/image", headers={"content-type": f"multipart/form-data; boundary={boundary}"}, raw=body)
    assert uploaded["type"] == "input"
    graph = graph_for(dict(s, batch_size=1), 9)
    graph["3"]["inputs"]["denoise"] = 0.6
    graph["3"]["inputs"]["latent_image"] = ["12", 0]
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": uploaded["name"]}}
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["12"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["11", 0], "amount": 2}}
    del graph["5"]
    _, _, images, _ = run_graph(base, ws, graph)
    assert len(images["9"]) == 2
    for i, image in enumerate(images["9"]):
        assert_same_picture(image, case / f"image_{i}.png")


def test_loras_vae_clip_skip_and_preview_equal_easels_own_api(base, ws, easel):
    s, _ = compat_case("comfyui_dpmpp_2m_karras_s7")
    info = http(base, "/object_info")
    lora = info["LoraLoader"]["input"]["required"]["lora_name"][0][0]
    vae = info["VAELoader"]["input"]["required"]["vae_name"][0][0]
    graph = graph_for(dict(s, sampler="euler", schedule="simple"), 21)
    graph["20"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": lora,
                                                          "strength_model": 0.8, "strength_clip": 0.5}}
    graph["21"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["20", 0], "lora_name": lora, "strength_model": 0.3}}
    graph["22"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["20", 1], "stop_at_clip_layer": -2}}
    graph["23"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae}}
    graph["3"]["inputs"]["model"] = ["21", 0]
    graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["22", 0]
    graph["8"]["inputs"]["vae"] = ["23", 0]
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    _, _, images, history = run_graph(base, ws, graph)
    assert history["outputs"]["9"]["images"][0]["type"] == "temp"
    name = lora.removesuffix(".safetensors")
    own = http(easel.url, "/api/v1/generate", {
        "prompt": s["prompt"], "negative_prompt": s["negative_prompt"], "seed": 21, "steps": 6, "cfg_scale": 7.0,
        "width": 64, "height": 64, "sampler": "euler", "schedule": "simple", "compat": "comfyui", "prompt_syntax": "comfyui",
        "clip_skip": 2, "vae": vae.removesuffix(".safetensors"),
        "loras": [{"name": name, "weight": 0.8, "text_encoder_weight": 0.5}, {"name": name, "weight": 0.3, "text_encoder_weight": 0.0}]})
    for _ in range(600):
        job = http(easel.url, f"/api/v1/generate/{own['id']}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    with urllib.request.urlopen(f"{easel.url}{job['images'][0]['url']}") as resp:
        want = Image.open(io.BytesIO(resp.read()))
    assert np.array_equal(np.asarray(images["9"][0].convert("RGB")), np.asarray(want.convert("RGB")))
    # Without the LoRAs the picture differs: they were applied.
    plain = graph_for(dict(s, sampler="euler", schedule="simple"), 21)
    _, _, plain_images, _ = run_graph(base, ws, plain)
    assert not np.array_equal(np.asarray(plain_images["9"][0]), np.asarray(images["9"][0]))


def test_bad_graphs_get_comfyuis_400(base):
    s, _ = compat_case("comfyui_dpmpp_2m_karras_s7")
    bad = graph_for(s, 1)
    bad["3"]["inputs"]["sampler_name"] = "no_such_sampler"
    with pytest.raises(urllib.error.HTTPError) as err:
        queue_prompt(base, bad)
    assert err.value.code == 400
    answer = json.loads(err.value.read())
    assert answer["error"]["type"] == "prompt_outputs_failed_validation"
    assert answer["node_errors"]["3"]["errors"][0]["type"] == "value_not_in_list"
    assert answer["node_errors"]["3"]["class_type"] == "KSampler"
    unknown = graph_for(s, 1)
    unknown["5"]["class_type"] = "SomeCustomNode"
    with pytest.raises(urllib.error.HTTPError) as err:
        queue_prompt(base, unknown)
    assert err.value.code == 400
    assert json.loads(err.value.read())["error"]["type"] == "missing_node_type"
