"""Weight-free ONNX templates (models/templates) and the single-file checkpoint fixtures
(tests/fixtures/checkpoints): the committed templates are what ``tooling.template`` makes from the tiny
exports, they hold no weights, and a template given the weights of a checkpoint (LDM or diffusers layout,
through onnxruntime's ``add_external_initializers``) computes exactly what the exported graph computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MODELS_DIR, REPO_ROOT

TEMPLATES = MODELS_DIR / "templates"
CHECKPOINTS = REPO_ROOT / "tests" / "fixtures" / "checkpoints"
TINY_GRAPHS = ["text_encoder", "unet", "unet_inpaint", "vae_encoder", "vae_decoder"]
SD15_GRAPHS = ["text_encoder", "unet", "unet_inpaint", "vae_encoder", "vae_decoder"]


def _doc(arch, graph):
    return json.loads((TEMPLATES / arch / graph / "weights.json").read_text())


def _source(graph):
    """(ONNX folder, graph folder inside it) of the tiny export a tiny template was made from."""
    if graph == "unet_inpaint":
        return MODELS_DIR / "tiny-sd-inpaint", "unet"
    return MODELS_DIR / "tiny-sd", graph


@pytest.fixture(scope="module")
def tiny_inpaint_components(tiny_inpaint_torch_dir):
    from tooling.random_model import load_torch_folder

    return load_torch_folder(tiny_inpaint_torch_dir)


@pytest.fixture(scope="module")
def comps(tiny_components, tiny_inpaint_components):
    return {g: (tiny_inpaint_components if g == "unet_inpaint" else tiny_components) for g in TINY_GRAPHS}


def _inputs(graph, components):
    from tooling.export_onnx import example_inputs

    name = "unet" if graph == "unet_inpaint" else graph
    return {k: v.numpy() for k, v in example_inputs(name, components).items()}


def _reference_outputs(graph, inputs):
    import onnxruntime as ort

    src, sub = _source(graph)
    sess = ort.InferenceSession(str(src / sub / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


@pytest.mark.parametrize("arch,graphs", [("tiny", TINY_GRAPHS), ("sd15", SD15_GRAPHS)])
def test_templates_hold_no_weights(arch, graphs):
    import onnx

    from tooling.template import FORMAT, LOCATION, VERSION

    assert sorted(p.name for p in (TEMPLATES / arch).iterdir() if p.is_dir()) == sorted(graphs)
    for graph in graphs:
        doc = _doc(arch, graph)
        assert (doc["format"], doc["version"], doc["location"]) == (FORMAT, VERSION, LOCATION)
        model = onnx.load(str(TEMPLATES / arch / graph / "model.onnx"), load_external_data=False)
        inits = {t.name: t for t in model.graph.initializer}
        entries = {e["name"]: e for e in doc["initializers"]}
        assert len(entries) == len(doc["initializers"]), "one entry per initializer"
        for name, t in inits.items():
            external = t.data_location == onnx.TensorProto.EXTERNAL
            assert external == (name in entries), name
            if external:
                assert {e.key: e.value for e in t.external_data} == {"location": LOCATION}
                assert not t.raw_data and not t.float_data
                e = entries[name]
                assert list(t.dims) == e["shape"] and e["dtype"] == "float32"
                assert int(np.prod(e["shape"])) == int(np.prod(e["diffusers_shape"])) == int(np.prod(e["ldm_shape"]))
        assert set(entries) <= set(inits)
        assert {e["name"] for e in doc["embedded"]} == set(inits) - set(entries)
        assert not [k for k in doc["unused_params"] if not k.endswith("position_ids")]
        # Every parameter feeds exactly one initializer (no tied weights in SD 1.5).
        used = [e["diffusers"] for e in doc["initializers"]]
        assert len(used) == len(set(used)) == doc["param_count"] - len(doc["unused_params"])
        size = (TEMPLATES / arch / graph / "model.onnx").stat().st_size
        assert size < (2_000_000 if arch == "tiny" else 4_000_000), f"{arch}/{graph} template is {size} bytes"


@pytest.mark.parametrize("graph", TINY_GRAPHS)
def test_tiny_template_regenerates(tmp_path, graph, tiny_torch_dir, tiny_inpaint_torch_dir):
    from tooling.template import write_templates

    src, sub = _source(graph)
    torch_dir = tiny_inpaint_torch_dir if graph == "unet_inpaint" else tiny_torch_dir
    write_templates(src, str(torch_dir), tmp_path, only=[sub], log=lambda *_: None)
    assert (tmp_path / graph / "weights.json").read_text() == (TEMPLATES / "tiny" / graph / "weights.json").read_text()
    assert (tmp_path / graph / "model.onnx").read_bytes() == (TEMPLATES / "tiny" / graph / "model.onnx").read_bytes()


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
@pytest.mark.parametrize("graph", TINY_GRAPHS)
def test_template_with_fp32_checkpoint_is_bit_identical(graph, layout, comps):
    from tooling.ldm_layout import components_to_ldm
    from tooling.template import session_with_checkpoint

    components = comps[graph]
    if layout == "ldm":
        ckpt = {k: v.numpy() for k, v in components_to_ldm(components).items()}
    else:
        ckpt = {f"{c}.{k}": v.detach().numpy() for c in ("unet", "vae", "text_encoder")
                for k, v in components[c].state_dict().items()}
    inputs = _inputs(graph, components)
    got = session_with_checkpoint(TEMPLATES / "tiny" / graph, ckpt, layout=layout).run(None, inputs)
    want = _reference_outputs(graph, inputs)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.array_equal(a, b), f"max difference {np.abs(a - b).max()}"


def _load_safetensors(path):
    """{key: float32 numpy} of a file (bfloat16 through torch; non-float entries as they are)."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = t.float().numpy() if t.is_floating_point() else t.numpy()
    return out


# Measured maxima of |template(fp16 weights) - exported graph| relative to max |exported graph output|.
FP16_REL_TOL = {"text_encoder": 5e-3, "unet": 5e-3, "vae_encoder": 5e-3, "vae_decoder": 5e-3}


@pytest.mark.parametrize("graph", ["text_encoder", "unet", "vae_encoder", "vae_decoder"])
def test_template_with_fp16_checkpoint_fixture(graph, comps):
    from tooling.template import session_with_checkpoint

    ckpt = _load_safetensors(CHECKPOINTS / "tiny-ldm-fp16.safetensors")
    doc = _doc("tiny", graph)
    assert not [e for e in doc["initializers"] if e["ldm"].startswith("model_ema.")]
    inputs = _inputs(graph, comps[graph])
    got = session_with_checkpoint(TEMPLATES / "tiny" / graph, ckpt).run(None, inputs)
    want = _reference_outputs(graph, inputs)
    for a, b in zip(got, want):
        rel = float(np.abs(a - b).max() / np.abs(b).max())
        print(f"{graph}: fp16 checkpoint, max |diff| {np.abs(a - b).max():.3g}, relative {rel:.3g}")
        assert 0 < rel < FP16_REL_TOL[graph]


def test_standalone_bf16_vae_replaces_the_checkpoint_vae(comps):
    """The standalone VAE file's keys are the LDM keys without ``first_stage_model.``."""
    from tooling.template import session_with_checkpoint

    vae = _load_safetensors(CHECKPOINTS / "vae-standalone-bf16.safetensors")
    ckpt = {"first_stage_model." + k: v for k, v in vae.items()}
    for graph in ("vae_encoder", "vae_decoder"):
        inputs = _inputs(graph, comps[graph])
        (got,) = session_with_checkpoint(TEMPLATES / "tiny" / graph, ckpt).run(None, inputs)
        (want,) = _reference_outputs(graph, inputs)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        print(f"{graph}: bf16 standalone VAE, relative max difference {rel:.3g}")
        assert 0 < rel < 5e-2


def test_template_without_weights_is_refused():
    import onnxruntime as ort

    with pytest.raises(Exception, match="easel-checkpoint-weights|external|External"):
        ort.InferenceSession(str(TEMPLATES / "tiny" / "vae_decoder" / "model.onnx"), providers=["CPUExecutionProvider"])


def test_template_refuses_a_missing_or_misshapen_weight(tiny_components):
    """Omitting one weight, or giving it the wrong shape, fails at session creation; loading from bytes works."""
    import onnxruntime as ort

    from tooling.ldm_layout import components_to_ldm
    from tooling.template import initializer_value

    ckpt = {k: v.numpy() for k, v in components_to_ldm(tiny_components).items()}
    path = TEMPLATES / "tiny" / "vae_decoder" / "model.onnx"
    entries = _doc("tiny", "vae_decoder")["initializers"]
    arrays = [initializer_value(e, ckpt[e["ldm"]]) for e in entries]
    names = [e["name"] for e in entries]

    def session(names, arrays, model):
        so = ort.SessionOptions()
        so.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays])
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    with pytest.raises(Exception, match="External data path"):
        session(names[1:], arrays[1:], str(path))
    with pytest.raises(Exception, match="dimensions do not match"):
        session(names, [arrays[0].reshape(-1)] + arrays[1:], str(path))
    inputs = _inputs("vae_decoder", tiny_components)
    (got,) = session(names, arrays, path.read_bytes()).run(None, inputs)
    assert np.array_equal(got, _reference_outputs("vae_decoder", inputs)[0])


def test_fp16_fixture_is_the_tiny_model(tiny_components):
    import torch

    from tooling.ldm_layout import components_to_ldm
    from tooling.ref_checkpoints import EMA_DECAY, EMA_NUM_UPDATES

    from safetensors.torch import load_file

    got = load_file(str(CHECKPOINTS / "tiny-ldm-fp16.safetensors"))
    want = components_to_ldm(tiny_components)
    extra = sorted(set(got) - set(want))
    assert extra == sorted([
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
        "model_ema.decay", "model_ema.num_updates",
        "model_ema.diffusion_modelinput_blocks00weight", "model_ema.diffusion_modelinput_blocks00bias",
    ])
    assert float(got["model_ema.decay"]) == pytest.approx(EMA_DECAY) and int(got["model_ema.num_updates"]) == EMA_NUM_UPDATES
    assert not set(want) - set(got)
    for k, v in want.items():
        expect = v if k in ("betas", "alphas_cumprod") else v.to(torch.float16)
        assert got[k].dtype == expect.dtype and torch.equal(got[k], expect), k
    w = want["model.diffusion_model.input_blocks.0.0.weight"].to(torch.float16)
    assert torch.equal(got["model_ema.diffusion_modelinput_blocks00weight"], -w)


def test_checkpoint_cases_are_labelled():
    from tooling.ref_checkpoints import _describe

    index = json.loads((CHECKPOINTS / "cases.json").read_text())
    files = [c["file"] for c in index["cases"]]
    assert sorted(files) == sorted(p.name for p in CHECKPOINTS.glob("*.safetensors"))
    families = {}
    for c in index["cases"]:
        d = _describe(CHECKPOINTS / c["file"])
        assert {k: c[k] for k in d} == d, c["file"]
        families[c["file"]] = c["classify"]["family"]
    assert families["tiny-ldm-fp16.safetensors"] == "sd1"
    assert families["sdxl-keys.safetensors"] == "sdxl"
    assert families["sd2-keys.safetensors"] == "sd2"
    assert families["vae-standalone-bf16.safetensors"] == "vae-only"
    assert families["lora-kohya.safetensors"] == "unknown"
    inpaint = next(c for c in index["cases"] if c["file"] == "sd15-inpaint-keys.safetensors")
    assert inpaint["classify"]["family"] == "sd1" and inpaint["classify"]["in_channels"] == 9
    total = sum(p.stat().st_size for p in CHECKPOINTS.iterdir())
    assert total < 24_000_000  # the fp32 tiny checkpoint (13 MB) is the bit-exact loader fixture


def test_sd15_templates_cover_the_sd15_architecture():
    """Every SD 1.5 state dict entry (diffusers and LDM key, shape) is in exactly one sd15 template, or unused."""
    import torch

    from tooling.random_model import build_modules, widen_to_inpaint  # noqa: F401
    from tooling.template import RUNS, ldm_keys

    with torch.device("meta"):
        components = build_modules("sd15")
    keys = ldm_keys(components)
    shapes = {f"{c}.{k}": list(v.shape) for c in ("unet", "vae", "text_encoder")
              for k, v in components[c].state_dict().items()}
    for graph in ("text_encoder", "unet", "vae_encoder", "vae_decoder"):
        doc = _doc("sd15", graph)
        used = {e["diffusers"]: e for e in doc["initializers"]}
        owned = {k for k in shapes if k.startswith(RUNS[graph])}
        assert set(used) | set(doc["unused_params"]) == owned
        for k, e in used.items():
            assert e["diffusers_shape"] == shapes[k]
            assert [e["ldm"], e["ldm_shape"]] == list(keys[k])
    inpaint = {e["diffusers"]: e for e in _doc("sd15", "unet_inpaint")["initializers"]}
    base = {e["diffusers"]: e for e in _doc("sd15", "unet")["initializers"]}
    assert set(inpaint) == set(base)
    assert inpaint["unet.conv_in.weight"]["shape"] == [320, 9, 3, 3]
    assert [k for k in base if base[k]["shape"] != inpaint[k]["shape"]] == ["unet.conv_in.weight"]


def test_template_command_refuses_a_torch_model_that_is_not_the_source(tmp_path, tiny_inpaint_torch_dir):
    from conftest import run_tool

    r = run_tool("template", str(MODELS_DIR / "tiny-sd"), str(tiny_inpaint_torch_dir), str(tmp_path / "out"))
    assert r.returncode == 2 and "is not the model" in r.stderr and "unet" in r.stderr
    assert not (tmp_path / "out").exists()


def test_matching_by_value_is_unambiguous_or_fails(tmp_path):
    """Equal parameters (as constant-initialised ones in real models) are told apart by name or refused."""
    import onnx
    from onnx import helper, numpy_helper

    from tooling import ToolError
    from tooling.template import _Index, match_graph

    ones = np.ones((3, 2), np.float32)
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    params = {"m.a.weight": ones, "m.b.weight": ones.copy(), "m.c.weight": w, "m.d.bias": np.full(2, 0.5, np.float32)}

    def graph(inits):
        nodes = [helper.make_node("Identity", [n], [n + "_out"]) for n in inits]
        return helper.make_model(helper.make_graph(
            nodes, "g", [], [helper.make_tensor_value_info(n + "_out", onnx.TensorProto.FLOAT, None) for n in inits],
            initializer=[numpy_helper.from_array(v, n) for n, v in inits.items()]))

    mapped, embedded, _ = match_graph(graph({"m.a.weight": ones, "onnx::MatMul_7": w.T.copy(),
                                             "onnx::Mul_8": params["m.d.bias"].reshape(2, 1, 1),
                                             "onnx::Add_9": np.full(2, 0.25, np.float32)}),
                                      tmp_path, params, _Index(params))
    assert mapped == {"m.a.weight": ("m.a.weight", False), "onnx::MatMul_7": ("m.c.weight", True),
                      "onnx::Mul_8": ("m.d.bias", False)}
    assert [e["name"] for e in embedded] == ["onnx::Add_9"]
    with pytest.raises(ToolError, match="equals several parameters"):
        match_graph(graph({"onnx::MatMul_3": ones}), tmp_path, params, _Index(params))
