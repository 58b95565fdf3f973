"""Provenance record ``easel-model.json`` written beside ``model_index.json``.

Owns: the record's format (source, source file sha256, tool and library versions, dtype, options, per-graph
sizes, and for random models the weight hashes that let a regenerated torch model be checked against the
committed ONNX folder), hashing files and folders, and reading the record back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path

from . import TOOL_NAME, TOOL_VERSION

RECORD_NAME = "easel-model.json"
FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_folder(path: Path) -> str:
    """Hash of a folder's regular files (relative path + content), in sorted path order."""
    path = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        rel = p.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        h.update(rel.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("torch", "diffusers", "transformers", "onnx", "onnxruntime", "safetensors", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing library is reported as such
            out[mod] = None
    return out


def write_record(
    out_dir: Path,
    *,
    source: dict,
    dtype: str,
    options: dict,
    graphs: dict | None = None,
    extra: dict | None = None,
) -> Path:
    record = {
        "format": "easel-model",
        "format_version": FORMAT_VERSION,
        "tool": {"name": TOOL_NAME, "version": TOOL_VERSION},
        "libraries": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "source": source,
        "architecture": "stable-diffusion-1.5",
        "dtype": dtype,
        "options": options,
        "layout": "diffusers-onnx (optimum-style names: input_ids int64, timestep float rank 0, latent_parameters)",
    }
    if graphs:
        record["graphs"] = graphs
    if extra:
        record.update(extra)
    path = Path(out_dir) / RECORD_NAME
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_record(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / RECORD_NAME).read_text(encoding="utf-8"))
