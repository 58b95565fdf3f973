"""Command line of the model tooling (``models/sdtool ...`` runs ``python -m tooling ...``).

Owns: argument parsing, dispatch to the modules, and turning every failure into one line on stderr with a
non-zero exit (``EASEL_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import ToolError

MODELS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = MODELS_DIR.parent


def _log(msg: str) -> None:
    # Progress and reports go to stdout; stderr carries only the one-line error, if any.
    print(msg, flush=True)


def cmd_convert(a) -> int:
    from .convert import convert

    convert(
        a.src,
        a.dst,
        fp16=a.fp16,
        quantize=a.quantize,
        validate=a.validate,
        config=a.config,
        revision=a.revision,
        force=a.force,
        log=_log,
    )
    return 0


def cmd_random(a) -> int:
    from . import provenance
    from .export_onnx import folder_bytes, write_layout
    from .configs import SD15_SCHEDULER
    from .random_model import build_random, component_hashes, save_torch_folder

    out = Path(a.out)
    if out.exists() and any(out.iterdir()) and not a.force:
        raise ToolError(f"{out}: exists and is not empty (use --force to overwrite)")
    torch_out = Path(a.torch_out) if a.torch_out else out.with_name(out.name + "-torch")
    t0 = time.perf_counter()
    _log(f"building random {a.arch} model, seed {a.seed} ...")
    components = build_random(a.arch, a.seed)
    hashes = component_hashes(components)
    t_build = time.perf_counter() - t0
    if not a.no_torch:
        _log(f"saving torch diffusers form to {torch_out} ...")
        save_torch_folder(components, torch_out)
    if a.no_onnx:
        return 0
    if out.exists() and a.force:
        import shutil

        shutil.rmtree(out)
    dtype = "float16" if a.fp16 else ("int8" if a.quantize == "int8" else "float32")
    graphs = write_layout(components, out, dict(SD15_SCHEDULER), None, fp16=a.fp16, quantize=a.quantize, log=_log)
    elapsed = time.perf_counter() - t0
    validation = None
    if a.validate:
        from .validate import validate_folder

        _log(f"validating {out} ({dtype}) ...")
        validation = validate_folder(components, out, dtype, log=_log)
    provenance.write_record(
        out,
        source={"kind": "random", "architecture": a.arch, "seed": a.seed, "weights_sha256": hashes},
        dtype=dtype,
        options={"fp16": a.fp16, "quantize": a.quantize, "opset": 17},
        graphs=graphs,
        extra={
            "timing_seconds": {"build": round(t_build, 2), "build_and_export": round(elapsed, 2)},
            **({"validation": validation} if validation else {}),
        },
    )
    _log(f"wrote {out} ({folder_bytes(out) / 1e6:.1f} MB, {elapsed:.1f} s)")
    if validation and not all(v["ok"] for v in validation.values()):
        raise ToolError("validation failed (errors above tolerance)")
    return 0


def cmd_reference(a) -> int:
    from . import reference

    target = a.target
    if target and target[0] in reference.HELPERS:
        if len(target) != 2:
            raise ToolError(f"usage: sdtool reference {target[0]} OUT")
        return reference.run_helper(target[0], Path(target[1]))
    if target:
        raise ToolError(f"unknown reference target {target[0]!r} (expected {', '.join(reference.HELPERS)}, or flags)")
    if a.all_fixtures:
        reference.all_fixtures(
            Path(a.out) if a.out else REPO_ROOT / "tests" / "fixtures" / "pipeline",
            model=Path(a.model) if a.model else None,
            only=a.only,
            log=_log,
        )
        return 0
    if not a.out:
        raise ToolError("reference: give --out DIR for a single case (or --all-fixtures)")
    settings = reference.CaseSettings(
        prompt=a.prompt,
        negative_prompt=a.negative_prompt,
        seed=a.seed,
        steps=a.steps,
        cfg_scale=a.cfg_scale,
        width=a.width,
        height=a.height,
        batch_size=a.batch_size,
        sampler=a.sampler,
        schedule=a.schedule,
    )
    model = Path(a.model) if a.model else reference.default_torch_model(log=_log)
    reference.run_case(model, settings, Path(a.out), log=_log)
    return 0


def cmd_template(a) -> int:
    from .template import GRAPHS, write_templates

    for g in a.only or []:
        if g not in GRAPHS:
            raise ToolError(f"unknown graph {g!r}; one of {', '.join(GRAPHS)}")
    write_templates(Path(a.src), a.torch, Path(a.out), only=a.only, verify=a.verify, log=_log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdtool", description="Easel model tooling (SD 1.5 -> ONNX, test models, reference fixtures)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a diffusers folder, repo id or single-file checkpoint to Easel's ONNX folder")
    c.add_argument("src", help="diffusers folder, Hugging Face repo id (online only), or .safetensors/.ckpt file")
    c.add_argument("dst", help="output folder")
    c.add_argument("--fp16", action="store_true", help="float16 graphs (inputs/outputs too): for GPUs")
    c.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization of UNet and text encoder: for CPUs")
    c.add_argument("--validate", action="store_true", help="compare torch and ONNX outputs; non-zero exit over tolerance")
    c.add_argument("--config", help="diffusers folder whose configs describe a single-file checkpoint (default: SD 1.5)")
    c.add_argument("--revision", help="hub revision for a repo id")
    c.add_argument("--force", action="store_true", help="overwrite a non-empty DST")
    c.set_defaults(func=cmd_convert)

    r = sub.add_parser("random", help="build a seeded random model with the SD 1.5 architecture")
    r.add_argument("arch", choices=["tiny", "sd15", "tiny-inpaint", "sd15-inpaint"],
                   help="tiny or sd15; *-inpaint: the same with a 9-input-channel (inpainting) UNet")
    r.add_argument("out", help="ONNX output folder")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--torch-out", help="where to save the torch diffusers form (default: OUT-torch)")
    r.add_argument("--no-torch", action="store_true", help="do not save the torch form")
    r.add_argument("--no-onnx", action="store_true", help="only save the torch form")
    r.add_argument("--fp16", action="store_true")
    r.add_argument("--quantize", choices=["int8"])
    r.add_argument("--validate", action="store_true")
    r.add_argument("--force", action="store_true")
    r.set_defaults(func=cmd_random)

    t = sub.add_parser("template", help="weight-free ONNX graphs + weights.json (checkpoint key of every weight)")
    t.add_argument("src", help="ONNX folder exported by this tool (float32)")
    t.add_argument("torch", help="the diffusers folder it was exported from, or random:ARCH:SEED")
    t.add_argument("out", help="output folder: OUT/<graph>/model.onnx and weights.json")
    t.add_argument("--only", action="append", help="only this graph (repeatable): text_encoder unet vae_encoder vae_decoder")
    t.add_argument("--verify", action="store_true",
                   help="run each template with the weights supplied (LDM layout) and require outputs identical to SRC's")
    t.set_defaults(func=cmd_template)

    f = sub.add_parser("reference", help="diffusers reference outputs (fixtures for the engine's parity tests)")
    f.add_argument("target", nargs="*",
                   help="'randn|schedulers|img2img|inpaint|hires|imageops|checkpoints|prompts|noise|kdiffusion|compat_images|lora|vae_tiling|latent_resize OUT' for the helper fixture generators")
    f.add_argument("--all-fixtures", action="store_true", help="regenerate tests/fixtures/pipeline (tiny model, seed 0)")
    f.add_argument("--only", action="append", help="with --all-fixtures: only this case (repeatable)")
    f.add_argument("--model", help="torch diffusers model folder (default: models/tiny-sd-torch, rebuilt if absent)")
    f.add_argument("--out", help="output folder")
    f.add_argument("--prompt", default="a photo of an astronaut riding a horse")
    f.add_argument("--negative-prompt", default=None)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--steps", type=int, default=10)
    f.add_argument("--cfg-scale", type=float, default=7.5)
    f.add_argument("--width", type=int, default=64)
    f.add_argument("--height", type=int, default=64)
    f.add_argument("--batch-size", type=int, default=1)
    f.add_argument("--sampler", default="pndm", help="pndm ddim euler euler_a heun lms dpmpp_2m unipc")
    f.add_argument("--schedule", default="default", choices=["default", "karras"])
    f.set_defaults(func=cmd_reference)
    return p


def _quiet_libraries() -> None:
    """diffusers/transformers chatter (progress bars, 'install accelerate') is not useful here."""
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # Local work never touches the hub; only `convert <repo id>` may go online.
    if not (args.command == "convert" and not os.path.exists(args.src)):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")
    _quiet_libraries()
    try:
        return args.func(args)
    except ToolError as e:
        print(f"sdtool: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdtool: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        if os.environ.get("EASEL_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"sdtool: error: unexpected {type(e).__name__}: {first[:400]} (EASEL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
