"""Export of torch sub-models to the ONNX folder layout Easel runs (Optimum-style names and types).

Owns: the wrapper modules that fix each graph's inputs/outputs, the torch.onnx export itself (legacy
TorchScript exporter, opset 17), external data for graphs over 2 GB (``model.onnx_data``, one file), the
float16 conversion and int8 dynamic quantization of exported graphs, and writing the whole folder
(``model_index.json``, ``config.json`` beside each ``model.onnx``, ``tokenizer/``, ``scheduler/``).

Graphs (float32 unless converted):

============  =====================================================  ==================================
graph         inputs                                                 outputs
============  =====================================================  ==================================
text_encoder  ``input_ids`` int64 [batch, sequence]                  ``last_hidden_state``, ``pooler_output``
unet          ``sample`` [b,C,h,w], ``timestep`` float rank 0,       ``out_sample`` [b,4,h,w]
              ``encoder_hidden_states`` [b, sequence, dim]
vae_encoder   ``sample`` [b,3,H,W]                                   ``latent_parameters`` [b,8,H/8,W/8]
                                                                     (posterior mean ‖ logvar)
vae_decoder   ``latent_sample`` [b,4,h,w]                            ``sample`` [b,3,8h,8w]
============  =====================================================  ==================================

The UNet's channel count C is static: 4, or 9 for inpainting UNets (latents ‖ mask ‖ masked-image
latents); their ``model_index.json`` names ``OnnxStableDiffusionInpaintPipeline``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from . import ToolError
from .configs import model_index, write_json

OPSET = 17
PROTOBUF_LIMIT = 2_000_000_000  # a little under 2 GiB, the protobuf message limit
EXTERNAL_DATA_NAME = "model.onnx_data"
SUBMODELS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


class TextEncoderGraph(torch.nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        out = self.text_encoder(input_ids=input_ids, return_dict=True)
        return out.last_hidden_state, out.pooler_output


class UNetGraph(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class VaeEncoderGraph(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        # The raw moments: mean (4 channels) followed by log-variance (4 channels), unclamped.
        return self.vae.encode(sample, return_dict=False)[0].parameters


class VaeDecoderGraph(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


def graph_module(name: str, components: dict) -> torch.nn.Module:
    if name == "text_encoder":
        return TextEncoderGraph(components["text_encoder"]).eval()
    if name == "unet":
        return UNetGraph(components["unet"]).eval()
    if name == "vae_encoder":
        return VaeEncoderGraph(components["vae"]).eval()
    if name == "vae_decoder":
        return VaeDecoderGraph(components["vae"]).eval()
    raise KeyError(name)


def example_inputs(name: str, components: dict, batch: int = 2, latent_hw=(12, 10), seed: int = 1234) -> dict:
    """Inputs for tracing and validation.

    The default latent size is deliberately not a multiple of 8: the UNet then routes the skip tensors'
    sizes into its upsamplers, so the traced graph works for every size that is a multiple of 8 pixels,
    not only multiples of 64.
    """
    g = torch.Generator("cpu").manual_seed(seed)
    h, w = latent_hw
    if name == "text_encoder":
        vocab = components["text_encoder"].config.vocab_size
        ids = torch.randint(0, vocab - 2, (batch, 77), generator=g)
        ids[:, 0] = 49406
        ids[:, 20:] = 49407
        return {"input_ids": ids.to(torch.int64)}
    if name == "unet":
        cfg = components["unet"].config
        dim = cfg.cross_attention_dim
        return {
            "sample": torch.randn(batch, cfg.in_channels, h, w, generator=g),
            "timestep": torch.tensor(981.0, dtype=torch.float32),
            "encoder_hidden_states": torch.randn(batch, 77, dim, generator=g),
        }
    if name == "vae_encoder":
        return {"sample": torch.rand(batch, 3, 8 * h, 8 * w, generator=g) * 2 - 1}
    if name == "vae_decoder":
        lc = components["vae"].config.latent_channels
        return {"latent_sample": torch.randn(batch, lc, h, w, generator=g)}
    raise KeyError(name)


IO_SPEC = {
    "text_encoder": (
        ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
            "pooler_output": {0: "batch_size"},
        },
    ),
    "unet": (
        ["sample", "timestep", "encoder_hidden_states"],
        ["out_sample"],
        {
            "sample": {0: "batch_size", 2: "height", 3: "width"},
            "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
            "out_sample": {0: "batch_size", 2: "height", 3: "width"},
        },
    ),
    "vae_encoder": (
        ["sample"],
        ["latent_parameters"],
        {
            "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            "latent_parameters": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
        },
    ),
    "vae_decoder": (
        ["latent_sample"],
        ["sample"],
        {
            "latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
        },
    ),
}


def save_onnx(model, path: Path) -> None:
    """Save a ModelProto as ``path``; graphs over the protobuf limit get one ``model.onnx_data`` beside it."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.parent / EXTERNAL_DATA_NAME):
        if stale.exists():
            stale.unlink()
    if not is_big(model):
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL_DATA_NAME,
            size_threshold=1024,
        )
        # onnx creates the data file private (0600); give it the same mode as model.onnx.
        os.chmod(path.parent / EXTERNAL_DATA_NAME, path.stat().st_mode & 0o777)


def _size_of(model) -> int:
    """Bytes of weights held in the message (ModelProto.ByteSize() itself fails beyond 2 GiB)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.raw_data else t.ByteSize()
    for node in model.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                total += len(a.t.raw_data) if a.t.raw_data else a.t.ByteSize()
    return total


def is_big(model) -> bool:
    """True when the model cannot be one protobuf file (weights near or over the 2 GiB limit)."""
    return _size_of(model) >= PROTOBUF_LIMIT - 50_000_000


def export_graph(name: str, components: dict, out_path: Path) -> None:
    import onnx

    module = graph_module(name, components)
    inputs = example_inputs(name, components)
    input_names, output_names, axes = IO_SPEC[name]
    args = tuple(inputs[k] for k in input_names)
    with tempfile.TemporaryDirectory(prefix=f"easel-{name}-") as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(tmp_path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        model = onnx.load(str(tmp_path), load_external_data=True)
        save_onnx(model, out_path)


def convert_fp16(path: Path) -> None:
    """Convert one exported graph in place to float16, inputs and outputs included (for GPUs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path), load_external_data=True)
    big = is_big(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model16 = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=big)
    save_onnx(model16, path)


def quantize_int8(path: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized at run time) of one graph, in place.

    MatMul (attention, feed-forward) and Gather (token embedding) are quantized; convolutions stay float32,
    because ONNX Runtime's ConvInteger is slower than its float convolution on CPU.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
    with tempfile.TemporaryDirectory(prefix="easel-int8-") as tmp:
        src = Path(tmp) / "in.onnx"
        dst = Path(tmp) / "out.onnx"
        model = onnx.load(str(path), load_external_data=True)
        big = is_big(model)
        if big:
            onnx.save_model(model, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
                            location="in.onnx_data")
        else:
            onnx.save_model(model, str(src))
        del model
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gather"],
            per_channel=False,
            # 7-bit weights: ONNX Runtime's u8s8 kernels on AVX2/AVX-512 CPUs without VNNI add
            # pairs of products in saturating int16 (VPMADDUBSW), which broke the text encoder
            # (relative error 0.23 on such a CPU, tolerance 0.2). A converted model may run on any
            # CPU, so always leave that headroom (ONNX Runtime's advice for non-VNNI machines).
            reduce_range=True,
            use_external_data_format=big,
            extra_options={"MatMulConstBOnly": True},
        )
        save_onnx(onnx.load(str(dst), load_external_data=True), path)


def write_layout(
    components: dict,
    out_dir: Path,
    scheduler_config: dict,
    tokenizer_src: Path | None,
    fp16: bool = False,
    quantize: str | None = None,
    log=print,
) -> dict:
    """Export all four graphs plus configs, tokenizer and scheduler into ``out_dir``.

    ``tokenizer_src`` is a folder with the model's own ``vocab.json``/``merges.txt`` (None: derive the
    standard CLIP files). Returns per-graph timing and sizes.
    """
    import time

    from .clip_vocab import write_tokenizer_dir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {}
    vae_cfg = dict(components["vae"].config)
    configs = {
        "text_encoder": components["text_encoder"].config.to_dict(),
        "unet": dict(components["unet"].config),
        "vae_encoder": vae_cfg,
        "vae_decoder": vae_cfg,
    }
    for name in SUBMODELS:
        t0 = time.perf_counter()
        path = out_dir / name / "model.onnx"
        log(f"exporting {name} ...")
        export_graph(name, components, path)
        if fp16:
            convert_fp16(path)
        if quantize == "int8" and name in ("unet", "text_encoder"):
            quantize_int8(path)
        cfg = {k: v for k, v in configs[name].items() if not k.startswith("_use_default")}
        write_json(path.parent / "config.json", _jsonable(cfg))
        report[name] = {"seconds": round(time.perf_counter() - t0, 2), "bytes": folder_bytes(path.parent)}
    tok_dir = out_dir / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    if tokenizer_src is not None and (tokenizer_src / "vocab.json").is_file() and (tokenizer_src / "merges.txt").is_file():
        tmp_tok = Path(tempfile.mkdtemp(prefix="easel-tok-"))
        try:
            shutil.copy(tokenizer_src / "vocab.json", tmp_tok / "vocab.json")
            shutil.copy(tokenizer_src / "merges.txt", tmp_tok / "merges.txt")
            write_tokenizer_dir(tok_dir, tmp_tok / "vocab.json", tmp_tok / "merges.txt")
        finally:
            shutil.rmtree(tmp_tok, ignore_errors=True)
    else:
        write_tokenizer_dir(tok_dir)
    sched_dir = out_dir / "scheduler"
    sched_dir.mkdir(parents=True, exist_ok=True)
    (sched_dir / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2) + "\n", encoding="utf-8")
    inpaint = int(components["unet"].config.in_channels) == 9  # latents 4 + mask 1 + masked-image latents 4
    write_json(
        out_dir / "model_index.json",
        model_index("onnx", scheduler_config.get("_class_name", "PNDMScheduler"), inpaint=inpaint),
    )
    return report


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def folder_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
