"""The CLIP BPE tokenizer files of SD 1.5, derived offline.

Owns: finding the BPE merge list that the ``open_clip_torch`` package ships
(``open_clip/bpe_simple_vocab_16e6.txt.gz``), turning it into ``vocab.json`` / ``merges.txt``, and writing
a complete diffusers ``tokenizer/`` folder (plus ``tokenizer.json`` for the Rust ``tokenizers`` crate).
Also gives access to open_clip's own tokenizer, used as the reference in tests.

Vocabulary order (49408 entries): the 256 byte symbols, the same 256 with ``</w>`` appended, one entry per
merge (the two halves joined), then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).
The merge list is lines 1..48894 of the file (line 0 is a version header).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from . import ToolError

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
BOS_ID = 49406
EOS_ID = 49407
VOCAB_SIZE = 49408
MAX_LENGTH = 77
N_MERGES = 49152 - 256 - 2


def _open_clip_dir() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locating does not import the package (it needs torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("open_clip_torch is not installed in the tooling venv (needed for the CLIP BPE file)")
    return Path(list(spec.submodule_search_locations)[0])


def bpe_file() -> Path:
    path = _open_clip_dir() / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise ToolError(f"CLIP BPE file not found at {path}")
    return path


@lru_cache(maxsize=1)
def byte_symbols() -> list[str]:
    """Printable stand-in for each byte value 0..255, in byte order.

    Bytes that are already visible Latin-1 characters keep their own code point; the other 68 bytes
    (controls, space, DEL, the C1 range, NBSP and the soft hyphen) get 256, 257, ... in increasing order.
    """
    visible = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out = []
    extra = 0
    for b in range(256):
        if b in visible:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _visible_order() -> list[int]:
    """Byte values in the order CLIP lists its first 256 vocabulary entries: visible ones, then the rest."""
    visible = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    rest = [b for b in range(256) if b not in set(visible)]
    return visible + rest


@lru_cache(maxsize=1)
def load_merges() -> tuple[str, ...]:
    lines = gzip.decompress(bpe_file().read_bytes()).decode("utf-8").split("\n")
    merges = tuple(lines[1 : N_MERGES + 1])
    if len(merges) != N_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise ToolError("unexpected content in the CLIP BPE file")
    return merges


@lru_cache(maxsize=1)
def build_vocab() -> dict[str, int]:
    symbols = byte_symbols()
    base = [symbols[b] for b in _visible_order()]
    tokens = base + [s + "</w>" for s in base]
    tokens += [m.replace(" ", "") for m in load_merges()]
    tokens += [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ToolError("derived CLIP vocabulary is malformed")
    return {t: i for i, t in enumerate(tokens)}


def write_vocab_and_merges(out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / "vocab.json"
    merges_path = out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(build_vocab(), ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(load_merges()) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def write_tokenizer_dir(out_dir: Path, vocab: Path | None = None, merges: Path | None = None) -> None:
    """Write a complete SD 1.5 ``tokenizer/`` folder.

    With ``vocab``/``merges`` given (a model's own files) those are used; otherwise the files are derived
    from open_clip's BPE file. SD 1.5 pads with ``<|endoftext|>`` and has a 77-token context.
    """
    from transformers import CLIPTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if vocab is None or merges is None:
        vocab, merges = write_vocab_and_merges(out_dir)
    tok = CLIPTokenizerFast(
        vocab_file=str(vocab),
        merges_file=str(merges),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_LENGTH,
    )
    # save_pretrained writes vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and
    # special_tokens_map.json. The config names the slow class so diffusers' default loader is used.
    tok.save_pretrained(str(out_dir))
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "CLIPTokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for extra in ("added_tokens.json",):
        p = out_dir / extra
        if p.exists():
            p.unlink()


def load_open_clip_tokenizer():
    """open_clip's ``SimpleTokenizer`` (the original CLIP pipeline: ftfy, html unescape twice, lower case).

    The module file is loaded directly because importing the ``open_clip`` package pulls torchvision.
    """
    path = _open_clip_dir() / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("_easel_open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(bpe_path=str(bpe_file()))
