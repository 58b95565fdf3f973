"""Reference fixtures for Easel's prompt syntax: the A1111 and ComfyUI prompt parsers, A1111's 75-token
chunking, textual-inversion embeddings, and the text conditioning both programs feed the UNet.

Owns: ``tests/fixtures/prompts/`` — the case lists below, the deterministic embedding files in
``embeddings/`` (written here, from fixed seeds), and the recording itself. Nothing of the upstream
programs is copied into this project: the parser, tokenizer, chunking and embedding-database results come
from RUNNING the upstream modules out of checkouts given on the command line, with small stand-ins
(installed into ``sys.modules`` here, through ``tooling.upstream``) for the heavy modules they import
(``modules.shared``, ``comfy.model_management``, ...). The text encoder is the tiny random CLIP of ``models/tiny-sd-torch``
(transformers ``CLIPTextModel``, hidden 32, 2 layers) with the real CLIP BPE tokenizer of
``models/tiny-sd/tokenizer``; A1111's conditioning is produced by its own
``get_multicond_learned_conditioning`` / ``get_learned_conditioning`` and ``FrozenCLIPEmbedderWithCustomWords``
(upstream ``forward``, chunk batching and "Original" emphasis); the only piece written here is the token
embedding lookup that splices embedding vectors in (A1111's ``EmbeddingsWithFixes`` / ComfyUI's extended
input embedding table). ComfyUI's weighting runs upstream ``ClipTokenWeightEncoder.encode_token_weights``
over our encode of its token windows.

Upstream files used (commits recorded in every JSON's "source"): A1111 ``modules/prompt_parser.py``,
``modules/sd_hijack_clip.py``, ``modules/sd_emphasis.py``, ``modules/textual_inversion/textual_inversion.py``;
ComfyUI ``comfy/sd1_clip.py``. A checkout only needs those files (``lark==1.1.2`` is in requirements.txt).

Run from ``models/``::

    .venv/bin/python -m tooling.ref_prompts --a1111 /path/to/stable-diffusion-webui \\
        --comfyui /path/to/ComfyUI ../tests/fixtures/prompts

(or ``EASEL_A1111=... EASEL_COMFYUI=... models/sdtool reference prompts tests/fixtures/prompts``).

Writes: ``parser_a1111.json``, ``chunks_a1111.json``, ``parser_comfyui.json``, ``embeddings/*``,
``conditioning/<case>/{settings.json,tokens.json,*.npy}`` and ``cases.json`` (the index).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import sys
import types
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import upstream

MODELS_DIR = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = MODELS_DIR / "tiny-sd" / "tokenizer"
HIDDEN = 32  # the tiny text encoder's width

# The upstream revisions these fixtures were recorded from (file -> commit).
A1111_FILES = {
    "modules/prompt_parser.py": "28bd8e142d5f77b71ae8d7d7140b5da1b3a49906",
    "modules/sd_hijack_clip.py": "00e09382cd85c77ac35545c7264855823dfc2eb1",
    "modules/sd_emphasis.py": "f8391b8a8ff61bf7ebcddc9b387e6c2f206ed056",
    "modules/textual_inversion/textual_inversion.py": "22ecb78b51f7e6f0234cbc0efbde4ee9a2dc466f",
}
COMFYUI_FILES = {"comfy/sd1_clip.py": "00728eb20fce05955f89ef1ccf5f6167416e94cf"}

# A1111 settings the recording uses (modules.shared.opts).
A1111_OPTS = {
    "emphasis": "Original",
    "comma_padding_backtrack": 20,
    "CLIP_stop_at_last_layers": 1,
    "use_old_emphasis_implementation": False,
    "textual_inversion_add_hashes_to_infotext": False,
    "textual_inversion_print_at_load": False,
    "sdxl_clip_l_skip": False,
}


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------

# A1111 parser cases: (prompt, steps, hires_steps).
PARSER_A1111 = [
    ("a photo of a cat", 20, None),
    ("", 20, None),
    ("(cat)", 20, None),
    ("((cat))", 20, None),
    ("(((cat)))", 20, None),
    ("a (cat:1.3) sitting", 20, None),
    ("a (cat:0.5) sitting", 20, None),
    ("[cat]", 20, None),
    ("[[cat]]", 20, None),
    ("a ((red:1.2) [cat]) on (a [big] mat)", 20, None),
    ("(a [b (c:1.5)] d)", 20, None),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", 20, None),
    ("(a:1.2)(b:1.2) c", 20, None),
    (r"\(literal\) and \[brackets\]", 20, None),
    (r"a \\ backslash", 20, None),
    (r"(escaped \(paren\) inside:1.2)", 20, None),
    (r"a \: colon \x", 20, None),
    ("a cat BREAK a dog", 20, None),
    ("BREAK a cat", 20, None),
    ("a cat BREAK", 20, None),
    ("a BREAK b BREAK c", 20, None),
    ("a cat BREAK BREAK a dog", 20, None),
    ("(a cat BREAK a dog:1.2)", 20, None),
    ("[a cat BREAK a dog]", 20, None),
    ("aBREAKb BREAKfast break", 20, None),
    ("a [cat:dog:0.5] photo", 20, None),
    ("a [cat:dog:5] photo", 20, None),
    ("a [cat::0.3] photo", 20, None),
    ("a [:dog:0.3] photo", 20, None),
    ("a [cat:[dog:bird:0.75]:0.25]", 20, None),
    ("a [cat:dog:30] photo", 20, None),
    ("a [cat:dog:1.5] photo", 20, None),
    ("a [cat:dog:0] photo", 20, None),
    ("a [b: 3 ] c", 10, None),
    ("a [cat:dog:x] photo", 20, None),
    ("a [cat|dog]", 6, None),
    ("a [cat|dog|bird]", 7, None),
    ("[fe|]male", 4, None),
    ("a [cat|(dog:1.2)] b", 4, None),
    ("a cat AND a dog", 20, None),
    ("a cat :1.2 AND a dog :0.6", 20, None),
    ("a cat AND a dog:-0.5", 20, None),
    ("a cat AND a dog :1.", 20, None),
    ("ANDROID AND x AND", 20, None),
    ("[a:b:0.5] AND [c|d]", 4, None),
    ("(unbalanced", 20, None),
    ("[unbalanced", 20, None),
    ("unbalanced) text", 20, None),
    ("a ] b", 20, None),
    ("(x:abc)", 20, None),
    ("(x:1.2.3)", 20, None),
    ("( x : 1.2 )", 20, None),
    ("(x: 1.2) y", 20, None),
    ("(x:.5)", 20, None),
    ("(x:1.)", 20, None),
    ("(x:-1)", 20, None),
    ("(x:+2)", 20, None),
    ("日本語の猫 (café:1.2) ñ", 20, None),
    ("time 12:30 o'clock", 20, None),
    ("([a:b:0.5])", 20, None),
    ("(a [b:c:0.5] d:1.3)", 20, None),
    ("[a:b:0.5]", 20, 10),
    ("[a:b:25]", 20, 10),
    ("[a:b:1.5]", 20, 10),
    ("a [b:c:5]", 20, 10),
    ("a | b", 20, None),
    ("trailing backslash\\", 20, None),
    ("a\nmultiline\tprompt", 20, None),
]

# A1111 chunking cases: (name, text). Texts are schedule texts (no editing syntax left).
_WORDS = ("cat dog red blue tree house river stone cloud night day sun moon star bird fish green gold "
          "light dark").split()


def _words(n: int, start: int = 0) -> str:
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(n))


CHUNKS_A1111 = [
    ("short", "a photo of a cat"),
    ("empty", ""),
    ("exactly_75", _words(75)),
    ("tokens_76", _words(76)),
    ("tokens_160", _words(160)),
    ("comma_backtrack_taken", _words(70) + ", " + _words(10, 3)),
    ("comma_backtrack_not_taken", _words(30) + ", " + _words(50, 5)),
    ("comma_at_75", _words(74) + ", " + _words(5, 2)),
    ("break_new_chunk", "a red cat BREAK a blue dog"),
    ("break_at_boundary", _words(75) + " BREAK " + _words(3)),
    ("break_only", "BREAK"),
    ("weighted_across_boundary", _words(70) + " (" + _words(10, 7) + ":1.4) " + _words(4)),
    ("nested_weights", "a ((red:1.2) [cat]) on (a [big] mat), \\(literal\\)"),
    ("embedding_short", "a portrait, tinyneg, by tinystyle"),
    ("embedding_straddling", _words(73) + " tinyneg " + _words(3)),
    ("embedding_weighted", _words(5) + " (tinyneg:1.3) [tinystyle] tinybf16"),
    ("embedding_after_comma_backtrack", _words(60) + ", " + _words(12) + " tinyneg"),
]

# ComfyUI parser cases.
PARSER_COMFYUI = [
    "a photo of a cat",
    "",
    "(cat)",
    "((cat))",
    "a (cat:1.3) sitting",
    "a (cat:0.5) sitting",
    "((a:1.2) b) c",
    "a (((house:1.3)) on) a (hill:0.5), sun, (((sky))).",
    r"\(literal\) and \(x:1.2\)",
    r"(escaped \(paren\) inside:1.2)",
    "[cat] [[dog]] [a:b:0.5] [a|b]",
    "(x:abc)",
    "(x:1.2.3)",
    "( x : 1.2 )",
    "(x:.5) (y:1.)",
    "(a:1.2:1.3)",
    "(:1.2) empty",
    "(unbalanced text",
    "unbalanced) text",
    "a ) b (c",
    "a cat BREAK a dog",
    "a, b, c,d",
    "a\ncat\n\ndog",
    "a   cat    dog ",
    "日本語の猫 café",
    _words(100),
    _words(70) + " supercalifragilisticexpialidocious " + _words(10),
    _words(72) + " pneumonoultramicroscopicsilicovolcanoconiosis " + _words(5),
    _words(72) + " tinybf16 " + _words(3),
    "embedding:tinyneg a cat",
    "a cat, embedding:tinyneg, blurry",
    "embedding:missing a cat",
    "(embedding:tinyneg:1.2) a cat",
    "embedding:tinystyle embedding:tinyclip",
    "embedding:tinybf16 cat",
    _words(73) + " embedding:tinyneg " + _words(2),
    "embedding:tinyneg,embedding:tinystyle",
]


@dataclass
class CondCase:
    name: str
    what: str
    syntax: str  # "a1111" | "comfyui"
    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    clip_skip: int = 1
    embeddings: list[str] = field(default_factory=list)


LONG_160 = ("an extremely detailed oil painting of a lighthouse on a rocky cliff at dawn, waves crashing below, "
            "seagulls circling overhead, warm golden light breaking through heavy storm clouds, a small fishing "
            "boat returning to the harbour, wet stones glistening, moss and lichen on the old brick walls, a "
            "winding path with wooden fences leading down to the beach, footprints in the sand, distant mountains "
            "fading into mist, dramatic composition, rich colours, fine brush strokes, museum quality, by a "
            "nineteenth century master, a lone figure in a red coat standing at the edge, looking out to sea, "
            "a dog running along the shore, tall grass bending in the wind, a rusty anchor half buried in the "
            "pebbles, a flock of birds in the far sky, soft reflections on the water")

COND_CASES = [
    CondCase("a1111_weights", "emphasis: (x:1.3), [x], ((x)) with Original mean restore", "a1111",
             "a (red:1.3) cat on a [blue] sofa, ((masterpiece))"),
    CondCase("a1111_break", "BREAK: two chunks, the first padded", "a1111", "a red cat BREAK a blue sofa"),
    CondCase("a1111_long", "a prompt over 150 tokens: three chunks with the comma backtrack", "a1111", LONG_160),
    CondCase("a1111_edit", "[cat:dog:0.5] at 10 steps: one batch of two texts, ends 5 and 10", "a1111",
             "a photo of a [cat:dog:0.5] in the (snow:1.2)", steps=10),
    CondCase("a1111_edit_chunks", "editing where one schedule text needs two chunks: the other gets the empty chunk",
             "a1111", _words(70) + " [cat:" + _words(12) + ":0.5]", steps=10),
    CondCase("a1111_alternation", "[cat|dog] at 4 steps: ends 1..4", "a1111", "a [cat|dog] in a (garden:1.1)", steps=4),
    CondCase("a1111_and", "AND with weights: separate encodes per part", "a1111",
             "a cat :1.2 AND a dog :0.8 AND a (tree:1.4)"),
    CondCase("a1111_clip_skip2", "clip skip 2: hidden_states[-2] through final_layer_norm", "a1111",
             "a (red:1.2) cat on a sofa", clip_skip=2),
    CondCase("a1111_embedding_pt", "A1111 .pt embedding (3 vectors) in the prompt and the negative prompt", "a1111",
             "a portrait of a woman, (tinyneg:1.2), soft light", negative_prompt="tinyneg, blurry", embeddings=["tinyneg.pt"]),
    CondCase("a1111_embedding_safetensors", "safetensors embedding (2 vectors, emb_params)", "a1111",
             "a castle by tinystyle, [tinystyle]", embeddings=["tinystyle.safetensors"]),
    CondCase("a1111_embedding_straddling", "a 3-vector embedding that does not fit at the end of chunk 1", "a1111",
             _words(73) + " tinyneg " + _words(3), embeddings=["tinyneg.pt"]),
    CondCase("a1111_negative_longer", "negative prompt of 2 chunks, prompt of 1", "a1111", "a cat",
             negative_prompt=LONG_160 + ", (blurry:1.3)"),
    CondCase("a1111_negative_edit", "negative prompt with editing: uncond per end step", "a1111", "a cat",
             negative_prompt="[blurry:ugly:0.5], lowres", steps=10),
    CondCase("comfyui_weights", "ComfyUI weights: (z - z_empty) * w + z_empty", "comfyui",
             "a (red:1.3) cat on a (blue:0.5) sofa, ((masterpiece))"),
    CondCase("comfyui_unweighted", "ComfyUI without weights: no empty-prompt pass", "comfyui", "a red cat on a blue sofa"),
    CondCase("comfyui_embedding", "ComfyUI embedding:tinystyle (2 vectors) weighted", "comfyui",
             "a castle, (embedding:tinystyle:1.2), embedding:tinyneg, sunset",
             embeddings=["tinystyle.safetensors", "tinyneg.pt"]),
    CondCase("comfyui_long", "ComfyUI long prompt: several 77-token windows", "comfyui", "(" + LONG_160 + ":1.1)"),
    CondCase("comfyui_clip_skip2", "ComfyUI CLIPSetLastLayer -2", "comfyui", "a (red:1.2) cat on a sofa",
             clip_skip=2),
    CondCase("comfyui_negative", "ComfyUI with a weighted negative prompt", "comfyui", "a cat",
             negative_prompt="(blurry:1.4), lowres"),
]


# --------------------------------------------------------------------------------------------------
# Embedding files (ours: deterministic values, the formats A1111/ComfyUI users have on disk)
# --------------------------------------------------------------------------------------------------

class _Evil:
    """Pickles as a call of os.system: a payload that a safe loader must refuse. Nothing is executed
    when the file is written; pickling only records the reference."""

    def __reduce__(self):
        return (os.system, ("echo easel-must-not-run-this",))


def write_embeddings(out: Path) -> dict:
    """Writes embeddings/ and returns {file: description}."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)

    def randn(seed, *shape):
        return torch.randn(*shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

    vec = randn(1001, 3, HIDDEN).requires_grad_(True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": "tinyneg", "step": 100,
                "sd_checkpoint": None, "sd_checkpoint_name": None}, out / "tinyneg.pt")
    save_file({"emb_params": randn(1002, 2, HIDDEN)}, str(out / "tinystyle.safetensors"))
    save_file({"clip_l": randn(1003, 1, HIDDEN).half(), "clip_g": randn(1004, 1, 2 * HIDDEN).half()},
              str(out / "tinyclip.safetensors"))
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": randn(1005, 2, HIDDEN).bfloat16()},
                "name": "tinybf16", "step": 5}, out / "tinybf16.pt")
    pd = torch.nn.ParameterDict({"*": torch.nn.Parameter(randn(1006, 2, HIDDEN))})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": pd, "name": "tinyparamdict", "step": 7},
               out / "tinyparamdict.pt")
    write_evil(out / "evil.pt")
    return {
        "tinyneg.pt": "A1111 torch.save: string_to_param {'*': float32 [3,32] requires_grad}, seed 1001",
        "tinystyle.safetensors": "diffusers-style safetensors {'emb_params': float32 [2,32]}, seed 1002",
        "tinyclip.safetensors": "SDXL-style safetensors {'clip_l': float16 [1,32] seed 1003, 'clip_g': float16 [1,64] seed 1004}",
        "tinybf16.pt": "A1111 torch.save: string_to_param {'*': bfloat16 [2,32]} (from float32 seed 1005)",
        "tinyparamdict.pt": "A1111 torch.save: string_to_param as torch.nn.ParameterDict {'*': Parameter float32 [2,32]}, seed 1006",
        "evil.pt": "torch.save zip layout whose data.pkl calls os.system via a REDUCE: must be refused",
    }


def write_evil(path: Path) -> None:
    payload = {"string_to_token": {"*": 265}, "string_to_param": {"*": _Evil()}, "name": "evil"}
    data = pickle.dumps(payload, protocol=2)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in (("evil/data.pkl", data), ("evil/byteorder", b"little"), ("evil/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)  # fixed: same bytes every run


# --------------------------------------------------------------------------------------------------
# The upstream modules, with stand-ins for their heavy imports (the shared machinery is tooling.upstream)
# --------------------------------------------------------------------------------------------------

def _source(root: Path, repo: str, files: dict) -> dict:
    return {
        "repo": repo,
        "files": {f: {"commit": c, "sha256_lf": upstream.file_digest(root / f)} for f, c in files.items()},
        "recorder": "models/tooling/ref_prompts.py",
    }


class A1111:
    """The upstream A1111 modules, imported from a checkout with stand-ins for webui's runtime."""

    def __init__(self, root: Path, text_encoder, tokenizer):
        import contextlib

        self.root = upstream.a1111_checkout(root, A1111_FILES)
        opts = types.SimpleNamespace(**A1111_OPTS)
        self.opts = opts
        noop = upstream.noop
        self.shared = upstream.a1111_runtime(
            opts, devices={"torch_npu_set_device": noop, "autocast": lambda *a, **k: contextlib.nullcontext(),
                           "cond_cast_unet": lambda x: x},
            sinks=("sd_models", "images", "sd_samplers", "sd_hijack_checkpoint"))
        upstream.module("modules.sd_hijack", StableDiffusionModelHijack=object, model_hijack=None)
        upstream.module("modules.errors", report=noop)
        upstream.module("modules.hashes", sha256=lambda *a, **k: None)
        if "modules.textual_inversion" not in sys.modules:
            upstream.package("modules.textual_inversion", self.root / "modules" / "textual_inversion")
        upstream.module("modules.textual_inversion.dataset", PersonalizedBase=upstream.Anything,
                        PersonalizedDataLoader=upstream.Anything)
        upstream.module("modules.textual_inversion.learn_schedule", LearnRateScheduler=upstream.Anything)
        upstream.module("modules.textual_inversion.image_embedding", embedding_to_b64=noop, embedding_from_b64=noop,
                        insert_image_data_embed=noop, extract_image_data_embed=noop, caption_image_overlay=noop)
        upstream.module("modules.textual_inversion.logging", save_settings_to_file=noop)
        try:
            import torch.utils.tensorboard  # noqa: F401
        except Exception:  # noqa: BLE001 - tensorboard is not installed: only training uses it
            upstream.module("torch.utils.tensorboard", SummaryWriter=upstream.Anything)

        self.prompt_parser = importlib.import_module("modules.prompt_parser")
        self.sd_emphasis = importlib.import_module("modules.sd_emphasis")
        self.sd_hijack_clip = importlib.import_module("modules.sd_hijack_clip")
        self.ti = importlib.import_module("modules.textual_inversion.textual_inversion")

        self.hijack = types.SimpleNamespace(fixes=None, extra_generation_params={},
                                            embedding_db=self.ti.EmbeddingDatabase())
        wrapped = types.SimpleNamespace(tokenizer=tokenizer, transformer=text_encoder)
        self.clip = self.sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(wrapped, self.hijack)
        self.model = types.SimpleNamespace(cond_stage_model=self.clip,
                                           get_learned_conditioning=lambda texts: self.clip(texts))
        self.shared.sd_model = self.model
        # Embedding vectors enter like A1111's EmbeddingsWithFixes: the token embedding lookup is wrapped.
        # (load_text_encoder installed the splicing lookup; see splicing_token_embedding.)
        self.splicer = text_encoder.text_model.embeddings.token_embedding
        self.calls = []  # (texts, batch_chunks) of every forward, recorded for tokens.json

        original_process_texts = self.clip.process_texts

        def recording_process_texts(texts):
            batch_chunks, token_count = original_process_texts(texts)
            self.calls.append((list(texts), batch_chunks))
            return batch_chunks, token_count

        self.clip.process_texts = recording_process_texts
        original_process_tokens = self.clip.process_tokens

        def process_tokens_with_fixes(tokens, multipliers):
            self.splicer.rows = [_a1111_rows(fixes) for fixes in self.hijack.fixes]
            self.hijack.fixes = None
            try:
                return original_process_tokens(tokens, multipliers)
            finally:
                self.splicer.rows = None

        self.clip.process_tokens = process_tokens_with_fixes

    def source(self) -> dict:
        s = _source(self.root, "AUTOMATIC1111/stable-diffusion-webui", A1111_FILES)
        s["opts"] = dict(A1111_OPTS)
        import lark

        s["lark"] = lark.__version__
        return s

    def load_embeddings(self, emb_dir: Path, files: list[str]) -> dict:
        db = self.hijack.embedding_db
        db.ids_lookup.clear()
        db.word_embeddings.clear()
        db.skipped_embeddings.clear()
        db.expected_shape = HIDDEN
        for f in files:
            db.load_from_file(str(emb_dir / f), f)
        return {name: int(e.vectors) for name, e in db.word_embeddings.items()}


def _a1111_rows(fixes) -> dict:
    """{position: vector} for one chunk's PromptChunkFix list (vectors start after BOS, clipped to 77)."""
    rows = {}
    for offset, embedding in fixes:
        vec = embedding.vec["clip_l"] if isinstance(embedding.vec, dict) else embedding.vec
        n = min(77 - offset - 1, vec.shape[0])
        for i in range(n):
            rows[offset + 1 + i] = vec[i]
    return rows


def splicing_token_embedding(wrapped):
    """Our stand-in for A1111's EmbeddingsWithFixes and ComfyUI's extended input-embedding table."""
    import torch

    class SplicingTokenEmbedding(torch.nn.Module):
        """Token embedding lookup with rows replaced: ``rows`` is, per batch item, {position: vector}."""

        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped
            self.rows = None

        @property
        def weight(self):
            return self.wrapped.weight

        def forward(self, input_ids):
            x = self.wrapped(input_ids)
            if not self.rows:
                return x
            x = x.clone()
            for b, rows in enumerate(self.rows):
                for pos, vec in rows.items():
                    x[b, pos] = vec.to(dtype=x.dtype)
            return x

    return SplicingTokenEmbedding(wrapped)


def encode(text_encoder, ids, rows=None, clip_skip: int = 1):
    """[B,77] ids (+ per-item {position: vector}) -> [B,77,32] float32, A1111/ComfyUI clip skip."""
    import torch

    splicer = text_encoder.text_model.embeddings.token_embedding
    splicer.rows = rows
    try:
        with torch.no_grad():
            out = text_encoder(input_ids=torch.as_tensor(ids, dtype=torch.long), output_hidden_states=True)
    finally:
        splicer.rows = None
    if clip_skip > 1:
        return text_encoder.text_model.final_layer_norm(out.hidden_states[-clip_skip]).detach()
    return out.last_hidden_state.detach()


class ComfyUI:
    """ComfyUI's comfy/sd1_clip.py from a checkout, with stand-ins for its model-side imports."""

    def __init__(self, root: Path, emb_dir: Path):
        import torch

        self.root = upstream.comfyui_checkout(root, COMFYUI_FILES)
        upstream.module("comfy.ops", manual_cast=None)
        upstream.module("comfy.model_management", intermediate_device=lambda: torch.device("cpu"))
        upstream.module("comfy.clip_model", CLIPTextModel=object)
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            upstream.module("pkg_resources", resource_filename=lambda pkg, name: str(self.root / pkg / name))
        self.sd1_clip = importlib.import_module("comfy.sd1_clip")
        self.emb_dir = Path(emb_dir)
        self.tokenizer = self.sd1_clip.SDTokenizer(tokenizer_path=str(TOKENIZER_DIR),
                                                   embedding_directory=str(self.emb_dir), embedding_size=HIDDEN)
        self.known = {}  # name -> [rows, 32] as upstream load_embed returns it

    def source(self) -> dict:
        return _source(self.root, "comfyanonymous/ComfyUI", COMFYUI_FILES)

    def learn(self, names):
        for name in names:
            t = self.sd1_clip.load_embed(name, str(self.emb_dir), HIDDEN, "clip_l")
            if t is not None:
                self.known[name] = t.reshape(-1, t.shape[-1])

    def token_name(self, t) -> str:
        for name, rows in self.known.items():
            for r in range(rows.shape[0]):
                if t.shape == rows[r].shape and t.dtype == rows[r].dtype and bool((t == rows[r]).all()):
                    return f"emb:{name}:{r}"
        raise RuntimeError("an embedding row that no known embedding has")

    def token_weights(self, prompt: str):
        m = self.sd1_clip
        return [[m.unescape_important(t), w] for t, w in m.token_weights(m.escape_important(prompt), 1.0)]

    def windows(self, prompt: str):
        return self.tokenizer.tokenize_with_weights(prompt)

    def windows_json(self, windows):
        return [[[t if isinstance(t, int) else self.token_name(t), w] for t, w in win] for win in windows]

    def encode_windows(self, text_encoder, windows, clip_skip: int):
        """Upstream ClipTokenWeightEncoder.encode_token_weights over our encode of the windows."""
        sd1_clip = self.sd1_clip

        class Encoder(sd1_clip.ClipTokenWeightEncoder):
            special_tokens = {"start": 49406, "end": 49407, "pad": 49407}

            def encode(self, token_lists):
                ids, rows = [], []
                for toks in token_lists:
                    ids.append([t if isinstance(t, int) else 0 for t in toks])
                    rows.append({p: t.float() for p, t in enumerate(toks) if not isinstance(t, int)})
                return encode(text_encoder, ids, rows, clip_skip), None

        z, _ = Encoder().encode_token_weights(windows)
        return z[0]


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------

def _chunk_json(chunk) -> dict:
    return {"tokens": [int(t) for t in chunk.tokens], "multipliers": [float(m) for m in chunk.multipliers],
            "fixes": [[int(f.offset), f.embedding.name] for f in chunk.fixes]}


def _attention(pp, text: str):
    """parse_prompt_attention(text) as [[text, weight]], or {"error": ...} where upstream raises
    (e.g. "(x:1.2.3)": its weight regex accepts "1.2.3" and float() fails, so A1111 cannot generate)."""
    try:
        return [[s, float(w)] for s, w in pp.parse_prompt_attention(text)]
    except Exception as e:  # noqa: BLE001 - recorded as the expected outcome
        return {"error": f"{type(e).__name__}: {e}"}


def record_parser_a1111(a: A1111) -> dict:
    pp = a.prompt_parser
    cases = []
    for prompt, steps, hires in PARSER_A1111:
        res_indexes, flat, _ = pp.get_multicond_prompt_list([prompt])
        parts = [{"text": flat[i], "weight": float(w)} for i, w in res_indexes[0]]
        schedules, attention = [], {}
        for part in parts:
            sched = pp.get_learned_conditioning_prompt_schedules([part["text"]], steps, hires, False)[0]
            schedules.append([[int(e), t] for e, t in sched])
            for _, t in sched:
                if t not in attention:
                    attention[t] = _attention(pp, t)
        cases.append({"prompt": prompt, "steps": steps, "hires_steps": hires, "and_parts": parts,
                      "schedules": schedules, "attention": attention})
    return {"source": a.source(), "cases": cases}


def record_chunks_a1111(a: A1111, registered: dict) -> dict:
    cases = []
    for name, text in CHUNKS_A1111:
        chunks, token_count = a.clip.tokenize_line(text)
        cases.append({"name": name, "text": text, "embeddings": registered,
                      "chunks": [_chunk_json(c) for c in chunks], "token_count": int(token_count)})
    return {"source": a.source(), "cases": cases}


def record_parser_comfyui(c: ComfyUI) -> dict:
    cases = []
    for prompt in PARSER_COMFYUI:
        cases.append({"prompt": prompt, "token_weights": c.token_weights(prompt),
                      "windows": c.windows_json(c.windows(prompt))})
    return {"source": c.source(), "cases": cases}


def _save(path: Path, t) -> str:
    np.save(path, upstream.f32(t))
    return path.name


def record_conditioning(case: CondCase, out: Path, a: A1111, c: ComfyUI, text_encoder, emb_dir: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files, tokens = [], {}
    settings = {"syntax": case.syntax, "prompt": case.prompt, "negative_prompt": case.negative_prompt,
                "steps": case.steps, "clip_skip": case.clip_skip, "embeddings": case.embeddings, "what": case.what}
    if case.syntax == "a1111":
        registered = a.load_embeddings(emb_dir, case.embeddings)
        a.opts.CLIP_stop_at_last_layers = case.clip_skip
        a.calls.clear()
        try:
            mc = a.prompt_parser.get_multicond_learned_conditioning(a.model, [case.prompt], case.steps, None, False)
            cond_calls = list(a.calls)
            a.calls.clear()
            uc = a.prompt_parser.get_learned_conditioning(a.model, [case.negative_prompt], case.steps, None, False)
            uncond_calls = list(a.calls)
        finally:
            a.opts.CLIP_stop_at_last_layers = 1
        parts = []
        for j, composable in enumerate(mc.batch[0]):
            ends = []
            for s in composable.schedules:
                files.append(_save(out / f"cond_p{j}_e{s.end_at_step}.npy", s.cond))
                ends.append(int(s.end_at_step))
            parts.append({"weight": float(composable.weight), "ends": ends})
        uncond_ends = []
        for s in uc[0]:
            files.append(_save(out / f"uncond_e{s.end_at_step}.npy", s.cond))
            uncond_ends.append(int(s.end_at_step))
        settings["and_parts"] = parts
        settings["uncond_ends"] = uncond_ends
        settings["registered_embeddings"] = registered

        def calls_json(calls):
            return [{"texts": texts, "chunks": [[_chunk_json(ch) for ch in chunks] for chunks in batch]}
                    for texts, batch in calls]

        tokens = {"cond_calls": calls_json(cond_calls), "uncond_calls": calls_json(uncond_calls)}
    else:
        c.learn([Path(f).stem for f in case.embeddings])
        clip_skip = case.clip_skip
        for label, text in (("cond", case.prompt), ("uncond", case.negative_prompt)):
            windows = c.windows(text)
            z = c.encode_windows(text_encoder, windows, clip_skip)
            files.append(_save(out / f"{label}.npy", z))
            tokens[label] = c.windows_json(windows)
    settings["files"] = files
    (out / "settings.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False) + "\n", encoding="utf-8")
    return settings


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_text_encoder():
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from .reference import default_torch_model

    torch.set_num_threads(1)
    model_dir = default_torch_model(log=lambda *_: None)
    te = CLIPTextModel.from_pretrained(str(model_dir / "text_encoder"), dtype=torch.float32).eval()
    emb = te.text_model.embeddings
    emb.token_embedding = splicing_token_embedding(emb.token_embedding)
    return te, CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR))


def main(out: Path, a1111_dir: str | None = None, comfyui_dir: str | None = None, log=print) -> int:
    a1111_dir, comfyui_dir = upstream.checkouts("ref_prompts", a1111_dir, comfyui_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emb_dir = out / "embeddings"
    if emb_dir.exists():
        shutil.rmtree(emb_dir)
    emb_files = write_embeddings(emb_dir)

    te, tok = load_text_encoder()
    a = A1111(a1111_dir, te, tok)
    c = ComfyUI(comfyui_dir, emb_dir)

    _write_json(out / "parser_a1111.json", record_parser_a1111(a))
    registered = a.load_embeddings(emb_dir, ["tinyneg.pt", "tinystyle.safetensors", "tinybf16.pt"])
    _write_json(out / "chunks_a1111.json", record_chunks_a1111(a, registered))
    c.learn(["tinyneg", "tinystyle", "tinyclip", "tinybf16"])
    _write_json(out / "parser_comfyui.json", record_parser_comfyui(c))
    log(f"  parsers: {len(PARSER_A1111)} A1111, {len(CHUNKS_A1111)} chunk, {len(PARSER_COMFYUI)} ComfyUI cases")

    cond_dir = out / "conditioning"
    if cond_dir.exists():
        shutil.rmtree(cond_dir)
    for case in COND_CASES:
        s = record_conditioning(case, cond_dir / case.name, a, c, te, emb_dir)
        log(f"  conditioning/{case.name}: {', '.join(s['files'])}")

    import torch
    import transformers

    index = {
        "what": "prompt syntax fixtures: A1111 and ComfyUI parsers, A1111 chunking, embeddings, conditioning",
        "regenerate": "cd models && .venv/bin/python -m tooling.ref_prompts --a1111 DIR --comfyui DIR ../tests/fixtures/prompts",
        "model": "models/tiny-sd-torch text_encoder (random tiny CLIP, hidden 32, 2 layers), tokenizer models/tiny-sd/tokenizer",
        "a1111": a.source(),
        "comfyui": c.source(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "parsers": {"parser_a1111.json": len(PARSER_A1111), "chunks_a1111.json": len(CHUNKS_A1111),
                    "parser_comfyui.json": len(PARSER_COMFYUI)},
        "embeddings": emb_files,
        "conditioning": [asdict(cc) for cc in COND_CASES],
    }
    _write_json(out / "cases.json", index)
    return 0


if __name__ == "__main__":
    upstream.cli(main, __doc__, "../tests/fixtures/prompts")
