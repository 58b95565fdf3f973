"""The committed prompt fixtures (tests/fixtures/prompts) are complete, and their conditioning arrays are right.

``tooling.ref_prompts`` records them by running A1111's and ComfyUI's own code from checkouts, which these
tests do not need: they check that the index, the case lists and the files agree, and recompute several
conditioning cases here from the recorded token data (``tokens.json``: A1111 chunks with multipliers and
embedding fixes, ComfyUI windows with weights) with transformers' CLIPTextModel and the embedding files,
written independently of the recorder, so the encoding half is verified on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "prompts"
INDEX = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
BOS, EOS = 49406, 49407


def _load(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_parser_fixtures_match_the_case_lists():
    from tooling.ref_prompts import CHUNKS_A1111, PARSER_A1111, PARSER_COMFYUI

    a1111 = _load("parser_a1111.json")
    assert [(c["prompt"], c["steps"], c["hires_steps"]) for c in a1111["cases"]] == [tuple(c) for c in PARSER_A1111]
    assert len(a1111["cases"]) >= 45
    for case in a1111["cases"]:
        assert len(case["schedules"]) == len(case["and_parts"])
        for schedule in case["schedules"]:
            ends = [e for e, _ in schedule]
            assert ends == sorted(ends) and ends[-1] == (case["hires_steps"] or case["steps"])
            for _, text in schedule:
                assert text in case["attention"]
    assert a1111["source"]["files"]["modules/prompt_parser.py"]["commit"] == "28bd8e142d5f77b71ae8d7d7140b5da1b3a49906"

    chunks = _load("chunks_a1111.json")
    assert [(c["name"], c["text"]) for c in chunks["cases"]] == list(CHUNKS_A1111)
    assert len(chunks["cases"]) >= 12
    for case in chunks["cases"]:
        assert case["chunks"], case["name"]
        for chunk in case["chunks"]:
            assert len(chunk["tokens"]) == len(chunk["multipliers"]) == 77
            assert chunk["tokens"][0] == BOS and chunk["tokens"][-1] == EOS
            for offset, name in chunk["fixes"]:
                assert name in case["embeddings"] and offset + case["embeddings"][name] <= 75

    comfy = _load("parser_comfyui.json")
    assert [c["prompt"] for c in comfy["cases"]] == list(PARSER_COMFYUI)
    assert len(comfy["cases"]) >= 30
    for case in comfy["cases"]:
        for window in case["windows"]:
            assert len(window) == 77 and window[0] == [BOS, 1.0] and EOS in [t for t, _ in window]
    assert comfy["source"]["files"]["comfy/sd1_clip.py"]["commit"] == "00728eb20fce05955f89ef1ccf5f6167416e94cf"


def test_conditioning_index_and_files_are_complete():
    from tooling.ref_prompts import COND_CASES

    names = [c["name"] for c in INDEX["conditioning"]]
    assert names == [c.name for c in COND_CASES] and len(names) >= 12
    assert sorted(p.name for p in (FIXTURES / "conditioning").iterdir()) == sorted(names)
    for name in names:
        folder = FIXTURES / "conditioning" / name
        s = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
        assert {"syntax", "prompt", "negative_prompt", "steps", "clip_skip", "embeddings", "what"} <= set(s)
        for emb in s["embeddings"]:
            assert (FIXTURES / "embeddings" / emb).is_file()
        if s["syntax"] == "a1111":
            want = [f"cond_p{j}_e{e}.npy" for j, p in enumerate(s["and_parts"]) for e in p["ends"]]
            want += [f"uncond_e{e}.npy" for e in s["uncond_ends"]]
        else:
            want = ["cond.npy", "uncond.npy"]
        assert s["files"] == want
        assert sorted(p.name for p in folder.glob("*.npy")) == sorted(want)
        for f in want:
            a = np.load(folder / f)
            assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == 32 and a.shape[0] % 77 == 0
            assert np.isfinite(a).all()
    for f in INDEX["embeddings"]:
        assert (FIXTURES / "embeddings" / f).is_file()
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 3_000_000


def test_evil_embedding_is_refused_by_a_weights_only_load():
    import torch

    with pytest.raises(Exception):
        torch.load(FIXTURES / "embeddings" / "evil.pt", weights_only=True)


# ---- independent recomputation ------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_encoder(tiny_torch_dir):
    import torch
    from transformers import CLIPTextModel

    torch.set_num_threads(1)
    return CLIPTextModel.from_pretrained(str(tiny_torch_dir / "text_encoder"), dtype=torch.float32).eval()


def _embedding_vectors(file_name: str):
    """The [n, 32] float32 vectors of one embedding file (A1111 .pt or safetensors)."""
    import torch
    from safetensors.torch import load_file

    path = FIXTURES / "embeddings" / file_name
    if file_name.endswith(".safetensors"):
        data = load_file(str(path))
        t = data["clip_l"] if "clip_l" in data else next(iter(data.values()))
    else:
        t = next(iter(torch.load(path, weights_only=True)["string_to_param"].values()))
    return t.detach().float().reshape(-1, 32)


def _run(text_encoder, ids, replace, clip_skip):
    """ids [B,77]; replace: per item {position: vector} put in place of the token embedding."""
    import torch

    def hook(_module, _inputs, output):
        output = output.clone()
        for b, rows in enumerate(replace):
            for pos, vec in rows.items():
                output[b, pos] = vec
        return output

    handle = text_encoder.text_model.embeddings.token_embedding.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = text_encoder(input_ids=torch.tensor(ids), output_hidden_states=True)
            if clip_skip > 1:
                return text_encoder.text_model.final_layer_norm(out.hidden_states[-clip_skip])
            return out.last_hidden_state
    finally:
        handle.remove()


def _a1111_call(text_encoder, call, vectors, clip_skip):
    """One A1111 encode of a batch of texts: per chunk index, the batch with empty chunks for short texts,
    Original emphasis over the whole [B,77,32] chunk tensor; returns one [77k,32] array per text."""
    import torch

    empty = {"tokens": [BOS] + [EOS] * 76, "multipliers": [1.0] * 77, "fixes": []}
    n_chunks = max(len(c) for c in call["chunks"])
    per_text = [[] for _ in call["chunks"]]
    for i in range(n_chunks):
        batch = [c[i] if i < len(c) else empty for c in call["chunks"]]
        replace = []
        for chunk in batch:
            rows = {}
            for offset, name in chunk["fixes"]:
                for k, v in enumerate(vectors[name]):
                    if offset + 1 + k < 77:
                        rows[offset + 1 + k] = v
            replace.append(rows)
        z = _run(text_encoder, [c["tokens"] for c in batch], replace, clip_skip)
        mult = torch.tensor([c["multipliers"] for c in batch], dtype=torch.float32)
        before = z.mean()
        z = z * mult[..., None]
        z = z * (before / z.mean())
        for b in range(len(batch)):
            per_text[b].append(z[b])
    return [torch.cat(chunks).numpy() for chunks in per_text]


def _settings(name):
    folder = FIXTURES / "conditioning" / name
    return folder, json.loads((folder / "settings.json").read_text(encoding="utf-8")), \
        json.loads((folder / "tokens.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["a1111_edit_chunks", "a1111_embedding_pt", "a1111_clip_skip2", "a1111_and",
                                  "a1111_embedding_straddling"])
def test_a1111_conditioning_recomputes(text_encoder, name):
    folder, s, tokens = _settings(name)
    vectors = {emb.rsplit(".", 1)[0]: _embedding_vectors(emb) for emb in s["embeddings"]}
    assert len(tokens["cond_calls"]) == len(s["and_parts"])
    for j, (part, call) in enumerate(zip(s["and_parts"], tokens["cond_calls"])):
        got = _a1111_call(text_encoder, call, vectors, s["clip_skip"])
        assert len(got) == len(part["ends"])
        for end, z in zip(part["ends"], got):
            # 1e-4: torch's float32 text encoder differs by up to 6e-5 between CPUs' kernels.
            np.testing.assert_allclose(z, np.load(folder / f"cond_p{j}_e{end}.npy"), atol=1e-4, rtol=0)
    (call,) = tokens["uncond_calls"]
    for end, z in zip(s["uncond_ends"], _a1111_call(text_encoder, call, vectors, s["clip_skip"])):
        np.testing.assert_allclose(z, np.load(folder / f"uncond_e{end}.npy"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["comfyui_weights", "comfyui_embedding", "comfyui_clip_skip2"])
def test_comfyui_conditioning_recomputes(text_encoder, name):
    import torch

    folder, s, tokens = _settings(name)
    vectors = {emb.rsplit(".", 1)[0]: _embedding_vectors(emb) for emb in s["embeddings"]}
    for label in ("cond", "uncond"):
        windows = tokens[label]
        ids, replace = [], []
        for window in windows:
            row_ids, rows = [], {}
            for pos, (tok, _w) in enumerate(window):
                if isinstance(tok, str):  # "emb:<name>:<row>"
                    _, emb_name, r = tok.split(":")
                    rows[pos] = vectors[emb_name][int(r)]
                    tok = 0
                row_ids.append(tok)
            ids.append(row_ids)
            replace.append(rows)
        weighted = any(w != 1.0 for window in windows for _, w in window)
        if weighted:  # the empty prompt: start, end, then padding with end
            ids.append([BOS] + [EOS] * 76)
            replace.append({})
        z = _run(text_encoder, ids, replace, s["clip_skip"])
        out = []
        for k, window in enumerate(windows):
            zk = z[k].clone()
            if weighted:
                w = torch.tensor([w for _, w in window], dtype=torch.float32)[:, None]
                zk = torch.where(w != 1.0, (zk - z[-1]) * w + z[-1], zk)
            out.append(zk)
        np.testing.assert_allclose(torch.cat(out).numpy(), np.load(folder / f"{label}.npy"), atol=1e-5, rtol=0)
