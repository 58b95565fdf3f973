"""Weight-free ONNX graphs ("templates") and the map from each graph weight to a checkpoint tensor.

Owns: turning an ONNX folder exported by this tooling (``export_onnx``) into one template per graph, whose
weight initializers carry no data, plus ``weights.json`` saying which checkpoint tensor each of them is;
matching ONNX initializers to torch parameters by value; the loader rule that turns a checkpoint tensor
into an initializer value (``initializer_value``), shared by the tests.

Command: ``sdtool template SRC_ONNX TORCH OUT [--only SUB ...] [--verify]``. ``SRC_ONNX`` is an ONNX folder made by
``sdtool random``/``convert`` (float32); ``TORCH`` is the diffusers folder it was exported from, or
``random:ARCH:SEED`` to rebuild it (``random:sd15:1``). When ``SRC_ONNX/easel-model.json`` records weight
hashes, the torch model must match them. Writes ``OUT/<graph>/model.onnx`` and ``OUT/<graph>/weights.json``
for ``text_encoder``, ``unet`` (``unet_inpaint`` when the UNet has 9 input channels), ``vae_encoder``,
``vae_decoder``. ``--verify`` then runs every template in onnxruntime with the torch weights supplied in
the LDM layout (views, no copies) and requires outputs bit-identical to ``SRC_ONNX``'s graphs.

Template: the exported graph unchanged except that every initializer that comes from a checkpoint weight
is an initializer with external data (``data_location = EXTERNAL``, ``location = "easel-checkpoint-weights"``,
a file that does not exist): the engine supplies its value at session creation (ONNX Runtime's
AddExternalInitializers). Every other initializer (shape constants, the sinusoidal time-embedding
frequencies, ...) stays embedded, as do ``Constant`` nodes. Graphs exported with external data
(``model.onnx_data``) give a single-file template: whatever stays embedded is small.

Matching: an initializer is a parameter when its bytes equal the parameter's (any shape with the same
element count: a GroupNorm scale ``[C]`` appears as ``[C,1,1]`` where the exporter decomposed the norm), or
equal a 2-D parameter's transpose (``nn.Linear`` weights become ``MatMul`` operands ``[in,out]``). An
initializer named like a parameter (``unet.conv_in.weight``) is matched to that parameter first. Several
parameters with the same bytes (constant-initialised parameters in real models), or a 2-D parameter equal
to its own transpose, make the match ambiguous and fail, unless the name decides: make templates from a
model whose parameters are all distinct and not symmetric, as the seeded random models are (uniform draws
for every parameter, biases and norm scales included). Parameters that no initializer uses are listed (and are
an error for the parts of the model a graph runs), as are float initializers that match no parameter
(e.g. folded from a parameter by the exporter: none are known in SD 1.5's graphs).

``weights.json`` (``format: "easel-template-weights"``, ``version: 1``)::

    {
      "format": "easel-template-weights", "version": 1,
      "graph": "unet", "architecture": {...config facts...},
      "location": "easel-checkpoint-weights",
      "initializers": [                       # graph order; every external initializer of model.onnx
        {"name": "onnx::MatMul_9120",         # ONNX initializer name
         "diffusers": "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
         "ldm": "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
         "diffusers_shape": [320, 320],        # shape in a diffusers state dict (and torch)
         "ldm_shape": [320, 320],              # shape in an original single-file checkpoint
         "transpose": true,                    # 2-D transpose after viewing as diffusers_shape
         "shape": [320, 320],                  # the initializer's shape
         "dtype": "float32"},                  # the initializer's element type
        ...],
      "embedded": [{"name": ..., "shape": [...], "dtype": ..., "bytes": N, "why": ...}],
      "unused_params": ["text_encoder.text_model.embeddings.position_ids", ...],
      "param_count": N                         # parameters of the torch component(s) this graph runs
    }

The "diffusers" key carries the component prefix (``unet.``, ``vae.``, ``text_encoder.``); in a diffusers
folder the file ``<component>/diffusion_pytorch_model.safetensors`` (``model.safetensors`` for the text
encoder) holds it without the prefix. Loader rule (``initializer_value``): take the checkpoint tensor (its
shape must be ``ldm_shape`` or ``diffusers_shape``), convert it to ``dtype``, reshape it to
``diffusers_shape``, transpose it when ``transpose``, reshape to ``shape``. The only ``ldm_shape`` that
differs from ``diffusers_shape`` in SD 1.x is the VAE mid-block attention's q/k/v/proj_out weight
(``[C,C,1,1]`` 1x1 convolutions in the LDM layout, ``[C,C]`` Linear in diffusers).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from . import ToolError

LOCATION = "easel-checkpoint-weights"
FORMAT = "easel-template-weights"
VERSION = 1
GRAPHS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")

# Which torch component a graph runs, and which of its parameters (by prefix) the graph must use.
COMPONENT = {"text_encoder": "text_encoder", "unet": "unet", "vae_encoder": "vae", "vae_decoder": "vae"}
RUNS = {
    "text_encoder": ("text_encoder.",),
    "unet": ("unet.",),
    "vae_encoder": ("vae.encoder.", "vae.quant_conv."),
    "vae_decoder": ("vae.decoder.", "vae.post_quant_conv."),
}

_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 7: "int64", 6: "int32", 9: "bool"}


# --------------------------------------------------------------------------------------------- reading


def _np_dtype(data_type: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(data_type)


def initializer_array(tensor, model_dir: Path) -> np.ndarray:
    """An initializer's value, read from ``model_dir`` when it has external data (memory-mapped)."""
    from onnx import numpy_helper

    if tensor.data_location != 1:  # TensorProto.EXTERNAL
        return numpy_helper.to_array(tensor)
    info = {e.key: e.value for e in tensor.external_data}
    dtype = np.dtype(_np_dtype(tensor.data_type))
    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    offset = int(info.get("offset", 0))
    arr = np.memmap(model_dir / info["location"], dtype=dtype, mode="r", offset=offset, shape=(count,))
    return arr.reshape(tuple(tensor.dims))


def _digest(arr: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(str(arr.dtype).encode())
    h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- key maps


class _Shape:
    """Stands in for a tensor in ldm_layout's key functions: carries the key and follows indexing on the shape."""

    def __init__(self, key: str, shape: tuple):
        self.key, self.shape = key, tuple(shape)

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, idx):
        return _Shape(self.key, np.broadcast_to(np.float32(0), self.shape)[idx].shape)


def ldm_keys(components: dict) -> dict:
    """``{diffusers key with component prefix: (ldm key, ldm shape)}`` for every state dict entry."""
    from . import ldm_layout

    out = {}
    unet = components["unet"]
    vae = components["vae"]
    parts = [
        ("unet", ldm_layout.unet_to_ldm, unet, (unet.config.layers_per_block, len(unet.config.block_out_channels))),
        ("vae", ldm_layout.vae_to_ldm, vae, (len(vae.config.block_out_channels),)),
        ("text_encoder", ldm_layout.text_encoder_to_ldm, components["text_encoder"], ()),
    ]
    for comp, fn, module, args in parts:
        sd = {k: _Shape(f"{comp}.{k}", v.shape) for k, v in module.state_dict().items()}
        for ldm_key, tag in fn(sd, *args).items():
            out[tag.key] = (ldm_key, list(tag.shape))
    return out


def state_arrays(components: dict, comp: str) -> dict:
    """``{prefixed key: float32 numpy view}`` of one torch component's state dict (floating entries only)."""
    import torch

    out = {}
    for k, v in components[comp].state_dict().items():
        if v.is_floating_point():
            out[f"{comp}.{k}"] = v.detach().to(torch.float32).contiguous().cpu().numpy()
    return out


def all_state_keys(components: dict, comp: str) -> list:
    return [f"{comp}.{k}" for k in components[comp].state_dict()]


# --------------------------------------------------------------------------------------------- matching


class _Index:
    """Parameters by the digest of their bytes (as is and, for 2-D ones, transposed), per element type."""

    def __init__(self, params: dict):
        self.params = params
        self._by_dtype = {}

    def lookup(self, dtype: np.dtype, digest: str) -> list:
        if dtype not in self._by_dtype:
            table = {}
            for key, p in self.params.items():
                q = p.astype(dtype, copy=False)
                table.setdefault(_digest(q), []).append((key, False))
                if q.ndim == 2 and q.shape[0] > 1 and q.shape[1] > 1:
                    table.setdefault(_digest(q.T), []).append((key, True))
            self._by_dtype[dtype] = table
        return self._by_dtype[dtype].get(digest, [])


def _name_match(name: str, arr: np.ndarray, params: dict):
    p = params.get(name)
    if p is None or p.size != arr.size:
        return None
    if np.array_equal(p.astype(arr.dtype, copy=False).reshape(-1), arr.reshape(-1)):
        return (name, False)
    return None


def match_graph(model, model_dir: Path, params: dict, index: _Index) -> tuple[dict, list, list]:
    """``({init name: (param key, transpose)}, [embedded descriptions], [constant nodes holding a parameter])``."""
    from onnx import numpy_helper

    mapped, embedded = {}, []
    for t in model.graph.initializer:
        arr = initializer_array(t, model_dir)
        dtype_name = _DTYPES.get(t.data_type, str(t.data_type))
        desc = {"name": t.name, "shape": list(t.dims), "dtype": dtype_name, "bytes": int(arr.nbytes)}
        if arr.dtype.kind != "f" or arr.size <= 1:
            embedded.append({**desc, "why": "not a floating tensor" if arr.dtype.kind != "f" else "scalar"})
            continue
        hit = _name_match(t.name, arr, params)
        if hit is None:
            cands = index.lookup(arr.dtype, _digest(arr))
            if len(cands) > 1:
                raise ToolError(
                    f"initializer {t.name} {list(t.dims)} equals several parameters: "
                    f"{', '.join(k + (' (transposed)' if tr else '') for k, tr in cands)}; cannot map it unambiguously"
                )
            hit = cands[0] if cands else None
        if hit is None:
            embedded.append({**desc, "why": "matches no parameter (as is, reshaped or transposed)"})
            continue
        key, transpose = hit
        p = params[key]
        check = p.T if transpose else p
        if not np.array_equal(check.astype(arr.dtype, copy=False).reshape(-1), np.asarray(arr).reshape(-1)):
            raise ToolError(f"initializer {t.name}: digest matched {key} but values differ")
        mapped[t.name] = hit
    constants = []
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for a in node.attribute:
            if a.HasField("t"):
                arr = numpy_helper.to_array(a.t)
                if arr.dtype.kind == "f" and arr.size > 1 and index.lookup(arr.dtype, _digest(arr)):
                    constants.append(node.output[0])
    return mapped, embedded, constants


# --------------------------------------------------------------------------------------------- writing


def make_template(model, model_dir: Path, mapped: dict):
    """The model with mapped initializers' data removed (external, nowhere) and the rest embedded."""
    from onnx import TensorProto, numpy_helper

    for i, t in enumerate(model.graph.initializer):
        if t.name in mapped:
            dims, name, data_type = list(t.dims), t.name, t.data_type
            t.Clear()
            t.name, t.data_type = name, data_type
            t.dims.extend(dims)
            t.data_location = TensorProto.EXTERNAL
            e = t.external_data.add()
            e.key, e.value = "location", LOCATION
        elif t.data_location == TensorProto.EXTERNAL:
            arr = np.array(initializer_array(t, model_dir))
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    return model


def arch_facts(components: dict, graph: str) -> dict:
    comp = components[COMPONENT[graph]]
    cfg = comp.config
    if graph == "text_encoder":
        return {"hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers, "vocab_size": cfg.vocab_size}
    if graph == "unet":
        return {"in_channels": cfg.in_channels, "block_out_channels": list(cfg.block_out_channels),
                "layers_per_block": cfg.layers_per_block, "cross_attention_dim": cfg.cross_attention_dim}
    return {"block_out_channels": list(cfg.block_out_channels), "latent_channels": cfg.latent_channels,
            "layers_per_block": cfg.layers_per_block}


def graph_dir_name(components: dict, graph: str) -> str:
    if graph == "unet" and int(components["unet"].config.in_channels) == 9:
        return "unet_inpaint"
    return graph


def build_template(components: dict, src: Path, graph: str, out_dir: Path, keymap: dict | None = None,
                   state: dict | None = None, log=print) -> dict:
    """Write ``out_dir/model.onnx`` and ``out_dir/weights.json`` for one graph; returns the weights.json dict."""
    import onnx

    src_path = Path(src) / graph / "model.onnx"
    if not src_path.is_file():
        raise ToolError(f"{src_path}: not found")
    keymap = keymap or ldm_keys(components)
    comp = COMPONENT[graph]
    params = state if state is not None else state_arrays(components, comp)
    model = onnx.load(str(src_path), load_external_data=False)
    mapped, embedded, constants = match_graph(model, src_path.parent, params, _Index(params))
    if constants:
        raise ToolError(f"{src_path}: Constant nodes hold parameter values: {', '.join(constants[:5])}")
    used = {k for k, _ in mapped.values()}
    runs = RUNS[graph]
    owned = [k for k in all_state_keys(components, comp) if k.startswith(runs)]
    unused = [k for k in owned if k not in used]
    missing = [k for k in unused if k in params]  # floating parameters the graph should have used
    # The text encoder's position_ids buffer is integer and becomes a Constant; floating ones must be used.
    if missing:
        raise ToolError(f"{src_path}: parameters without an initializer: {', '.join(missing[:8])}"
                        f"{' ...' if len(missing) > 8 else ''}")
    entries = []
    for t in model.graph.initializer:
        if t.name not in mapped:
            continue
        key, transpose = mapped[t.name]
        ldm_key, ldm_shape = keymap[key]
        entries.append({
            "name": t.name,
            "diffusers": key,
            "ldm": ldm_key,
            "diffusers_shape": list(params[key].shape),
            "ldm_shape": ldm_shape,
            "transpose": transpose,
            "shape": list(t.dims),
            "dtype": _DTYPES[t.data_type],
        })
    template = make_template(model, src_path.parent, mapped)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(template, str(out_dir / "model.onnx"))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "graph": graph,
        "architecture": arch_facts(components, graph),
        "location": LOCATION,
        "initializers": entries,
        "embedded": embedded,
        "unused_params": unused,
        "param_count": len(owned),
    }
    (out_dir / "weights.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    log(f"{graph}: {len(entries)} initializers from the checkpoint ({sum(e['transpose'] for e in entries)} transposed, "
        f"{sum(e['shape'] != e['diffusers_shape'] and not e['transpose'] for e in entries)} reshaped), "
        f"{len(embedded)} embedded, {len(unused)} parameters unused; "
        f"template {(out_dir / 'model.onnx').stat().st_size / 1e6:.2f} MB")
    return doc


def load_components(torch_spec: str, src: Path, log=print) -> dict:
    """The torch model: a diffusers folder or ``random:ARCH:SEED``; checked against SRC's recorded hashes."""
    from .random_model import build_random, component_hashes, load_torch_folder

    if torch_spec.startswith("random:"):
        _, arch_name, seed = torch_spec.split(":")
        log(f"building random {arch_name} model, seed {seed} ...")
        components = build_random(arch_name, int(seed))
    else:
        components = load_torch_folder(Path(torch_spec))
    record = Path(src) / "easel-model.json"
    if record.is_file():
        want = json.loads(record.read_text()).get("source", {}).get("weights_sha256")
        if want:
            have = component_hashes(components)
            bad = [k for k in want if have.get(k) != want[k]]
            if bad:
                raise ToolError(f"{torch_spec} is not the model {src} was exported from ({', '.join(bad)} differ)")
    return components


def verify_templates(src: Path, components: dict, out: Path, only=None, log=print) -> dict:
    """Run each template with the torch model's weights given in the LDM layout and compare with ``src``.

    Returns ``{graph folder: max |difference|}`` over all outputs (0.0: bit-identical).
    """
    import gc

    import onnxruntime as ort

    from .export_onnx import example_inputs

    keymap = ldm_keys(components)
    result = {}
    for graph in only or GRAPHS:
        comp = COMPONENT[graph]
        name = graph_dir_name(components, graph)
        # The checkpoint as an LDM-layout dict of views on the torch weights (no copies; sd15 is 4 GB).
        ckpt = {}
        for key, arr in state_arrays(components, comp).items():
            ldm_key, ldm_shape = keymap[key]
            ckpt[ldm_key] = arr.reshape(ldm_shape)
        inputs = {k: v.numpy() for k, v in example_inputs(graph, components, batch=1).items()}
        sess = ort.InferenceSession(str(Path(src) / graph / "model.onnx"), providers=["CPUExecutionProvider"])
        want = sess.run(None, inputs)
        del sess
        gc.collect()
        got = session_with_checkpoint(Path(out) / name, ckpt).run(None, inputs)
        diff = max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(got, want))
        same = all(np.array_equal(a, b) for a, b in zip(got, want))
        result[name] = diff
        log(f"{name}: template with LDM-layout weights vs {Path(src) / graph / 'model.onnx'}: "
            f"{'bit-identical' if same else f'max |difference| {diff:.3g}'}")
        del ckpt, got
        gc.collect()
    return result


def write_templates(src: Path, torch_spec: str, out: Path, only=None, verify=False, log=print) -> dict:
    src, out = Path(src), Path(out)
    components = load_components(torch_spec, src, log=log)
    keymap = ldm_keys(components)
    docs = {}
    cache = {}
    for graph in only or GRAPHS:
        comp = COMPONENT[graph]
        if comp not in cache:
            cache = {comp: state_arrays(components, comp)}  # one component's arrays at a time (sd15 UNet: 3.4 GB)
        name = graph_dir_name(components, graph)
        docs[name] = build_template(components, src, graph, out / name, keymap=keymap, state=cache[comp], log=log)
    cache = None
    if verify:
        diffs = verify_templates(src, components, out, only=only, log=log)
        if any(diffs.values()):
            raise ToolError(f"templates differ from {src}: {diffs}")
    return docs


# --------------------------------------------------------------------------------------------- loading


def initializer_value(entry: dict, tensor: np.ndarray) -> np.ndarray:
    """The loader rule: a checkpoint tensor (either layout, any float type) -> the initializer's value."""
    shape = tuple(tensor.shape)
    if shape not in (tuple(entry["ldm_shape"]), tuple(entry["diffusers_shape"])):
        raise ValueError(f"{entry['name']}: checkpoint tensor has shape {list(shape)}, expected "
                         f"{entry['ldm_shape']} or {entry['diffusers_shape']}")
    x = np.asarray(tensor).astype(entry["dtype"]).reshape(entry["diffusers_shape"])
    if entry["transpose"]:
        x = x.T
    return np.ascontiguousarray(x.reshape(entry["shape"]))


def session_with_checkpoint(template_dir: Path, checkpoint: dict, layout: str = "ldm", providers=None):
    """An onnxruntime session of a template, weights supplied from ``checkpoint`` ({key: numpy array})."""
    import onnxruntime as ort

    doc = json.loads((Path(template_dir) / "weights.json").read_text())
    names, values, keep = [], [], []
    for e in doc["initializers"]:
        arr = initializer_value(e, checkpoint[e[layout]])
        keep.append(arr)
        names.append(e["name"])
        values.append(ort.OrtValue.ortvalue_from_numpy(arr))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_external_initializers(names, values)
    sess = ort.InferenceSession(str(Path(template_dir) / "model.onnx"), so, providers=providers or ["CPUExecutionProvider"])
    sess._easel_keep = (keep, values)  # the session reads these buffers; keep them alive with it
    return sess
