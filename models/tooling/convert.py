"""``sdtool convert SRC DST``: SD 1.5 weights in PyTorch form to Easel's ONNX folder.

Owns: recognising the source (a diffusers folder, a Hugging Face repo id, or a single-file ``.safetensors`` /
``.ckpt`` in the original LDM layout), checking it before any heavy work (a text file, a truncated or
corrupt file, an SDXL/SD2 checkpoint each give one clear error), loading it into torch modules without any
hub access for local sources, and driving export, fp16/int8 options, validation and the provenance record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import ToolError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
FAMILY_NAMES = {
    "sdxl": "an SDXL checkpoint",
    "sdxl-refiner": "an SDXL refiner checkpoint",
    "sd2": "a Stable Diffusion 2.x checkpoint",
    "sd3": "a Stable Diffusion 3 checkpoint",
    "flux": "a Flux checkpoint",
    "unet-only": "a UNet-only checkpoint (no VAE / text encoder inside)",
    "vae-only": "a VAE-only checkpoint",
}


@dataclass
class Source:
    kind: str  # "folder" | "file" | "hub"
    text: str
    path: Path | None = None
    info: dict = field(default_factory=dict)


def looks_like_repo_id(text: str) -> bool:
    return bool(REPO_ID.match(text)) and not text.lower().endswith(SINGLE_FILE_SUFFIXES) and not text.startswith(".")


def classify_source(text: str) -> Source:
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", text, path)
    if path.is_file():
        return Source("file", text, path)
    if path.exists():
        raise ToolError(f"{text}: not a regular file or folder")
    if looks_like_repo_id(text):
        return Source("hub", text)
    raise ToolError(f"{text}: no such file or directory")


# --------------------------------------------------------------------------------------------------
# single files: sniffing and reading


def _describe_non_checkpoint(head: bytes) -> str:
    if head.startswith(b"version https://git-lfs"):
        return "is a Git LFS pointer, not the weights (run `git lfs pull` where you cloned it)"
    if head.lstrip().startswith((b"<!DOCTYPE", b"<html", b"<HTML")):
        return "is an HTML page, not a checkpoint (a failed download?)"
    if head.lstrip().startswith(b"{"):
        return "is a JSON file, not a checkpoint"
    try:
        head.decode("utf-8")
        return "is a text file, not a checkpoint"
    except UnicodeDecodeError:
        return "is not a safetensors or PyTorch checkpoint file"


def read_safetensors_header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ToolError(f"{path}: truncated or empty file ({size} bytes), not a safetensors checkpoint")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > 100_000_000 or 8 + n > size:
            f.seek(0)
            sample = f.read(256)
            if 8 + n > size and 2 <= n <= 100_000_000:
                raise ToolError(f"{path}: truncated safetensors file (header needs {8 + n} bytes, file has {size})")
            raise ToolError(f"{path} {_describe_non_checkpoint(sample)}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ToolError(f"{path}: corrupt safetensors header") from None
    end = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(meta["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise ToolError(f"{path}: corrupt safetensors header (entry {key!r})") from None
    if 8 + n + end > size:
        raise ToolError(f"{path}: truncated safetensors file ({size} bytes, the header describes {8 + n + end})")
    return header


def checkpoint_shapes(path: Path) -> dict:
    """``{key: shape}`` of a single-file checkpoint, read without loading tensors where possible."""
    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) == 0:
        raise ToolError(f"{path}: empty file, not a checkpoint")
    is_zip = head.startswith(b"PK\x03\x04")
    is_pickle = head[:1] == b"\x80" and len(head) > 1 and head[1] in (2, 3, 4, 5)
    if path.suffix.lower() == ".safetensors" or not (is_zip or is_pickle):
        if path.suffix.lower() != ".safetensors":
            # Not a PyTorch zip/pickle; maybe a safetensors file with another name.
            try:
                header = read_safetensors_header(path)
            except ToolError:
                raise ToolError(f"{path} {_describe_non_checkpoint(head)}") from None
        else:
            header = read_safetensors_header(path)
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    state = load_torch_checkpoint(path)
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def load_torch_checkpoint(path: Path) -> dict:
    import pickle

    import torch

    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ToolError(f"{path}: truncated or corrupt PyTorch checkpoint (broken zip archive)") from None
        if bad is not None:
            raise ToolError(f"{path}: corrupt PyTorch checkpoint (member {bad} fails its CRC check)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else "unpickling failed"
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            raise ToolError(
                f"{path}: this .ckpt holds Python objects besides tensors; refusing to unpickle it "
                "(convert it to .safetensors with a trusted tool first)"
            ) from None
        raise ToolError(f"{path}: corrupt PyTorch checkpoint ({msg})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ToolError(f"{path}: truncated or corrupt PyTorch checkpoint ({first})") from None
    while isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ToolError(f"{path}: not a state dict checkpoint")
    return obj


def check_single_file(path: Path) -> dict:
    from .ldm_layout import classify_checkpoint

    shapes = checkpoint_shapes(path)
    if not shapes:
        raise ToolError(f"{path}: the checkpoint holds no tensors")
    info = classify_checkpoint(shapes)
    fam = info["family"]
    if fam in FAMILY_NAMES:
        raise ToolError(f"{path} is {FAMILY_NAMES[fam]}; Easel converts Stable Diffusion 1.x models only")
    if fam != "sd1":
        raise ToolError(f"{path}: not a Stable Diffusion checkpoint (no model.diffusion_model.* UNet weights found)")
    if info["in_channels"] not in (4, 9):
        raise ToolError(f"{path}: unsupported UNet with {info['in_channels']} input channels (SD 1.x has 4, or 9 for inpainting)")
    return info


# --------------------------------------------------------------------------------------------------
# loading sources into torch modules


def _hub_download(repo: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        allow = [
            "model_index.json",
            "scheduler/*",
            "tokenizer/*",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
        ]
        return Path(snapshot_download(repo, revision=revision, allow_patterns=allow))
    except Exception as e:  # noqa: BLE001 - every failure here becomes one clear line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        name = type(e).__name__
        if "RepositoryNotFound" in name or "404" in reason:
            raise ToolError(f"{repo}: no such repository on the Hugging Face hub (or it needs a token)") from None
        raise ToolError(
            f"cannot reach the Hugging Face hub to download {repo} ({name}); this machine looks offline: "
            "download the diffusers folder elsewhere and pass its path, or pass a local .safetensors file"
        ) from None


def _is_onnx_folder(path: Path) -> bool:
    idx = path / "model_index.json"
    if idx.is_file():
        try:
            return "Onnx" in json.loads(idx.read_text(encoding="utf-8")).get("_class_name", "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    return (path / "unet" / "model.onnx").is_file()


def load_diffusers_folder(path: Path) -> tuple[dict, dict, Path]:
    from .random_model import load_torch_folder

    if _is_onnx_folder(path):
        raise ToolError(f"{path} is already an ONNX model folder; nothing to convert")
    missing = [s for s in ("unet", "vae", "text_encoder", "scheduler") if not (path / s).is_dir()]
    if missing:
        if not (path / "model_index.json").exists():
            raise ToolError(f"{path}: not a diffusers model folder (no model_index.json)")
        raise ToolError(f"{path}: diffusers folder without {', '.join(missing)}")
    try:
        components = load_torch_folder(path)
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ToolError(f"{path}: cannot load the diffusers model ({first})") from None
    sched_path = path / "scheduler" / "scheduler_config.json"
    try:
        sched = json.loads(sched_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ToolError(f"{sched_path}: missing or unreadable scheduler config") from None
    return components, sched, path / "tokenizer"


def load_single_file(path: Path, config_dir: Path | None, info: dict, workdir: Path) -> tuple[dict, dict, Path]:
    from diffusers import StableDiffusionPipeline

    from . import quiet_diffusers
    from .configs import SD15_SCHEDULER, write_config_folder

    quiet_diffusers()
    if config_dir is None:
        config_dir = write_config_folder(workdir / "config", "sd15", in_channels=info["in_channels"])
    import torch

    try:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path),
            config=str(config_dir),
            local_files_only=True,
            torch_dtype=torch.float32,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except ToolError:
        raise
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ToolError(f"{path}: cannot load the checkpoint as SD 1.x ({type(e).__name__}: {first[:300]})") from None
    components = {"unet": pipe.unet.eval(), "vae": pipe.vae.eval(), "text_encoder": pipe.text_encoder.eval()}
    sched_file = Path(config_dir) / "scheduler" / "scheduler_config.json"
    sched = json.loads(sched_file.read_text(encoding="utf-8")) if sched_file.is_file() else dict(SD15_SCHEDULER)
    return components, sched, Path(config_dir) / "tokenizer"


# --------------------------------------------------------------------------------------------------
# the command


def convert(
    src: str,
    dst: str,
    *,
    fp16: bool = False,
    quantize: str | None = None,
    validate: bool = False,
    config: str | None = None,
    revision: str | None = None,
    force: bool = False,
    log=print,
) -> dict:
    from . import provenance

    if fp16 and quantize:
        raise ToolError("--fp16 and --quantize int8 are alternatives (fp16 for GPUs, int8 for CPUs); pick one")
    source = classify_source(src)
    dst_path = Path(dst)
    if dst_path.exists() and any(dst_path.iterdir()) and not force:
        if source.path is not None and dst_path.resolve() == source.path.resolve():
            raise ToolError("DST is the source itself")
        raise ToolError(f"{dst}: exists and is not empty (use --force to overwrite)")
    if config is not None and not Path(config).is_dir():
        raise ToolError(f"--config {config}: no such folder")

    t0 = time.perf_counter()
    source_record: dict = {"input": src}
    with tempfile.TemporaryDirectory(prefix="easel-convert-") as tmp:
        workdir = Path(tmp)
        if source.kind == "hub":
            source_record.update(kind="huggingface-repo", repo=src, revision=revision or "main")
            local = _hub_download(src, revision)
            components, sched, tok = load_diffusers_folder(local)
        elif source.kind == "folder":
            source_record.update(kind="diffusers-folder", path=str(source.path.resolve()))
            log(f"loading diffusers folder {source.path} ...")
            components, sched, tok = load_diffusers_folder(source.path)
            source_record["sha256_of_files"] = provenance.sha256_folder(source.path)
        else:
            info = check_single_file(source.path)
            if config is None and (info["conv_in_width"] != 320 or info["context_dim"] not in (768, None)):
                raise ToolError(
                    f"{src}: shapes do not match SD 1.5 (UNet width {info['conv_in_width']}, context "
                    f"{info['context_dim']}); pass --config DIR with a diffusers folder whose configs describe it"
                )
            source_record.update(
                kind="single-file-checkpoint",
                path=str(source.path.resolve()),
                bytes=source.path.stat().st_size,
                in_channels=info["in_channels"],
            )
            log(f"hashing {source.path} ...")
            source_record["sha256"] = provenance.sha256_file(source.path)
            log("loading single-file checkpoint (original LDM layout) ...")
            components, sched, tok = load_single_file(
                source.path, Path(config) if config else None, info, workdir
            )
        t_load = time.perf_counter() - t0
        from .export_onnx import folder_bytes, write_layout

        if dst_path.exists() and force:
            shutil.rmtree(dst_path)
        dtype = "float16" if fp16 else ("int8" if quantize == "int8" else "float32")
        graphs = write_layout(components, dst_path, sched, tok, fp16=fp16, quantize=quantize, log=log)
        elapsed = time.perf_counter() - t0
        options = {"fp16": fp16, "quantize": quantize, "validate": validate, "config": config, "opset": 17}
        validation = None
        if validate:
            from .validate import validate_folder

            log(f"validating {dst} against the torch modules ({dtype}) ...")
            validation = validate_folder(components, dst_path, dtype, log=log)
        provenance.write_record(
            dst_path,
            source=source_record,
            dtype=dtype,
            options=options,
            graphs=graphs,
            extra={
                "timing_seconds": {"load": round(t_load, 2), "load_and_export": round(elapsed, 2)},
                **({"validation": validation} if validation else {}),
            },
        )
    log(f"wrote {dst} ({folder_bytes(dst_path) / 1e6:.1f} MB, {elapsed:.1f} s)")
    if validation and not all(v["ok"] for v in validation.values()):
        bad = [k for k, v in validation.items() if not v["ok"]]
        raise ToolError(f"validation failed for {', '.join(bad)} (errors above tolerance)")
    return {"graphs": graphs, "validation": validation, "seconds": elapsed}
