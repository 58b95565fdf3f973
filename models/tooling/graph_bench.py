"""Times one UNet graph in ONNX Runtime, as it is and after ONNX Runtime's transformer optimizer, on the CPU.

Owns: the experiment behind docs/benchmarks.md's "attention fusion" rows. It answers whether our UNet
export's attention pattern (MatMul / Softmax / MatMul per head, as torch exports SDPA at opset 17) is why a
UNet call is slow and memory-hungry at 512x512 and larger: ONNX Runtime's optimizer can fuse each attention
into one ``MultiHeadAttention`` contrib operator, whose CPU kernel does not hold the full score matrix.

For each variant (``as-is``; ``fused``: ``optimize_model(model_type="unet")`` with the fusions the CPU
provider runs, NCHW convolutions, no GroupNorm/packed-QKV kernels, which are GPU-only; ``--fusion mha``
makes every attention a ``MultiHeadAttention`` over the unchanged Q/K/V projections) it creates a session
with ``--threads`` intra-op threads, runs the UNet on a seeded batch-2 input (classifier-free guidance) of the
given size ``--runs`` times, and prints per-run seconds, the peak RSS of the process that ran it (each variant runs
in a child process of its own) and the largest difference of the fused output from the as-is output.

Run from ``models/``: ``.venv/bin/python -m tooling.graph_bench /tmp/sd15/unet/model.onnx --size 256``.
Prints numbers; judges nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_fusion_options(mha_only: bool):
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("unet")
    # MultiHeadAttention for self-attention too keeps the Q, K and V projections as they are (the
    # weights keep their names, which LoRAs and checkpoint templates address them by); otherwise
    # self-attention becomes an Attention operator with one packed QKV weight.
    options.use_multi_head_attention = mha_only
    # Kernels the CPU execution provider does not have (CUDA-only contrib operators) stay unfused.
    options.enable_group_norm = False
    options.enable_skip_group_norm = False
    options.enable_bias_splitgelu = False
    options.enable_packed_qkv = False
    options.enable_packed_kv = False
    options.enable_nhwc_conv = False
    options.group_norm_channels_last = False
    options.enable_bias_add = False
    return options


def _patch_num_heads() -> None:
    """onnxruntime 1.31.1's UNet attention fusion reads the head count with ``int()`` of a 1-element
    array, which numpy 2.4 refuses; read it with ``.item()`` instead (same value)."""
    import importlib

    from onnxruntime.transformers import optimizer  # noqa: F401  (puts its folder on sys.path)

    # The optimizer imports its modules both as a package and by their bare names; patch both.
    classes = [importlib.import_module(m).FusionAttentionUnet
               for m in ("onnxruntime.transformers.fusion_attention_unet", "fusion_attention_unet")]
    original = classes[0].get_num_heads

    def get_num_heads(self, reshape_q, is_torch2=False):
        if not is_torch2:
            return original(self, reshape_q, is_torch2)
        parent = self.model.get_parent(reshape_q, 1)
        if parent is not None and parent.op_type == "Concat" and len(parent.input) == 4:
            value = self.model.get_constant_value(parent.input[2])
            if isinstance(value, np.ndarray) and value.size == 1:
                return max(int(value.item()), 0)
        return 0

    for cls in classes:
        cls.get_num_heads = get_num_heads


def fuse(src: Path, dst: Path, mha_only: bool) -> dict:
    """Writes the fused graph (weights as external data beside it) and returns the operator counts."""
    from onnxruntime.transformers import optimizer

    _patch_num_heads()

    model = optimizer.optimize_model(str(src), model_type="unet", optimization_options=cpu_fusion_options(mha_only),
                                     opt_level=0, use_gpu=False)
    counts = {}
    for node in model.model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    model.save_model_to_file(str(dst), use_external_data_format=True)
    return counts


def inputs(session, size: int, seed: int = 0) -> dict:
    """Seeded batch-2 inputs shaped as the session declares (channels, hidden size)."""
    rng = np.random.default_rng(seed)
    side = size // 8
    declared = {i.name: i.shape for i in session.get_inputs()}
    fixed = lambda dim, default: dim if isinstance(dim, int) else default  # noqa: E731
    channels = fixed(declared["sample"][1], 4)
    hidden = fixed(declared["encoder_hidden_states"][2], 768)
    return {
        "sample": rng.standard_normal((2, channels, side, side), dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, hidden), dtype=np.float32),
    }


def run_one(graph: Path, size: int, runs: int, threads: int, out: Path) -> None:
    """In a child process: time ``runs`` calls and save the last output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - started
    feed = inputs(session, size)
    timestep_input = next(i for i in session.get_inputs() if i.name not in feed)
    dtype = np.int64 if "int64" in timestep_input.type else np.float32
    shape = [2] if timestep_input.shape else []
    feed[timestep_input.name] = np.full(shape, 500, dtype=dtype)
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = session.run(None, feed)[0]
        times.append(time.perf_counter() - started)
    np.save(out.with_suffix(".npy"), result)
    # VmHWM starts afresh at exec (ru_maxrss would carry the parent's peak over).
    status = Path("/proc/self/status").read_text()
    peak_gb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024 / 1e9
    out.write_text(json.dumps({"load_s": load_s, "run_s": times, "peak_rss_gb": peak_gb}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unet", type=Path, help="a UNet model.onnx (float32)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fusion", choices=["mha", "attention"], default="mha",
                        help="mha: every attention a MultiHeadAttention (weights keep their names); attention: "
                             "self-attention an Attention operator with packed QKV weights")
    parser.add_argument("--child", nargs=2, metavar=("GRAPH", "OUT"), help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.child:
        run_one(Path(a.child[0]), a.size, a.runs, a.threads, Path(a.child[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="easel-graph-bench-") as tmp:
        tmp = Path(tmp)
        fused = tmp / "fused" / "model.onnx"
        fused.parent.mkdir()
        started = time.perf_counter()
        counts = fuse(a.unet, fused, a.fusion == "mha")
        print(f"fused in {time.perf_counter() - started:.1f} s: "
              f"{counts.get('MultiHeadAttention', 0)} MultiHeadAttention, {counts.get('Attention', 0)} Attention, "
              f"{counts.get('Softmax', 0)} Softmax left, {sum(counts.values())} nodes")
        results = {}
        for name, graph in (("as-is", a.unet), ("fused", fused)):
            out = tmp / f"{name}.json"
            subprocess.run([sys.executable, "-m", "tooling.graph_bench", str(a.unet), "--size", str(a.size),
                            "--runs", str(a.runs), "--threads", str(a.threads), "--child", str(graph), str(out)],
                           check=True)
            results[name] = json.loads(out.read_text())
            results[name]["output"] = np.load(out.with_suffix(".npy"))
        diff = float(np.abs(results["fused"]["output"] - results["as-is"]["output"]).max())
        scale = float(np.abs(results["as-is"]["output"]).max())
        for name, r in results.items():
            runs = ", ".join(f"{t:.2f}" for t in r["run_s"])
            print(f"{name:6} size {a.size} batch 2, {a.threads} threads: load {r['load_s']:.1f} s, runs {runs} s, "
                  f"best {min(r['run_s']):.2f} s, peak RSS {r['peak_rss_gb']:.2f} GB")
        print(f"fused output vs as-is: max abs diff {diff:.3e} (output max {scale:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
