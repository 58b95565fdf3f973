"""Single-file checkpoint fixtures for Easel's checkpoint loader (templates + ``models/templates``).

Owns: writing the tiny model as an original-layout (LDM, A1111) ``.safetensors`` checkpoint, and small
files with the key sets of things that are not SD 1.x checkpoints (SDXL, SD 2.x, a kohya LoRA) or only
part of one (a standalone VAE), labelled by ``ldm_layout.classify_checkpoint``.

Run from ``models/``: ``.venv/bin/python -m tooling.ref_checkpoints ../tests/fixtures/checkpoints [--fp32]``
(or ``sdtool reference checkpoints OUT``). Files:

* ``tiny-ldm-fp16.safetensors``: the tiny model (models/tiny-sd-torch, seed 0) in the LDM layout as float16,
  with ``betas``/``alphas_cumprod`` (float32, as real files have them), the CLIP ``position_ids`` (int64
  [1, 77], likewise) and four ``model_ema.*`` entries
  (``decay``, ``num_updates`` and EMA copies of ``input_blocks.0.0`` with NEGATED values: a loader that
  reads them instead of ``model.diffusion_model.*`` gives wrong images).
* ``tiny-ldm.safetensors`` (only with ``--fp32``; about 13 MB): the same in float32. Loading it into the
  tiny templates must give bit-identical outputs to ``models/tiny-sd``.
* ``vae-standalone-bf16.safetensors``: the tiny model's VAE as a standalone VAE file (LDM keys without
  ``first_stage_model.``, as ``vae-ft-mse-840000-ema-pruned.safetensors`` has them), bfloat16: real values.
* ``sdxl-keys``, ``sd2-keys``, ``sd15-inpaint-keys``, ``lora-kohya``: key sets only. Tensors are ``[1]`` float16
  except the ones whose shapes identify the model (listed per case as ``real_shapes``), and the LoRA, whose
  tensors are small anyway and have their real rank-4 shapes.

``cases.json`` lists every file with ``classify_checkpoint``'s answer for its ``{key: shape}``, the number
of keys, the dtypes, and ``expect``: ``load`` (an SD 1.x checkpoint Easel's SD 1.5 templates take) or
``refuse``, or ``vae`` (a VAE override for an SD 1.x model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

EMA_DECAY = 0.9999
EMA_NUM_UPDATES = 12345


def tiny_ldm_state(components: dict, dtype) -> dict:
    """The tiny model in the LDM layout as torch tensors of ``dtype`` (schedule float32) plus EMA entries."""
    import torch

    from .ldm_layout import UNET_PREFIX, components_to_ldm

    sd = components_to_ldm(components)
    out = {}
    for k, v in sd.items():
        out[k] = v if k in ("betas", "alphas_cumprod") else v.to(dtype).contiguous()
    # Real SD 1.x files carry the CLIP position ids (int64 [1, 77]); transformers no longer saves them.
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    # EMA entries as full (non-pruned) checkpoints store them: dots removed after "model_ema.".
    out["model_ema.decay"] = torch.tensor(EMA_DECAY, dtype=torch.float32)
    out["model_ema.num_updates"] = torch.tensor(EMA_NUM_UPDATES, dtype=torch.int32)
    for leaf in ("weight", "bias"):
        src = sd[f"{UNET_PREFIX}input_blocks.0.0.{leaf}"]
        out[f"model_ema.diffusion_modelinput_blocks00{leaf}"] = (-src).to(dtype).contiguous()
    return out


def standalone_vae(components: dict, dtype) -> dict:
    from .ldm_layout import VAE_PREFIX, vae_to_ldm

    vae = components["vae"]
    sd = vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels))
    return {k[len(VAE_PREFIX):]: v.detach().to(dtype).contiguous() for k, v in sd.items()}


def _keys_only(keys: dict) -> dict:
    """``{key: shape or None}`` -> float16 tensors (``None``: ``[1]``), deterministic non-zero values."""
    import torch

    out = {}
    for i, (k, shape) in enumerate(keys.items()):
        shape = shape or [1]
        n = int(np.prod(shape))
        vals = ((np.arange(n, dtype=np.float32) % 17) - 8) / 64 + (i % 5) / 128
        out[k] = torch.from_numpy(vals.reshape(shape).astype(np.float16))
    return out


SDXL_KEYS = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": None,
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": None,
    "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": None,
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": None,
    "conditioner.embedders.1.model.token_embedding.weight": None,
    "conditioner.embedders.1.model.positional_embedding": None,
    "conditioner.embedders.1.model.text_projection": None,
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": None,
    "conditioner.embedders.1.model.transformer.resblocks.0.ln_1.weight": None,
    "conditioner.embedders.1.model.ln_final.weight": None,
    "model.diffusion_model.label_emb.0.0.weight": None,
    "model.diffusion_model.time_embed.0.weight": None,
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": None,
    "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight": None,
    "model.diffusion_model.out.2.weight": None,
    "first_stage_model.encoder.conv_in.weight": None,
    "first_stage_model.decoder.conv_out.weight": None,
    "first_stage_model.quant_conv.weight": None,
    "first_stage_model.post_quant_conv.weight": None,
}

SD2_KEYS = {
    "cond_stage_model.model.token_embedding.weight": None,
    "cond_stage_model.model.positional_embedding": None,
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": None,
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias": None,
    "cond_stage_model.model.transformer.resblocks.0.attn.out_proj.weight": None,
    "cond_stage_model.model.transformer.resblocks.0.ln_1.weight": None,
    "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight": None,
    "cond_stage_model.model.ln_final.weight": None,
    "cond_stage_model.model.text_projection": None,
    "cond_stage_model.model.logit_scale": None,
    "model.diffusion_model.time_embed.0.weight": None,
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": None,
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
    "model.diffusion_model.out.2.weight": None,
    "first_stage_model.encoder.conv_in.weight": None,
    "first_stage_model.decoder.conv_out.weight": None,
    "first_stage_model.quant_conv.weight": None,
    "betas": None,
    "alphas_cumprod": None,
}

SD15_INPAINT_KEYS = {
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": None,
    "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": None,
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": None,
    "model.diffusion_model.time_embed.0.weight": None,
    "model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3],
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": None,
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "model.diffusion_model.out.2.weight": None,
    "first_stage_model.encoder.conv_in.weight": None,
    "first_stage_model.decoder.conv_out.weight": None,
    "first_stage_model.encoder.mid.attn_1.q.weight": None,
    "first_stage_model.quant_conv.weight": None,
    "first_stage_model.post_quant_conv.weight": None,
    "betas": None,
    "alphas_cumprod": None,
}


def lora_kohya() -> tuple[dict, dict]:
    """A rank-4 kohya-ss LoRA (``lora_unet_*``/``lora_te_*`` with ``lora_down``/``lora_up``/``alpha``)."""
    rank = 4
    keys = {}
    for base, din, dout, conv in [
        ("lora_unet_down_blocks_0_attentions_0_proj_in", 320, 320, True),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320, False),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, 320, False),
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_2", 5120, 1280, False),
        ("lora_unet_up_blocks_3_attentions_2_proj_out", 320, 320, True),
        ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768, False),
        ("lora_te_text_model_encoder_layers_11_mlp_fc2", 3072, 768, False),
    ]:
        tail = [1, 1] if conv else []
        keys[f"{base}.lora_down.weight"] = [rank, din, *tail]
        keys[f"{base}.lora_up.weight"] = [dout, rank, *tail]
        keys[f"{base}.alpha"] = None
    tensors = _keys_only(keys)
    for k in tensors:
        if k.endswith(".alpha"):
            tensors[k] = tensors[k].reshape([]).fill_(float(rank))
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(rank),
            "ss_base_model_version": "sd_v1"}
    return tensors, meta


def _describe(path: Path) -> dict:
    from safetensors import safe_open

    from .ldm_layout import classify_checkpoint

    shapes, dtypes = {}, {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            shapes[k] = list(sl.get_shape())
            dt = str(sl.get_dtype())
            dtypes[dt] = dtypes.get(dt, 0) + 1
    return {"keys": len(shapes), "dtypes": dtypes, "classify": classify_checkpoint(shapes), "bytes": path.stat().st_size}


def main(out: Path, fp32: bool = False) -> int:
    import torch
    from safetensors.torch import save_file

    from .random_model import load_torch_folder
    from .reference import default_torch_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    components = load_torch_folder(default_torch_model())
    meta = {"format": "pt", "easel": "tiny SD 1.5 architecture, random weights, seed 0 (models/tiny-sd)"}
    cases = []

    def add(name, tensors, what, expect, metadata=None, real_shapes=None):
        path = out / name
        save_file(tensors, str(path), metadata=metadata or {"format": "pt"})
        path.chmod(0o644)  # safetensors creates the file private
        entry = {"file": name, "what": what, "expect": expect, **_describe(path)}
        if real_shapes is not None:
            entry["real_shapes"] = real_shapes
        cases.append(entry)

    def real(keys):
        return [k for k, s in keys.items() if s]

    add("tiny-ldm-fp16.safetensors", tiny_ldm_state(components, torch.float16),
        "the tiny model (models/tiny-sd) in the LDM layout, float16, with betas/alphas_cumprod and model_ema.* entries "
        "(EMA copies of input_blocks.0.0 negated: must be ignored)", "load", metadata=meta)
    if fp32:
        add("tiny-ldm.safetensors", tiny_ldm_state(components, torch.float32),
            "the same in float32: bit-identical outputs to models/tiny-sd", "load", metadata=meta)
    elif (out / "tiny-ldm.safetensors").exists():
        (out / "tiny-ldm.safetensors").unlink()
    add("vae-standalone-bf16.safetensors", standalone_vae(components, torch.bfloat16),
        "the tiny model's VAE as a standalone VAE file (LDM keys, no first_stage_model. prefix), bfloat16", "vae")
    add("sdxl-keys.safetensors", _keys_only(SDXL_KEYS), "SDXL key set (conditioner.embedders.*), not SD 1.x", "refuse",
        real_shapes=real(SDXL_KEYS))
    add("sd2-keys.safetensors", _keys_only(SD2_KEYS),
        "SD 2.x key set (OpenCLIP cond_stage_model.model.*, context 1024), not SD 1.x", "refuse", real_shapes=real(SD2_KEYS))
    add("sd15-inpaint-keys.safetensors", _keys_only(SD15_INPAINT_KEYS),
        "SD 1.5 inpainting key set (conv_in with 9 input channels); keys only, values meaningless", "load-keys-only",
        real_shapes=real(SD15_INPAINT_KEYS))
    lora, lora_meta = lora_kohya()
    add("lora-kohya.safetensors", lora, "kohya-ss LoRA (lora_unet_*/lora_te_* lora_down/lora_up/alpha), not a checkpoint",
        "refuse", metadata={"format": "pt", **lora_meta})
    index = {
        "regenerate": "models/sdtool reference checkpoints tests/fixtures/checkpoints  (python -m tooling.ref_checkpoints OUT --fp32 adds tiny-ldm.safetensors)",
        "classify": "models/tooling/ldm_layout.py classify_checkpoint({key: shape})",
        "ema": {"decay": EMA_DECAY, "num_updates": EMA_NUM_UPDATES},
        "cases": cases,
    }
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    for c in cases:
        print(f"  {c['file']}: {c['bytes'] / 1e6:.2f} MB, {c['keys']} keys, {c['classify']['family']}")
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(Path(args[0] if args else "../tests/fixtures/checkpoints"), fp32="--fp32" in sys.argv))
