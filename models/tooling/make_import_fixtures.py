"""Writes tests/fixtures/import: files as AUTOMATIC1111 and ComfyUI write them, for tests/import.rs.

- a1111.png: a picture with only a `parameters` tEXt chunk (A1111's infotext) holding the settings of
  the compat_images case a1111_dpmpp_2m_karras_s7_nv, so importing it must give A1111's picture.
- comfyui.png: a picture with `prompt` (API-format graph) and `workflow` (UI format) tEXt chunks, as
  ComfyUI's SaveImage writes them (json.dumps of each), for the case comfyui_dpmpp_2m_karras_s7.
- workflow_ui.json: the same graph in the UI format only (nodes, links, widgets_values), with a
  Note, a Reroute and a PrimitiveNode feeding the seed, as ComfyUI's frontend saves it.

    models/sdtool python models/tooling/make_import_fixtures.py   (or any Python with Pillow)
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "import"
CASES = REPO / "tests" / "fixtures" / "compat_images"


def settings(case: str) -> dict:
    return json.loads((CASES / case / "settings.json").read_text(encoding="utf-8"))


def a1111_png() -> None:
    s = settings("a1111_dpmpp_2m_karras_s7_nv")
    text = (f"{s['prompt']}\nNegative prompt: {s['negative_prompt']}\n"
            f"Steps: {s['steps']}, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: {s['cfg_scale']:g}, "
            f"Seed: {s['seed']}, Size: {s['width']}x{s['height']}, Model hash: 0123456789, Model: tiny-sd, "
            f"Denoising strength: 0.7, Version: v1.10.1")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.open(CASES / "a1111_dpmpp_2m_karras_s7_nv" / "image_0.png").save(OUT / "a1111.png", pnginfo=info)


def api_graph(s: dict) -> dict:
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": s["seed"], "steps": s["steps"], "cfg": s["cfg_scale"],
              "sampler_name": s["sampler"], "scheduler": s["schedule"], "denoise": 1.0, "model": ["4", 0],
              "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": s["width"], "height": s["height"], "batch_size": s["batch_size"]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": s["prompt"], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": s["negative_prompt"], "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def ui_workflow(s: dict) -> dict:
    def node(id_, type_, widgets, inputs=(), **extra):
        return {"id": id_, "type": type_, "pos": [0, 0], "size": [300, 100], "flags": {}, "order": id_, "mode": 0,
                "inputs": [{"name": n, "type": t, "link": l} for n, t, l in inputs], "properties": {},
                "widgets_values": widgets, **extra}
    nodes = [
        node(3, "KSampler", [s["seed"] + 1000, "randomize", s["steps"], s["cfg_scale"], s["sampler"], s["schedule"], 1.0],
             [("model", "MODEL", 11), ("positive", "CONDITIONING", 4), ("negative", "CONDITIONING", 6),
              ("latent_image", "LATENT", 2)]),
        node(4, "CheckpointLoaderSimple", ["tiny-sd"]),
        node(5, "EmptyLatentImage", [s["width"], s["height"], s["batch_size"]]),
        node(6, "CLIPTextEncode", [s["prompt"]], [("clip", "CLIP", 3)]),
        node(7, "CLIPTextEncode", [s["negative_prompt"]], [("clip", "CLIP", 5)]),
        node(8, "VAEDecode", [], [("samples", "LATENT", 7), ("vae", "VAE", 8)]),
        node(9, "SaveImage", ["ComfyUI"], [("images", "IMAGE", 9)]),
        node(10, "Note", ["the seed comes from the primitive"]),
        node(11, "Reroute", [], [("", "*", 10)]),
        node(12, "PrimitiveNode", [s["seed"], "fixed"], [], outputs=[{"name": "INT", "type": "INT", "links": [12]}]),
    ]
    # The seed widget converted to an input fed by the primitive (the stored widget value is stale).
    nodes[0]["inputs"].append({"name": "seed", "type": "INT", "link": 12, "widget": {"name": "seed"}})
    links = [[2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
             [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"],
             [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"], [10, 4, 0, 11, 0, "MODEL"], [11, 11, 0, 3, 0, "MODEL"],
             [12, 12, 0, 3, 4, "INT"]]
    return {"last_node_id": 12, "last_link_id": 12, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def comfyui_files() -> None:
    s = settings("comfyui_dpmpp_2m_karras_s7")
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(api_graph(s)))
    info.add_text("workflow", json.dumps(ui_workflow(s)))
    Image.open(CASES / "comfyui_dpmpp_2m_karras_s7" / "image_0.png").save(OUT / "comfyui.png", pnginfo=info)
    (OUT / "workflow_ui.json").write_text(json.dumps(ui_workflow(s), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    a1111_png()
    comfyui_files()
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}")
