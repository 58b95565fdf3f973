"""Checking an exported ONNX folder against the torch modules it came from.

Owns: the validation input sets (several batch sizes and spatial sizes, including sizes that are not
multiples of 64 pixels), running both sides, the error measure and the tolerances per dtype.

Error measure per graph and output: ``max |onnx - torch|`` over all cases, and the same divided by
``max(1, max |torch|)`` ("relative"), which is what the tolerance applies to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .export_onnx import IO_SPEC, SUBMODELS, example_inputs, graph_module

TOLERANCE = {"float32": 2e-3, "float16": 5e-2, "int8": 0.2}

# (batch, latent height, latent width); pixel sizes are 8x these.
CASES = [(1, 8, 8), (2, 12, 10), (1, 8, 16)]


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _onnx_input(arr: torch.Tensor, type_str: str) -> np.ndarray:
    a = arr.detach().cpu().numpy()
    if type_str == "tensor(float16)":
        return a.astype(np.float16)
    if type_str == "tensor(float)":
        return a.astype(np.float32)
    if type_str == "tensor(int64)":
        return a.astype(np.int64)
    if type_str == "tensor(int32)":
        return a.astype(np.int32)
    return a


def validate_folder(components: dict, onnx_dir: Path, dtype: str, log=print, cases=CASES) -> dict:
    """Run each graph on the same inputs in torch (float32) and ONNX Runtime; return the errors."""
    results = {}
    tol = TOLERANCE[dtype]
    for name in SUBMODELS:
        module = graph_module(name, components)
        sess = _session(Path(onnx_dir) / name / "model.onnx")
        in_types = {i.name: i.type for i in sess.get_inputs()}
        _, output_names, _ = IO_SPEC[name]
        worst = {o: [0.0, 0.0, 0.0] for o in output_names}  # abs err, ref scale, mean abs err
        for seed, (b, h, w) in enumerate(cases):
            inputs = example_inputs(name, components, batch=b, latent_hw=(h, w), seed=100 + seed)
            with torch.no_grad():
                ref = module(*[inputs[k] for k in IO_SPEC[name][0]])
            if isinstance(ref, torch.Tensor):
                ref = (ref,)
            feed = {k: _onnx_input(v, in_types[k]) for k, v in inputs.items()}
            got = sess.run(output_names, feed)
            for o, r, g in zip(output_names, ref, got):
                r = r.detach().float().numpy()
                g = np.asarray(g, dtype=np.float32)
                if r.shape != g.shape:
                    raise AssertionError(f"{name}.{o}: shape {g.shape} from ONNX, {r.shape} from torch")
                diff = np.abs(r - g)
                worst[o][0] = max(worst[o][0], float(diff.max()))
                worst[o][1] = max(worst[o][1], float(np.abs(r).max()))
                worst[o][2] = max(worst[o][2], float(diff.mean()))
        ok = True
        for o, (err, scale, mean_err) in worst.items():
            rel = err / max(1.0, scale)
            passed = rel <= tol
            ok = ok and passed
            results[f"{name}.{o}"] = {
                "max_abs_error": err,
                "mean_abs_error": mean_err,
                "max_abs_reference": scale,
                "relative_error": rel,
                "tolerance": tol,
                "ok": passed,
            }
            log(
                f"  {name + '.' + o:<32} max abs error {err:.3e}  (relative {rel:.3e}, mean {mean_err:.2e}, "
                f"|ref| max {scale:.3g}, tolerance {tol:g})  {'ok' if passed else 'FAIL'}"
            )
        del sess
    return results
