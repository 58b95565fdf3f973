"""Architecture and scheduler configurations.

Owns: the Stable Diffusion 1.5 sub-model configs (UNet, VAE, CLIP text encoder), the SD 1.5
``scheduler_config.json`` exactly as the original 2022 file has it, the "tiny" variant used by tests, the
``model_index.json`` files of the torch and ONNX layouts, and writing a diffusers config-only folder (what
``from_single_file`` needs to build an SD 1.5 pipeline without the hub).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

# The SD 1.5 scheduler config as in the original file: note there is no timestep_spacing and no
# prediction_type key. That matters: diffusers' from_config() then gives each other scheduler class its own
# default for them (Euler: "linspace"), which is what Easel's engine reproduces.
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}

SD15_TEXT_ENCODER = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}

# Tiny: the same block structure (4 UNet levels with 3 cross-attention levels, 2 layers per block, a 4-level
# VAE with the 8x downscale, a CLIP text tower with the real vocabulary and 77 positions) at small widths.
# The UNet uses 8 norm groups (not 32) so that 64x64 images, whose latents shrink to 1x1 at the lowest
# level, still have more than one value per group.
TINY_UNET = dict(SD15_UNET, block_out_channels=[32, 32, 32, 32], cross_attention_dim=32, sample_size=8, norm_num_groups=8)
TINY_VAE = dict(SD15_VAE, block_out_channels=[32, 32, 32, 32], sample_size=64)
TINY_TEXT_ENCODER = dict(
    SD15_TEXT_ENCODER, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32
)

ARCHS = {
    "sd15": {"unet": SD15_UNET, "vae": SD15_VAE, "text_encoder": SD15_TEXT_ENCODER},
    "tiny": {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT_ENCODER},
}

TORCH_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

ONNX_MODEL_INDEX = {
    "_class_name": "OnnxStableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["diffusers", "OnnxRuntimeModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "OnnxRuntimeModel"],
    "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
    "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
}


def arch(name: str) -> dict:
    return copy.deepcopy(ARCHS[name])


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


# Pipeline classes for a 9-input-channel (inpainting) UNet; the components are the same.
INPAINT_PIPELINE_CLASS = {"torch": "StableDiffusionInpaintPipeline", "onnx": "OnnxStableDiffusionInpaintPipeline"}


def model_index(kind: str, scheduler_class: str = "PNDMScheduler", inpaint: bool = False) -> dict:
    import diffusers

    base = TORCH_MODEL_INDEX if kind == "torch" else ONNX_MODEL_INDEX
    cls = INPAINT_PIPELINE_CLASS[kind] if inpaint else base["_class_name"]
    out = {"_class_name": cls, "_diffusers_version": diffusers.__version__}
    out.update({k: v for k, v in base.items() if k != "_class_name"})
    out["scheduler"] = ["diffusers", scheduler_class]
    return out


def write_config_folder(out_dir: Path, arch_name: str = "sd15", in_channels: int = 4) -> Path:
    """A diffusers folder with configs and tokenizer but no weights (for ``from_single_file(config=...)``)."""
    from .clip_vocab import write_tokenizer_dir

    cfg = arch(arch_name)
    cfg["unet"]["in_channels"] = in_channels
    write_json(out_dir / "model_index.json", model_index("torch"))
    write_json(out_dir / "unet" / "config.json", cfg["unet"])
    write_json(out_dir / "vae" / "config.json", cfg["vae"])
    write_json(out_dir / "text_encoder" / "config.json", cfg["text_encoder"])
    write_json(out_dir / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)
    write_tokenizer_dir(out_dir / "tokenizer")
    return out_dir
