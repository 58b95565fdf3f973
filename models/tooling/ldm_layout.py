"""The original LDM ("single file", A1111) key layout of SD 1.x checkpoints.

Owns: writing a diffusers-form model (UNet, VAE, CLIP text encoder) as one state dict in the original key
layout (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``), and
recognising what kind of checkpoint a key set is (SD 1.x, SD 2.x, SDXL, inpainting, ...).

Reading that layout back is done by diffusers' ``from_single_file``; this direction exists so tests can
build a small single-file checkpoint from the tiny model and check that converting it gives the same graphs
as exporting the diffusers model directly.

UNet index arithmetic (``L`` = layers_per_block, 4 levels): input block ``k`` is ``conv_in`` for ``k = 0``;
for level ``i`` its resnet/attention ``j`` is input block ``(L+1)·i + j + 1`` and its downsampler is input
block ``(L+1)·(i+1)``. Output block ``(L+1)·i + j`` holds up level ``i``'s resnet ``j`` (``j`` ≤ L), the
attention next to it, and on the last ``j`` the upsampler (after the attention when there is one).
"""

from __future__ import annotations

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

_RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

_VAE_ATTN_RENAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_resnet(rest: str) -> str:
    layer, _, leaf = rest.partition(".")
    return f"{_RESNET_RENAMES[layer]}.{leaf}"


def unet_to_ldm(sd: dict, layers_per_block: int, n_levels: int = 4) -> dict:
    per = layers_per_block + 1
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if key.startswith("time_embedding.linear_1."):
            new = "time_embed.0." + parts[-1]
        elif key.startswith("time_embedding.linear_2."):
            new = "time_embed.2." + parts[-1]
        elif key.startswith("conv_in."):
            new = "input_blocks.0.0." + parts[-1]
        elif key.startswith("conv_norm_out."):
            new = "out.0." + parts[-1]
        elif key.startswith("conv_out."):
            new = "out.2." + parts[-1]
        elif parts[0] == "down_blocks":
            level = int(parts[1])
            kind = parts[2]
            if kind == "downsamplers":
                new = f"input_blocks.{per * (level + 1)}.0.op." + parts[-1]
            else:
                j = int(parts[3])
                rest = ".".join(parts[4:])
                block = per * level + j + 1
                if kind == "resnets":
                    new = f"input_blocks.{block}.0.{_rename_resnet(rest)}"
                else:
                    new = f"input_blocks.{block}.1.{rest}"
        elif parts[0] == "mid_block":
            kind = parts[1]
            j = int(parts[2])
            rest = ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * j}.{_rename_resnet(rest)}"
            else:
                new = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            level = int(parts[1])
            kind = parts[2]
            if kind == "upsamplers":
                block = per * level + layers_per_block
                has_attn = any(k.startswith(f"up_blocks.{level}.attentions.") for k in sd)
                new = f"output_blocks.{block}.{2 if has_attn else 1}.conv." + parts[-1]
            else:
                j = int(parts[3])
                rest = ".".join(parts[4:])
                block = per * level + j
                if kind == "resnets":
                    new = f"output_blocks.{block}.0.{_rename_resnet(rest)}"
                else:
                    new = f"output_blocks.{block}.1.{rest}"
        else:
            raise KeyError(f"unexpected UNet key {key}")
        out[UNET_PREFIX + new] = value
    return out


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def vae_to_ldm(sd: dict, n_levels: int = 4) -> dict:
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            new = key
        elif parts[1] in ("conv_in", "conv_out"):
            new = key
        elif parts[1] == "conv_norm_out":
            new = f"{side}.norm_out.{parts[-1]}"
        elif parts[1] == "mid_block":
            kind = parts[2]
            j = int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "resnets":
                new = f"{side}.mid.block_{j + 1}.{_vae_resnet(rest)}"
            else:
                for old, repl in _VAE_ATTN_RENAMES.items():
                    if rest.startswith(old + "."):
                        rest = repl + rest[len(old):]
                        break
                new = f"{side}.mid.attn_1.{rest}"
                if value.ndim == 2:  # LDM keeps these projections as 1x1 convolutions
                    value = value[:, :, None, None]
        elif parts[1] == "down_blocks":
            level = int(parts[2])
            if parts[3] == "downsamplers":
                new = f"encoder.down.{level}.downsample.conv.{parts[-1]}"
            else:
                j = int(parts[4])
                new = f"encoder.down.{level}.block.{j}.{_vae_resnet('.'.join(parts[5:]))}"
        elif parts[1] == "up_blocks":
            level = n_levels - 1 - int(parts[2])  # LDM numbers decoder levels from the lowest resolution up
            if parts[3] == "upsamplers":
                new = f"decoder.up.{level}.upsample.conv.{parts[-1]}"
            else:
                j = int(parts[4])
                new = f"decoder.up.{level}.block.{j}.{_vae_resnet('.'.join(parts[5:]))}"
        else:
            raise KeyError(f"unexpected VAE key {key}")
        out[VAE_PREFIX + new] = value
    return out


def text_encoder_to_ldm(sd: dict) -> dict:
    return {TEXT_PREFIX + k: v for k, v in sd.items()}


def components_to_ldm(components: dict, include_schedule: bool = True) -> dict:
    """One state dict in the original SD 1.x layout (as ``v1-5-pruned-emaonly`` files have it)."""
    unet = components["unet"]
    sd = {}
    sd.update(unet_to_ldm(unet.state_dict(), unet.config.layers_per_block, len(unet.config.block_out_channels)))
    sd.update(vae_to_ldm(components["vae"].state_dict(), len(components["vae"].config.block_out_channels)))
    sd.update(text_encoder_to_ldm(components["text_encoder"].state_dict()))
    import torch

    if include_schedule:
        # Original checkpoints carry the training schedule; loaders ignore it. Included for realism.
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sd["betas"] = betas.float()
        sd["alphas_cumprod"] = alphas_cumprod.float()
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def classify_checkpoint(shapes: dict) -> dict:
    """What a single-file state dict is, from its key names and shapes (``{key: shape}``).

    Returns ``{"family": ..., "in_channels": ..., "context_dim": ..., "conv_in_width": ...}``; family is one of
    ``sd1``, ``sd2``, ``sdxl``, ``sdxl-refiner``, ``sd3``, ``flux``, ``unet-only``, ``vae-only``, ``unknown``.
    """
    keys = shapes.keys()

    def has_prefix(p):
        return any(k.startswith(p) for k in keys)

    info = {"family": "unknown", "in_channels": None, "context_dim": None, "conv_in_width": None}
    if has_prefix("conditioner.embedders"):
        info["family"] = "sdxl-refiner" if not has_prefix("conditioner.embedders.0.transformer") and has_prefix(
            "conditioner.embedders.0.model") else "sdxl"
        return info
    if has_prefix("model.diffusion_model.joint_blocks") or has_prefix("text_encoders."):
        info["family"] = "sd3"
        return info
    if has_prefix("double_blocks.") or has_prefix("model.diffusion_model.double_blocks"):
        info["family"] = "flux"
        return info
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None:
        info["in_channels"] = int(conv_in[1])
        info["conv_in_width"] = int(conv_in[0])
        for k, s in shapes.items():
            if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight"):
                info["context_dim"] = int(s[1])
                break
        has_text = has_prefix("cond_stage_model.")
        has_vae = has_prefix(VAE_PREFIX)
        if has_prefix("cond_stage_model.model.") or info["context_dim"] == 1024:
            info["family"] = "sd2"
        elif has_text and has_vae:
            info["family"] = "sd1"
        else:
            info["family"] = "unet-only"
        return info
    if has_prefix("encoder.down.") or has_prefix("decoder.up."):
        info["family"] = "vae-only"
    return info
