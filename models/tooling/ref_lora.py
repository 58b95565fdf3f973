"""Reference fixtures for Easel's LoRA at run time (issue 14): LoRA files for the tiny model and diffusers' generations with them.

Owns: drawing seeded random LoRAs for the tiny SD 1.5 model (models/tiny-sd, torch form
models/tiny-sd-torch, seed 0) and writing them in the formats found in the wild (kohya-ss/A1111
``lora_unet_*``/``lora_te_*`` with ``lora_down``/``lora_up``/``alpha``, the same LoRA in diffusers/PEFT
form, a second one with LDM ("sgm") block names, and an SDXL key set that must be refused), then running
diffusers' ``StableDiffusionPipeline`` (float32, CPU, ``torch.Generator("cpu").manual_seed(seed)``,
scheduler from the model's original scheduler config as the txt2img fixtures do) with them loaded through
``load_lora_weights`` + ``set_adapters`` (PEFT backend, unfused), and saving what the engine must reproduce.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_lora ../tests/fixtures/lora`` (or
``sdtool reference lora OUT``). Files: the ``*.safetensors`` LoRAs; per case folder ``settings.json``
(the pipeline fixtures' keys plus ``loras``), ``latents.npy`` [1, 4, h/8, w/8] (final latents, before the
VAE's 1/scaling_factor), ``text_embeddings.npy`` ([uncond; cond] as fed to the UNet) and ``image_0.png``;
``cases.json`` lists the cases, the LoRA files with their A1111 hashes, and the checks made here.

LoRA arithmetic (what the engine must match): for a layer with weight W, ``W' = W + weight * (alpha /
rank) * up @ down`` (convolutions: ``down`` [r, in, kh, kw], ``up`` [out, r, 1, 1], the product taken
over r), with ``alpha = rank`` when the file has no ``.alpha``. diffusers applies it unfused, as
``layer(x) + scale * up(down(x))``; cases.json records how far a fused weight is from that.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import ToolError
from .reference import CaseSettings, _f32, default_torch_model, load_pipeline, make_scheduler

PROMPT = "a watercolor painting of a lighthouse"
NEGATIVE_PROMPT = "blurry, low quality"
SEED = 1401
STEPS = 8
SAMPLER = "euler"

STYLE_RANK, STYLE_ALPHA, STYLE_SEED = 4, 2.0, 14
DETAIL_RANK, DETAIL_ALPHA, DETAIL_SEED = 2, 1.0, 15
VALUE_STD = 0.1  # up and down are both normal * 0.1: a visible but sane change of the tiny model

STYLE_KOHYA = "style-kohya.safetensors"
STYLE_PEFT = "style-peft.safetensors"
DETAIL_KOHYA = "detail-kohya.safetensors"
DETAIL_LDM = "detail-ldm-names.safetensors"
SDXL_KEYS = "sdxl-lora-keys.safetensors"

# Layers of the tiny UNet the style LoRA touches: every kind a kohya/LoCon LoRA has, at every resolution
# level and in down, mid and up blocks, but not in every block (the fixtures must stay small): in 8 of the 16
# transformers, attention q/k/v/out of attn1 and attn2, the feed-forward's two linears and proj_in/proj_out
# (1x1 convolutions in SD 1.5); and the 3x3 convolutions (LoCon) of the resnets of down_blocks.0, mid_block
# and up_blocks.3 (whose conv1 takes the skip concatenation: 64 input channels).
STYLE_TRANSFORMERS = r"(down_blocks\.0\.attentions\.[01]|down_blocks\.2\.attentions\.0|mid_block\.attentions\.0|up_blocks\.1\.attentions\.0|up_blocks\.3\.attentions\.[012])"
STYLE_UNET_PATTERN = re.compile(
    "^" + STYLE_TRANSFORMERS + r"\.(transformer_blocks\.0\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)|proj_in|proj_out)$"
    r"|^(down_blocks\.0|mid_block|up_blocks\.3)\.resnets\.\d+\.conv[12]$"
)
STYLE_TE_PATTERN = re.compile(r"^text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$")

# The detail LoRA's layers: LDM ("sgm") block name -> the diffusers module it is (SD 1.5 block arithmetic:
# input_blocks.N -> down_blocks[(N-1)//3] layer (N-1)%3, output_blocks.N -> up_blocks[N//3] layer N%3,
# middle_block.1 -> mid_block.attentions.0; resnet in_layers.2 -> conv1, out_layers.3 -> conv2).
# detail-kohya.safetensors names them the diffusers way (lora_unet_down_blocks_0_...), because diffusers'
# SD 1.x loader does not map LDM names: StableDiffusionPipeline.load_lora_weights passes no unet_config to
# lora_state_dict, so _maybe_map_sgm_blocks_to_diffusers is skipped and peft fails with
# NoMatchingPeftModuleError ("down_blocks.1.1.proj_in ... not found"); only the SDXL pipeline maps them.
# detail-ldm-names.safetensors holds the same tensors under the LDM names (as A1111, whose SD 1.x model is in
# the LDM layout, reads them natively); ``main`` loads it with unet_config=unet.config (diffusers' own
# SDXL-path mapping) and checks it lands on exactly these modules and gives identical latents.
DETAIL_LDM_TO_DIFFUSERS = {
    "input_blocks_1_1_transformer_blocks_0_attn1_to_q": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "input_blocks_1_1_transformer_blocks_0_attn1_to_v": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
    "input_blocks_1_1_transformer_blocks_0_attn2_to_k": "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    "input_blocks_1_1_transformer_blocks_0_attn2_to_out_0": "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0",
    "input_blocks_1_1_proj_in": "down_blocks.0.attentions.0.proj_in",
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "input_blocks_5_1_transformer_blocks_0_ff_net_0_proj": "down_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj",
    "middle_block_1_transformer_blocks_0_attn1_to_out_0": "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "middle_block_1_proj_out": "mid_block.attentions.0.proj_out",
    "output_blocks_3_0_out_layers_3": "up_blocks.1.resnets.0.conv2",
    "output_blocks_4_1_transformer_blocks_0_attn2_to_q": "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_q",
    "output_blocks_11_1_transformer_blocks_0_ff_net_2": "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2",
}


@dataclass
class LoraUse:
    file: str
    unet_weight: float
    text_encoder_weight: float


@dataclass
class LoraCase:
    name: str
    what: str
    loras: list[LoraUse] = field(default_factory=list)


CASES = [
    LoraCase("none", "no LoRA: the base the others are compared with"),
    LoraCase("style_0.8", "style (kohya file), weight 0.8 on UNet and text encoder", [LoraUse(STYLE_KOHYA, 0.8, 0.8)]),
    LoraCase("style_-0.5", "style, negative weight -0.5", [LoraUse(STYLE_KOHYA, -0.5, -0.5)]),
    LoraCase("style_0", "style, weight 0: identical to none", [LoraUse(STYLE_KOHYA, 0.0, 0.0)]),
    LoraCase("style_peft_0.8", "the same LoRA from the diffusers/PEFT file, weight 0.8: same as style_0.8",
             [LoraUse(STYLE_PEFT, 0.8, 0.8)]),
    LoraCase("style_unet0.8_te0", "style on the UNet only (0.8), text encoder weight 0: embeddings equal none's",
             [LoraUse(STYLE_KOHYA, 0.8, 0.0)]),
    LoraCase("style_0.8+detail_0.6", "two LoRAs at once: style 0.8 and detail (UNet only, LDM block names) 0.6",
             [LoraUse(STYLE_KOHYA, 0.8, 0.8), LoraUse(DETAIL_KOHYA, 0.6, 0.6)]),
]


# --- the LoRA files -----------------------------------------------------------------------------------


def _targets(module, pattern) -> list[tuple[str, tuple[int, ...]]]:
    """(module path, weight shape) of the Linear/Conv2d layers whose path matches, sorted by path."""
    import torch

    out = []
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and pattern.search(name):
            out.append((name, tuple(m.weight.shape)))
    return sorted(out)


def _down_up_shapes(weight_shape: tuple[int, ...], rank: int) -> tuple[list[int], list[int]]:
    if len(weight_shape) == 4:  # conv [out, in, kh, kw]: down is a kh x kw conv to rank, up a 1x1 conv
        out_c, in_c, kh, kw = weight_shape
        return [rank, in_c, kh, kw], [out_c, rank, 1, 1]
    out_f, in_f = weight_shape
    return [rank, in_f], [out_f, rank]


def _draw_pairs(rng, layers, rank) -> list[tuple[np.ndarray, np.ndarray]]:
    """down, up per layer (in order), normal * VALUE_STD, stored as float16."""
    pairs = []
    for _, shape in layers:
        down_shape, up_shape = _down_up_shapes(shape, rank)
        down = (rng.standard_normal(down_shape, dtype=np.float32) * VALUE_STD).astype(np.float16)
        up = (rng.standard_normal(up_shape, dtype=np.float32) * VALUE_STD).astype(np.float16)
        pairs.append((down, up))
    return pairs


def style_lora(components) -> tuple[dict, dict, list, list]:
    """The style LoRA as (kohya tensors, PEFT tensors, unet layers, text encoder layers)."""
    import torch

    unet_layers = _targets(components["unet"], STYLE_UNET_PATTERN)
    te_layers = _targets(components["text_encoder"], STYLE_TE_PATTERN)
    rng = np.random.default_rng(STYLE_SEED)
    kohya, peft = {}, {}
    fold = STYLE_ALPHA / STYLE_RANK  # a power of two here, so folding it into lora_B is exact
    for prefix_kohya, prefix_peft, layers in (("lora_unet_", "unet.", unet_layers), ("lora_te_", "text_encoder.", te_layers)):
        for (path, _), (down, up) in zip(layers, _draw_pairs(rng, layers, STYLE_RANK)):
            base = prefix_kohya + path.replace(".", "_")
            kohya[f"{base}.lora_down.weight"] = torch.from_numpy(down)
            kohya[f"{base}.lora_up.weight"] = torch.from_numpy(up)
            kohya[f"{base}.alpha"] = torch.tensor(STYLE_ALPHA, dtype=torch.float32)
            peft[f"{prefix_peft}{path}.lora_A.weight"] = torch.from_numpy(down.astype(np.float32))
            peft[f"{prefix_peft}{path}.lora_B.weight"] = torch.from_numpy(up.astype(np.float32) * np.float32(fold))
    return kohya, peft, unet_layers, te_layers


def detail_lora(components) -> tuple[dict, dict, list]:
    """The detail LoRA as (kohya tensors with diffusers module names, the same with LDM block names, layers)."""
    import torch

    shapes = dict(_targets(components["unet"], re.compile(".")))
    layers = [(ldm, shapes[path]) for ldm, path in DETAIL_LDM_TO_DIFFUSERS.items()]
    rng = np.random.default_rng(DETAIL_SEED)
    by_module, by_ldm = {}, {}
    for (ldm, _), (down, up) in zip(layers, _draw_pairs(rng, layers, DETAIL_RANK)):
        for out, base in ((by_module, "lora_unet_" + DETAIL_LDM_TO_DIFFUSERS[ldm].replace(".", "_")),
                          (by_ldm, f"lora_unet_{ldm}")):
            out[f"{base}.lora_down.weight"] = torch.from_numpy(down)
            out[f"{base}.lora_up.weight"] = torch.from_numpy(up)
            out[f"{base}.alpha"] = torch.tensor(DETAIL_ALPHA, dtype=torch.float32)
    return by_module, by_ldm, layers


def sdxl_lora_keys() -> dict:
    """A rank-1 LoRA whose names and shapes are an SDXL LoRA's (640/1280-wide UNet levels, context 2048,
    two text encoders te1 768 / te2 1280): a file Easel must refuse for an SD 1.x model."""
    import torch

    layers = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (640, 640),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": (640, 2048),
        "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_v": (1280, 2048),
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (768, 768),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj": (1280, 1280),
    }
    rng = np.random.default_rng(16)
    out = {}
    for base, (out_f, in_f) in layers.items():
        out[f"{base}.lora_down.weight"] = torch.from_numpy((rng.standard_normal([1, in_f]) * VALUE_STD).astype(np.float16))
        out[f"{base}.lora_up.weight"] = torch.from_numpy((rng.standard_normal([out_f, 1]) * VALUE_STD).astype(np.float16))
        out[f"{base}.alpha"] = torch.tensor(1.0, dtype=torch.float16)
    return out


def addnet_hash(path: Path) -> str:
    """sha256 of the tensor bytes only (after the 8-byte header length and the JSON header): the hash
    sd-scripts calls addnet_hash_safetensors and A1111 shows (first 12 hex digits) as "Lora hashes"."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n:]).hexdigest()


def _save(tensors: dict, path: Path, metadata: dict | None) -> dict:
    from safetensors.torch import save_file

    # safetensors writes metadata entries in hash-map order: with two or more the header (and so the file's
    # sha256) would change from run to run. One entry at most keeps the files reproducible byte for byte.
    assert metadata is None or len(metadata) <= 1, "at most one metadata entry (reproducible headers)"
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o644)  # safetensors creates the file private
    full = hashlib.sha256(path.read_bytes()).hexdigest()
    addnet = addnet_hash(path)
    return {"file": path.name, "bytes": path.stat().st_size, "keys": len(tensors), "sha256": full,
            "addnet_hash": addnet, "a1111_lora_hash": addnet[:12], "metadata": metadata or {}}


# --- the generations ----------------------------------------------------------------------------------


def case_settings() -> CaseSettings:
    return CaseSettings(prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, seed=SEED, steps=STEPS, cfg_scale=7.5,
                        width=64, height=64, batch_size=1, sampler=SAMPLER, schedule="default")


def _adapter_name(file: str) -> str:
    return file.removesuffix(".safetensors").replace("-", "_").replace(".", "_")


def _load(pipe, lora_dir: Path, file: str, name: str) -> None:
    # LDM block names need the UNet config to be mapped (diffusers does that by itself only for SDXL).
    extra = {"unet_config": pipe.unet.config} if file == DETAIL_LDM else {}
    pipe.load_lora_weights(str(lora_dir), weight_name=file, adapter_name=name, **extra)


def apply_loras(pipe, lora_dir: Path, loras: list[LoraUse]) -> None:
    """Unload whatever is loaded, then load ``loras`` and set their per-component weights."""
    pipe.unload_lora_weights()
    if not loras:
        return
    names, weights = [], []
    for use in loras:
        name = _adapter_name(use.file)
        _load(pipe, lora_dir, use.file, name)
        names.append(name)
        weights.append({"unet": use.unet_weight, "text_encoder": use.text_encoder_weight})
    present = pipe.get_list_adapters()  # {"unet": [...], "text_encoder": [...]}
    for w, name in zip(weights, names):
        if name not in present.get("text_encoder", []):
            del w["text_encoder"]  # a UNet-only LoRA: its text encoder weight has nothing to scale
    pipe.set_adapters(names, adapter_weights=weights)


def generate(pipe, s: CaseSettings) -> dict:
    """One generation: final latents, the embeddings fed to the UNet, the image."""
    import torch

    torch.set_num_threads(1)  # single-threaded: bit-identical reruns on the same machine
    pipe.scheduler = make_scheduler(pipe, s.sampler, s.schedule)
    got = {"embeds": None, "latents": None}

    def unet_hook(_module, args, kwargs):
        if got["embeds"] is None:
            got["embeds"] = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None).detach().clone()

    def on_step_end(_pipe, i, t, cb_kwargs):
        got["latents"] = cb_kwargs["latents"].detach().clone()
        return cb_kwargs

    handle = pipe.unet.register_forward_pre_hook(unet_hook, with_kwargs=True)
    try:
        result = pipe(
            prompt=s.prompt, negative_prompt=s.negative_prompt, height=s.height, width=s.width,
            num_inference_steps=s.steps, guidance_scale=s.cfg_scale, num_images_per_prompt=s.batch_size, eta=0.0,
            generator=torch.Generator("cpu").manual_seed(s.seed), output_type="pil",
            callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"],
        )
    finally:
        handle.remove()
    return {"latents": _f32(got["latents"]), "embeds": _f32(got["embeds"]), "images": result.images}


def run_case(pipe, case: LoraCase, lora_dir: Path, out_dir: Path, log=print) -> dict:
    import diffusers
    import torch

    apply_loras(pipe, lora_dir, case.loras)
    s = case_settings()
    res = generate(pipe, s)
    pipe.unload_lora_weights()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    np.save(out_dir / "latents.npy", res["latents"])
    np.save(out_dir / "text_embeddings.npy", res["embeds"])
    for i, img in enumerate(res["images"]):
        img.save(out_dir / f"image_{i}.png")
    settings = asdict(s)
    settings["loras"] = [asdict(u) for u in case.loras]
    settings["meta"] = {
        "generator": "torch.Generator('cpu').manual_seed(seed); whole batch in one randn call",
        "pipeline": "diffusers StableDiffusionPipeline, float32, CPU; LoRAs via load_lora_weights(adapter_name=...) "
                    "and set_adapters(names, adapter_weights=[{'unet': w, 'text_encoder': w}, ...]) (PEFT, unfused)",
        "scheduler_class": type(pipe.scheduler).__name__,
        "latent_shape": list(res["latents"].shape),
        "latents": "final latents (after the last scheduler step, before dividing by the VAE's scaling_factor)",
        "images": [f"image_{i}.png" for i in range(len(res["images"]))],
        "arrays": ["latents.npy", "text_embeddings.npy"],
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"  {case.name}: {', '.join(f'{u.file} unet {u.unet_weight} te {u.text_encoder_weight}' for u in case.loras) or 'no LoRA'}")
    return res


def _lora_modules(model, adapter: str) -> set[str]:
    """Paths of the layers of ``model`` that carry adapter ``adapter`` (PEFT LoRA layers)."""
    out = set()
    for name, m in model.named_modules():
        lora_a = getattr(m, "lora_A", None)
        if lora_a is not None and hasattr(lora_a, "keys") and adapter in lora_a.keys():
            out.add(name.replace("base_model.model.", ""))
    return out


def _check_loading(pipe, lora_dir: Path, unet_layers, te_layers, log=print) -> dict:
    """Which layers diffusers puts each file on: exactly the ones written, and the values kept exactly."""
    import torch

    checks = {}
    pipe.unload_lora_weights()
    for file in (STYLE_KOHYA, STYLE_PEFT):
        name = _adapter_name(file)
        pipe.load_lora_weights(str(lora_dir), weight_name=file, adapter_name=name)
        unet_got, te_got = _lora_modules(pipe.unet, name), _lora_modules(pipe.text_encoder, name)
        if unet_got != {p for p, _ in unet_layers} or te_got != {p for p, _ in te_layers}:
            raise ToolError(f"{file}: diffusers put the LoRA on other layers than written "
                            f"(unet missing {sorted({p for p, _ in unet_layers} - unet_got)[:3]}, "
                            f"extra {sorted(unet_got - {p for p, _ in unet_layers})[:3]})")
        checks[file] = {"unet_layers": len(unet_got), "text_encoder_layers": len(te_got), "all_mapped": True}
    # The LoRA parameters live in float32 (the model's dtype) and equal the stored float16 values.
    m = pipe.unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn1.to_q")
    stored = torch.from_numpy(np.asarray(_read(lora_dir / STYLE_KOHYA)[
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"]).astype(np.float32))
    if m.lora_A[_adapter_name(STYLE_KOHYA)].weight.dtype != torch.float32 or not torch.equal(
            m.lora_A[_adapter_name(STYLE_KOHYA)].weight.detach(), stored):
        raise ToolError("internal: diffusers' LoRA down weights are not the stored values in float32")
    want = set(DETAIL_LDM_TO_DIFFUSERS.values())
    for file in (DETAIL_KOHYA, DETAIL_LDM):
        pipe.unload_lora_weights()
        name = _adapter_name(file)
        _load(pipe, lora_dir, file, name)
        got = _lora_modules(pipe.unet, name)
        if got != want or _lora_modules(pipe.text_encoder, name):
            raise ToolError(f"{file}: diffusers put the LoRA on other layers: missing {sorted(want - got)}, "
                            f"extra {sorted(got - want)}")
        checks[file] = {"unet_layers": len(got), "text_encoder_layers": 0, "all_mapped": True}
    pipe.unload_lora_weights()
    # Without unet_config (what StableDiffusionPipeline.load_lora_weights does) the LDM names are not mapped.
    import diffusers.utils.logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity(dlog.CRITICAL)  # diffusers logs the expected failure as an error
    try:
        pipe.load_lora_weights(str(lora_dir), weight_name=DETAIL_LDM, adapter_name="ldm_plain")
        plain = f"loaded onto {len(_lora_modules(pipe.unet, 'ldm_plain'))} layers"
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        plain = f"refused: {type(e).__name__}"
    finally:
        dlog.set_verbosity(level)
    pipe.unload_lora_weights()
    checks[DETAIL_LDM]["plain_sd15_load_lora_weights"] = plain
    log(f"  loading checks: {checks}")
    return checks


def _read(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _fused_difference(pipe, lora_dir: Path, log=print) -> float:
    """style_0.8 with the LoRA fused into the weights (fuse_lora) against the unfused run: float rounding only."""
    use = CASES[1].loras
    apply_loras(pipe, lora_dir, use)
    unfused = generate(pipe, case_settings())["latents"]
    pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)  # the adapter weights are already set
    fused = generate(pipe, case_settings())["latents"]
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    diff = float(np.abs(fused - unfused).max())
    log(f"  fused vs unfused style_0.8: max |d latents| = {diff:.3g}")
    return diff


def main(out: Path) -> int:
    import diffusers
    import torch

    from .random_model import load_torch_folder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = default_torch_model()
    components = load_torch_folder(model)

    kohya, peft, unet_layers, te_layers = style_lora(components)
    detail, detail_ldm, detail_layers = detail_lora(components)
    files = [
        dict(_save(kohya, out / STYLE_KOHYA, {"ss_output_name": "style"}),
             what=f"kohya-ss/A1111 LoRA, rank {STYLE_RANK}, alpha {STYLE_ALPHA} (scale alpha/rank = {STYLE_ALPHA / STYLE_RANK}); "
                  "up/down float16, alpha float32 0-dim; UNet attention/ff/proj_in/proj_out of 8 transformers (all levels), "
                  "LoCon 3x3 resnet convs (down_blocks.0, mid_block, up_blocks.3), text encoder q/k/v/out_proj, fc1/fc2",
             rank=STYLE_RANK, alpha=STYLE_ALPHA, unet_layers=len(unet_layers), text_encoder_layers=len(te_layers),
             expect="load"),
        dict(_save(peft, out / STYLE_PEFT, None),
             what="the same LoRA in diffusers/PEFT form: unet.<module>.lora_A.weight = down, lora_B.weight = up * alpha/rank "
                  "(so no alpha keys; rank from the shapes, scale 1), float32",
             rank=STYLE_RANK, alpha=None, expect="load"),
        dict(_save(detail, out / DETAIL_KOHYA, {"ss_output_name": "detail"}),
             what=f"kohya LoRA, UNet only, rank {DETAIL_RANK}, alpha {DETAIL_ALPHA}, float16, diffusers module names "
                  "(lora_unet_down_blocks_0_...): diffusers' SD 1.x loader does not map LDM block names",
             rank=DETAIL_RANK, alpha=DETAIL_ALPHA, unet_layers=len(detail_layers), text_encoder_layers=0, expect="load"),
        dict(_save(detail_ldm, out / DETAIL_LDM, {"ss_output_name": "detail"}),
             what="the same tensors as detail-kohya.safetensors under kohya's LDM block names (lora_unet_input_blocks_1_1_..., "
                  "middle_block_1_..., output_blocks_N_M_...; resnet in_layers_2 = conv1, out_layers_3 = conv2), as A1111 "
                  "reads them; must give exactly the detail-kohya results (checked with diffusers' sgm mapping)",
             rank=DETAIL_RANK, alpha=DETAIL_ALPHA, unet_layers=len(detail_layers), text_encoder_layers=0, expect="load",
             ldm_to_diffusers=DETAIL_LDM_TO_DIFFUSERS),
        dict(_save(sdxl_lora_keys(), out / SDXL_KEYS, {"ss_output_name": "sdxl"}),
             what="an SDXL LoRA's names and shapes (UNet 640/1280 wide, context 2048, lora_te1_/lora_te2_), rank 1: refuse "
                  "for the SD 1.x tiny model (by its keys and shapes: the metadata has only ss_output_name)", rank=1, alpha=1.0, expect="refuse"),
    ]

    pipe = load_pipeline(model)
    log = print
    log(f"writing LoRA fixtures to {out} (model {model})")
    checks = {"loading": _check_loading(pipe, out, unet_layers, te_layers, log=log)}
    results = {}
    for case in CASES:
        results[case.name] = run_case(pipe, case, out, out / case.name, log=log)

    def max_diff(a, b, what="latents"):
        return float(np.abs(results[a][what] - results[b][what]).max())

    # Weight 0 is no LoRA at all; the PEFT file is the kohya file; a text encoder weight of 0 leaves the
    # embeddings alone; the LoRA does change things.
    if not (np.array_equal(results["style_0"]["latents"], results["none"]["latents"])
            and np.array_equal(results["style_0"]["embeds"], results["none"]["embeds"])):
        raise ToolError("style at weight 0 differs from no LoRA")
    kohya_vs_peft = max_diff("style_0.8", "style_peft_0.8")
    if kohya_vs_peft > 1e-5:
        raise ToolError(f"the kohya and PEFT files give different latents (max |d| {kohya_vs_peft:.3g})")
    if not np.array_equal(results["style_unet0.8_te0"]["embeds"], results["none"]["embeds"]):
        raise ToolError("text encoder weight 0 changed the embeddings")
    effects = {name: max_diff(name, "none") for name in results if name != "none"}
    for name in ("style_0.8", "style_-0.5", "style_unet0.8_te0", "style_0.8+detail_0.6"):
        if effects[name] < 1e-2:
            raise ToolError(f"{name}: the LoRA barely changes the latents (max |d| {effects[name]:.3g})")
    ldm_case = LoraCase("ldm", "", [LoraUse(STYLE_KOHYA, 0.8, 0.8), LoraUse(DETAIL_LDM, 0.6, 0.6)])
    apply_loras(pipe, out, ldm_case.loras)
    ldm_latents = generate(pipe, case_settings())["latents"]
    pipe.unload_lora_weights()
    if not np.array_equal(ldm_latents, results["style_0.8+detail_0.6"]["latents"]):
        raise ToolError("the LDM-named detail LoRA gives other latents than the diffusers-named one")
    checks.update({
        "detail_ldm_names_equal_detail_kohya": "bit-identical latents for style 0.8 + detail 0.6",
        "style_0_equals_none": "bit-identical latents, embeddings and image",
        "kohya_vs_peft_max_abs_latents": kohya_vs_peft,
        "kohya_vs_peft_max_abs_text_embeddings": max_diff("style_0.8", "style_peft_0.8", "embeds"),
        "te_weight_0_embeddings_equal_none": True,
        "max_abs_latent_change_vs_none": effects,
        "text_embedding_change_vs_none": {n: max_diff(n, "none", "embeds") for n in ("style_0.8", "style_-0.5")},
        "fused_vs_unfused_style_0.8_max_abs_latents": _fused_difference(pipe, out, log=log),
    })

    index = {
        "model": "models/tiny-sd (ONNX) = models/tiny-sd-torch (torch), random tiny SD 1.5 architecture, seed 0",
        "generator": "diffusers StableDiffusionPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "lora_api": "pipe.load_lora_weights(dir, weight_name=file, adapter_name=name) per file, then "
                    "pipe.set_adapters([names], adapter_weights=[{'unet': w_unet, 'text_encoder': w_te}, ...]) "
                    "(text_encoder omitted for a UNet-only LoRA); PEFT backend, not fused",
        "lora_math": "W' = W + weight * alpha/rank * up @ down (conv: down [r,in,kh,kw], up [out,r,1,1]); alpha = rank "
                     "when absent; the engine may fuse (see checks.fused_vs_unfused_...)",
        "regenerate": "models/sdtool reference lora tests/fixtures/lora",
        "a1111_hash": "Lora hashes: name: a1111_lora_hash = first 12 hex of addnet_hash = sha256 of the file after "
                      "the 8-byte header length and the JSON header",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "files": files,
        "checks": checks,
        "cases": [{"name": c.name, "what": c.what, **{k: v for k, v in asdict(case_settings()).items()},
                   "loras": [asdict(u) for u in c.loras]} for c in CASES],
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out}: {total / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../tests/fixtures/lora")))
