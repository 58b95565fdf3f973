"""Seeded, randomly initialised models with the SD 1.5 architecture.

Owns: building the three torch sub-models (UNet, VAE, CLIP text encoder) for an architecture from
``configs`` ("tiny" or "sd15"), initialising every parameter from one seeded ``torch.Generator`` with
uniform draws (bit-exact across CPUs, unlike normal draws whose vectorised math may differ), saving the
torch diffusers folder, and hashing weights so a regenerated model can be checked against a committed one.

Initialisation (chosen so a random model gives varied, unclamped images rather than noise or flat grey):
weights of convolutions and linear layers uniform with standard deviation ``gain / sqrt(fan_in)``, norm
scales ``1 ± 0.1``, biases ``± 0.02``, token embeddings std 1, position embeddings std 0.5. The UNet's and
the VAE decoder's output convolutions get gains that put the outputs at a sensible magnitude (noise
prediction std about 1, image values mostly inside [-1, 1]).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .configs import SD15_SCHEDULER, arch, model_index, write_json

OUTPUT_GAINS = {
    # parameter name -> gain; tuned once on the tiny model (see README) and fixed so generation is exact.
    "unet.conv_out.weight": 1.8,
    "vae.decoder.conv_out.weight": 0.9,
}


def build_modules(arch_name: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = arch(arch_name)
    unet_cfg = {k: v for k, v in cfg["unet"].items() if not k.startswith("_")}
    vae_cfg = {k: v for k, v in cfg["vae"].items() if not k.startswith("_")}
    te_cfg = {k: v for k, v in cfg["text_encoder"].items() if k not in ("architectures", "model_type", "torch_dtype")}
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval()}


def _uniform_(t: torch.Tensor, std: float, g: torch.Generator, center: float = 0.0) -> None:
    half_width = std * math.sqrt(3.0)
    t.uniform_(center - half_width, center + half_width, generator=g)


@torch.no_grad()
def init_weights(components: dict, seed: int) -> None:
    g = torch.Generator("cpu").manual_seed(seed)
    for comp_name in ("text_encoder", "unet", "vae"):
        module = components[comp_name]
        for name, p in module.named_parameters():
            full = f"{comp_name}.{name}"
            if name.endswith("token_embedding.weight"):
                _uniform_(p, 1.0, g)
            elif name.endswith("position_embedding.weight"):
                _uniform_(p, 0.5, g)
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                _uniform_(p, OUTPUT_GAINS.get(full, 1.0) / math.sqrt(fan_in), g)
            elif _is_norm_scale(module, name):
                _uniform_(p, 0.1 / math.sqrt(3.0), g, center=1.0)
            else:
                _uniform_(p, 0.02 / math.sqrt(3.0), g)
        for _, buf in module.named_buffers():
            pass  # buffers (position ids) are fixed, not random


def _is_norm_scale(module: torch.nn.Module, param_name: str) -> bool:
    owner_name, _, leaf = param_name.rpartition(".")
    if leaf != "weight":
        return False
    owner = module.get_submodule(owner_name) if owner_name else module
    return isinstance(owner, (torch.nn.LayerNorm, torch.nn.GroupNorm))


INPAINT_ARCHS = {"tiny-inpaint": "tiny", "sd15-inpaint": "sd15"}
ARCH_NAMES = ("tiny", "sd15", *INPAINT_ARCHS)
INPAINT_IN_CHANNELS = 9
INPAINT_SEED_SALT = 0x1A9A1  # the extra conv_in channels' generator: seed + salt


def build_random(arch_name: str, seed: int) -> dict:
    if arch_name in INPAINT_ARCHS:
        return widen_to_inpaint(build_random(INPAINT_ARCHS[arch_name], seed), seed)
    torch.manual_seed(seed)  # only affects anything constructed before init_weights overwrites it
    components = build_modules(arch_name)
    init_weights(components, seed)
    return components


@torch.no_grad()
def widen_to_inpaint(components: dict, seed: int) -> dict:
    """Replace the UNet by a 9-input-channel copy: same weights, conv_in widened with seeded new channels."""
    from diffusers import UNet2DConditionModel

    old = components["unet"]
    if old.config.in_channels != 4:
        raise ValueError(f"expected a 4-channel UNet to widen, got {old.config.in_channels} channels")
    cfg = {k: v for k, v in dict(old.config).items() if not k.startswith("_")}
    cfg["in_channels"] = INPAINT_IN_CHANNELS
    unet = UNet2DConditionModel(**cfg).eval()
    state = old.state_dict()
    w = state["conv_in.weight"]  # [out, 4, k, k]
    extra = torch.empty((w.shape[0], INPAINT_IN_CHANNELS - w.shape[1], *w.shape[2:]), dtype=w.dtype)
    fan_in = INPAINT_IN_CHANNELS * w.shape[2] * w.shape[3]
    g = torch.Generator("cpu").manual_seed(seed + INPAINT_SEED_SALT)
    _uniform_(extra, 1.0 / math.sqrt(fan_in), g)
    state["conv_in.weight"] = torch.cat([w, extra], dim=1).contiguous()
    unet.load_state_dict(state, strict=True)
    return {**components, "unet": unet}


def is_inpaint(components: dict) -> bool:
    return int(components["unet"].config.in_channels) == INPAINT_IN_CHANNELS


def weights_sha256(module: torch.nn.Module) -> str:
    """Hash of a module's state dict: names, dtypes, shapes and raw bytes, in sorted name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def component_hashes(components: dict) -> dict:
    return {k: weights_sha256(components[k]) for k in ("unet", "vae", "text_encoder")}


def save_torch_folder(components: dict, out_dir: Path) -> None:
    """The torch diffusers form (``StableDiffusionPipeline`` folder, safetensors, no safety checker)."""
    from .clip_vocab import write_tokenizer_dir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    components["unet"].save_pretrained(out_dir / "unet", safe_serialization=True)
    components["vae"].save_pretrained(out_dir / "vae", safe_serialization=True)
    components["text_encoder"].save_pretrained(out_dir / "text_encoder", safe_serialization=True)
    write_tokenizer_dir(out_dir / "tokenizer")
    write_json(out_dir / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)
    write_json(out_dir / "model_index.json", model_index("torch", inpaint=is_inpaint(components)))


def load_torch_folder(src: Path, dtype=torch.float32) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from . import quiet_diffusers

    quiet_diffusers()
    src = Path(src)

    def load(cls, sub):
        try:
            return cls.from_pretrained(src, subfolder=sub, torch_dtype=dtype).eval()
        except (OSError, EnvironmentError):
            # Folders that only hold the half-precision variant (``*.fp16.safetensors``); upcast on load.
            if not any((src / sub).glob("*.fp16.*")):
                raise
            return cls.from_pretrained(src, subfolder=sub, torch_dtype=dtype, variant="fp16").eval()

    return {
        "unet": load(UNet2DConditionModel, "unet"),
        "vae": load(AutoencoderKL, "vae"),
        "text_encoder": load(CLIPTextModel, "text_encoder"),
    }


def read_scheduler_config(src: Path) -> dict:
    return json.loads((Path(src) / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
