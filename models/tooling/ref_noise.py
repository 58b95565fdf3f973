"""Reference fixtures for Easel's seed handling: the initial latent noise and the sampler noise that
AUTOMATIC1111 and ComfyUI make for a seed.

Owns: ``tests/fixtures/noise/`` — the case list below, the recording, and ``cases.json`` (the index).
Nothing of the upstream programs is copied into this project: every array comes from RUNNING the upstream
modules out of checkouts given on the command line, with small stand-ins (installed into ``sys.modules``
here, through ``tooling.upstream``) for the heavy modules they import (``modules.shared``, ``modules.devices``,
``k_diffusion.sampling``, ``comfy.model_management``, ``torchsde``, ...).

A1111 (``opts.randn_source`` "NV" or "CPU", ``opts.eta_noise_seed_delta``): ``rng.randn_local`` (the NV
Philox generator of ``rng_philox.py`` on its own), and ``rng.ImageRNG`` built as ``processing.py`` builds it
(``all_seeds[i] = seed + i`` when the variation strength is 0, else all ``seed``; ``all_subseeds[i] =
subseed + i``; shape ``(4, height/8, width/8)``); the first draw is ``ImageRNG.next()`` (what
``process_images`` takes as the initial noise, i.e. ``first()``), the later ones go through
``sd_samplers_common.TorchHijack(p).randn_like(x)``, the stand-in A1111 installs for k-diffusion's
``torch.randn_like``. ComfyUI: ``comfy.sample.prepare_noise(latent, seed, batch_inds)`` for a zero latent
and ``comfy.k_diffusion.sampling.default_noise_sampler(x, seed)`` called twice for x on the CPU (recording
what the checked-out revision does; whether it adds 1 to the seed on the CPU is detected and written into
the case as ``noise_sampler_seed_offset``).

Upstream files used (commits and sha256 recorded in ``cases.json`` "source"): A1111 ``modules/rng.py``,
``modules/rng_philox.py``, ``modules/sd_samplers_common.py`` (master 82a973c, v1.10.1); ComfyUI
``comfy/sample.py``, ``comfy/k_diffusion/sampling.py`` (Comfy-Org/ComfyUI a125cd8). Any checkout with
those files works; a file whose content differs from the pinned one is recorded with ``"commit": null``.
ComfyUI's sampling.py needs scipy and tqdm (in the venv); torchsde is stood in for when absent.

Run from ``models/``::

    .venv/bin/python -m tooling.ref_noise --a1111 /path/to/stable-diffusion-webui \\
        --comfyui /path/to/ComfyUI ../tests/fixtures/noise

(or ``EASEL_A1111=... EASEL_COMFYUI=... models/sdtool reference noise tests/fixtures/noise``).

Writes: ``<case>.npy`` (float32, C order: the case's draws stacked on a new first axis, ``[n_draws,
*shape]``) and ``cases.json``. CPU draws are torch's CPU generator (mt19937), whose float32 kernel
differs between x86 (AVX2) and other CPUs in the last bits: the index records torch's CPU capability.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import upstream

RECORDER = "models/tooling/ref_noise.py"

# The upstream files these fixtures were recorded from, at the checkout commits of tooling.upstream.CHECKOUTS:
# per file the commit that last changed it there and the sha256 of its content (line endings normalised to LF).
A1111_FILES = {
    "modules/rng.py": ("e3fa46f26f78c01969eaca2708be4e2b4928c5a2",
                       "ccd5bf87e37cb8ddb0b0424f7bd94e464fd021b866deca56401eedcd91d2d190"),
    "modules/rng_philox.py": ("0904df84e296c10fe0ccb37a3b689e6b96d87e41",
                              "3f711d9e17488e9bdedefa06345d4085b8659331b5778454b0e40eaf9c128b5f"),
    "modules/sd_samplers_common.py": ("a8fba9af35a081ada8c563fc6c76212dd131be01",
                                      "d5a5ead146fd150164a1acfb300a1f9694b6a4d8d93b25adeac3928840fb344e"),
}
COMFYUI_FILES = {
    "comfy/sample.py": ("a618f768e06d72acc5b97d78a9ae209cbae14654",
                        "5e97452ec4f29e558c60fd2d050a2705f4dc5bca661c2b0f2de49edcfd1b6e6f"),
    "comfy/k_diffusion/sampling.py": ("1a85483da159f2800407ae5a8a45eb0d88ffce2d",
                                      "6bce1a552e847c6c65c6f134cdc9b5a68d5f93586872b709d376c6f9c2591a12"),
}

# The test vector in rng_philox.py's docstring (seed 0, shape (3, 4)); the recorded case is checked against it.
PHILOX_DOC_VECTOR = [[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
                     [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
                     [-1.07454231, -0.36314407, -1.67105067, 2.26550497]]

SCHEMA = {
    "name": "case name; the array is <name>.npy",
    "tool": "a1111 | comfyui",
    "randn_source": "A1111 opts.randn_source lower-cased: nv | cpu; null for ComfyUI",
    "seed": "the seed as the user gives it (A1111 p.seed, ComfyUI KSampler seed)",
    "seeds": "A1111 p.seeds handed to ImageRNG (processing.py: seed+i when subseed_strength == 0, else all seed); null otherwise",
    "subseed": "A1111 variation seed (p.subseed) or null",
    "subseeds": "A1111 p.subseeds handed to ImageRNG (subseed+i) or null",
    "subseed_strength": "A1111 variation strength (0 when no subseed); null for ComfyUI",
    "seed_resize_from": "[h, w] in pixels (A1111 seed_resize_from_h/w) or null",
    "width": "image width in pixels (latent is width/8); null for randn_local",
    "height": "image height in pixels; null for randn_local",
    "batch": "batch size B; null for randn_local",
    "eta_noise_seed_delta": "A1111 opts.eta_noise_seed_delta (ENSD); null for ComfyUI",
    "batch_inds": "ComfyUI latent batch_index handed to prepare_noise, or null",
    "draws": "what each slice of the array is: randn_local = rng.randn_local(seed, shape); first = ImageRNG.next() "
             "the first time (= first(), the initial noise); next = TorchHijack.randn_like(x) (= ImageRNG.next(), "
             "one k-diffusion randn_like); prepare_noise = comfy.sample.prepare_noise; noise_sampler = one call "
             "of default_noise_sampler(x, seed)",
    "shape": "shape of one draw: [B, 4, h/8, w/8] (randn_local: the shape passed)",
    "file": "<name>.npy: float32, C order, [len(draws), *shape]",
}


@dataclass
class NoiseCase:
    name: str
    tool: str  # "a1111" | "comfyui"
    what: str
    draws: list[str]
    shape: list[int]
    randn_source: str | None = None  # "nv" | "cpu"
    seed: int = 0
    subseed: int | None = None
    subseed_strength: float | None = None
    seed_resize_from: list[int] | None = None  # [h, w] pixels
    width: int | None = 64
    height: int | None = 64
    batch: int | None = 2
    eta_noise_seed_delta: int | None = None
    batch_inds: list[int] | None = None
    seeds: list[int] | None = None
    subseeds: list[int] | None = None
    extra: dict = field(default_factory=dict)


def _latent(batch: int, width: int = 64, height: int = 64) -> list[int]:
    return [batch, 4, height // 8, width // 8]


def _a1111(name, what, source, seed, draws=("first",), subseed=None, strength=0.0, resize=None, ensd=0,
           batch=2, width=64, height=64) -> NoiseCase:
    seeds = [int(seed) + (i if strength == 0 else 0) for i in range(batch)]  # processing.py process_images_inner
    subseeds = None if subseed is None else [int(subseed) + i for i in range(batch)]
    return NoiseCase(name=name, tool="a1111", what=what, draws=list(draws), shape=_latent(batch, width, height),
                     randn_source=source, seed=seed, subseed=subseed, subseed_strength=strength,
                     seed_resize_from=resize, width=width, height=height, batch=batch, eta_noise_seed_delta=ensd,
                     seeds=seeds, subseeds=subseeds)


def _philox(seed, shape, what) -> NoiseCase:
    tag = "x".join(str(s) for s in shape)
    return NoiseCase(name=f"a1111_nv_randn_local_s{seed}_{tag}", tool="a1111", what=what, draws=["randn_local"],
                     shape=list(shape), randn_source="nv", seed=seed, subseed_strength=0.0, width=None, height=None,
                     batch=None, eta_noise_seed_delta=0)


def _comfy(seed, batch_inds=None) -> NoiseCase:
    tag = "" if batch_inds is None else "_inds" + "_".join(map(str, batch_inds))
    what = "prepare_noise for a zero latent [2,4,8,8]" + (f", batch_index {batch_inds}" if batch_inds else "")
    return NoiseCase(name=f"comfyui_prepare_noise_s{seed}{tag}", tool="comfyui", what=what, draws=["prepare_noise"],
                     shape=_latent(2), seed=seed, batch_inds=batch_inds)


PHILOX_SEEDS = [0, 1, 42, 99, 2**32, 2**32 + 5, 2**40 + 3]
S = 1234
BIG = 2**32 + 7

CASES: list[NoiseCase] = [
    _philox(0, (3, 4), "rng_philox.py docstring vector"),
    *[_philox(s, (4, 8, 8), "one 64x64 image's latent noise from rng_philox.Generator(seed)") for s in PHILOX_SEEDS],
    _philox(42, (4, 64, 64), "a 512x512 latent (16384 elements)"),
]
for _src in ("nv", "cpu"):
    CASES += [
        _a1111(f"a1111_{_src}_first_s{S}", "initial noise, batch 2 (seeds 1234, 1235)", _src, S),
        _a1111(f"a1111_{_src}_first_s42", "initial noise, batch 2 (seeds 42, 43)", _src, 42),
        _a1111(f"a1111_{_src}_first_s{BIG}", "initial noise for a seed over 32 bits", _src, BIG),
        *[_a1111(f"a1111_{_src}_subseed99_str{str(st).replace('.', 'p')}",
                 f"variation seed 99 at strength {st}", _src, S, subseed=99, strength=st) for st in (0.0, 0.3, 1.0)],
        _a1111(f"a1111_{_src}_resize_48x40", "seed resize from 48x40 (h x w) pixels into 64x64, then one sampler draw",
               _src, S, draws=("first", "next"), resize=[48, 40]),
        _a1111(f"a1111_{_src}_steps_s{S}", "initial noise then two k-diffusion randn_like draws", _src, S,
               draws=("first", "next", "next")),
        _a1111(f"a1111_{_src}_steps_s{S}_ensd31337", "as _steps_ with eta noise seed delta 31337", _src, S,
               draws=("first", "next", "next"), ensd=31337),
    ]
for _seed in (0, 42, 2**32 + 5):
    CASES += [_comfy(_seed), _comfy(_seed, [3, 1])]
CASES.append(NoiseCase(name="comfyui_noise_sampler_s42", tool="comfyui", draws=["noise_sampler", "noise_sampler"],
                       what="default_noise_sampler(x, seed=42) called twice, x = zeros [2,4,8,8] on the CPU",
                       shape=_latent(2), seed=42))


# --------------------------------------------------------------------------------------------------
# Stand-ins for the heavy upstream imports (the shared machinery is tooling.upstream)
# --------------------------------------------------------------------------------------------------

def _torchsde_standin() -> None:
    """torchsde, when it is not installed: only the Brownian-tree samplers use it (not recorded here); A1111
    patches ``torchsde._brownian.brownian_interval._randn`` at import, ComfyUI imports the package."""
    try:
        import torchsde  # noqa: F401
        return
    except ImportError:
        pass
    upstream.package("torchsde")
    sys.modules["torchsde"].BrownianTree = upstream.Anything
    sys.modules["torchsde"].BrownianInterval = upstream.Anything
    upstream.package("torchsde._brownian")
    upstream.module("torchsde._brownian.brownian_interval", _randn=None)


class A1111:
    """A1111's modules/rng.py (+ rng_philox, sd_samplers_common.TorchHijack) with stand-ins for webui's runtime."""

    def __init__(self, root: Path):
        self.root = upstream.a1111_checkout(root, A1111_FILES)
        self.opts = types.SimpleNamespace(randn_source="CPU", eta_noise_seed_delta=0)
        upstream.a1111_runtime(self.opts, sinks=("images", "sd_vae_approx", "sd_samplers", "sd_vae_taesd",
                                                 "sd_models"))
        if "k_diffusion" not in sys.modules:  # webui's repositories/k-diffusion; only its module object is touched
            upstream.package("k_diffusion")
            upstream.sink_module("k_diffusion.sampling")
        _torchsde_standin()
        self.rng = importlib.import_module("modules.rng")
        self.philox = importlib.import_module("modules.rng_philox")
        self.samplers_common = importlib.import_module("modules.sd_samplers_common")

    def source(self, log) -> dict:
        return upstream.pinned_source(self.root, "a1111", A1111_FILES, log, RECORDER)

    def record(self, case: NoiseCase):
        import torch

        self.opts.randn_source = case.randn_source.upper()
        self.opts.eta_noise_seed_delta = case.eta_noise_seed_delta or 0
        torch.manual_seed(987654321)  # the global generator's state must not matter; reseeded by A1111 where used
        if case.draws == ["randn_local"]:
            return [self.rng.randn_local(case.seed, tuple(case.shape))]
        resize_h, resize_w = case.seed_resize_from or (0, 0)
        image_rng = self.rng.ImageRNG((4, case.height // 8, case.width // 8), case.seeds, subseeds=case.subseeds,
                                      subseed_strength=case.subseed_strength, seed_resize_from_h=resize_h,
                                      seed_resize_from_w=resize_w)
        p = types.SimpleNamespace(rng=image_rng)
        hijack = self.samplers_common.TorchHijack(p)  # k_diffusion.sampling.torch during sampling
        x = image_rng.next()  # processing.py: x = self.rng.next() -> first()
        draws = [x]
        for d in case.draws[1:]:
            assert d == "next", d
            draws.append(hijack.randn_like(x))
        return draws


class ComfyUI:
    """ComfyUI's comfy/sample.py and comfy/k_diffusion/sampling.py with stand-ins for the model side."""

    def __init__(self, root: Path):
        import torch

        self.root = upstream.comfyui_checkout(root, COMFYUI_FILES, ("", "k_diffusion"))
        cpu = torch.device("cpu")
        upstream.sink_module("comfy.model_management", intermediate_device=lambda: cpu, get_torch_device=lambda: cpu)
        for name in ("samplers", "utils", "nested_tensor", "model_patcher", "model_sampling", "memory_management"):
            upstream.sink_module(f"comfy.{name}")
        _torchsde_standin()
        self.sample = importlib.import_module("comfy.sample")
        self.sampling = importlib.import_module("comfy.k_diffusion.sampling")
        self.noise_sampler_seed_offset = None

    def source(self, log) -> dict:
        return upstream.pinned_source(self.root, "comfyui", COMFYUI_FILES, log, RECORDER)

    def record(self, case: NoiseCase):
        import torch

        torch.manual_seed(987654321)
        latent = torch.zeros(case.shape, dtype=torch.float32)
        if case.draws == ["prepare_noise"]:
            return [self.sample.prepare_noise(latent, case.seed, case.batch_inds)]
        assert set(case.draws) == {"noise_sampler"}
        sampler = self.sampling.default_noise_sampler(latent, seed=case.seed)
        draws = [sampler(torch.tensor(1.0), torch.tensor(0.5)) for _ in case.draws]
        # Which torch generator this revision seeds (upstream later added seed += 1 for x on the CPU).
        offset = None
        for k in (0, 1):
            g = torch.Generator("cpu").manual_seed(case.seed + k)
            if all(torch.equal(d, torch.randn(case.shape, generator=g)) for d in draws):
                offset = k
                break
        case.extra["noise_sampler_seed_offset"] = offset
        case.extra["noise_sampler_generator"] = (
            "torch.Generator(x.device).manual_seed(seed + noise_sampler_seed_offset); one torch.randn(x.size()) per call"
        )
        return draws


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------

def _stack(draws) -> np.ndarray:
    arr = np.stack([np.asarray(d.detach().cpu().numpy() if hasattr(d, "detach") else d, dtype=np.float32)
                    for d in draws])
    return np.ascontiguousarray(arr.astype("<f4"))


def _case_json(case: NoiseCase) -> dict:
    d = asdict(case)
    extra = d.pop("extra")
    d["file"] = f"{case.name}.npy"
    d.update(extra)
    return d


def main(out: Path, a1111_dir: str | None = None, comfyui_dir: str | None = None, log=print) -> int:
    import torch

    a1111_dir, comfyui_dir = upstream.checkouts("ref_noise", a1111_dir, comfyui_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "duplicate case names"
    for stale in out.glob("*.npy"):
        if stale.stem not in names:
            stale.unlink()

    torch.set_num_threads(1)
    a = A1111(a1111_dir)
    c = ComfyUI(comfyui_dir)

    total = 0
    for case in CASES:
        draws = (a if case.tool == "a1111" else c).record(case)
        arr = _stack(draws)
        assert list(arr.shape) == [len(case.draws), *case.shape], (case.name, arr.shape)
        np.save(out / f"{case.name}.npy", arr)
        total += (out / f"{case.name}.npy").stat().st_size

    doc = next(x for x in CASES if x.name == "a1111_nv_randn_local_s0_3x4")
    got = np.load(out / f"{doc.name}.npy")[0]
    if not np.allclose(got, np.array(PHILOX_DOC_VECTOR, dtype=np.float32), atol=1e-6, rtol=0):
        raise SystemExit("ref_noise: rng_philox seed 0 (3, 4) differs from its docstring vector")

    index = {
        "what": "initial and sampler noise of A1111 (modules/rng.py, NV and CPU sources) and ComfyUI "
                "(comfy/sample.py prepare_noise, k_diffusion default_noise_sampler), recorded by running their code",
        "regenerate": "cd models && .venv/bin/python -m tooling.ref_noise --a1111 DIR --comfyui DIR ../tests/fixtures/noise",
        "source": {"a1111": a.source(log), "comfyui": c.source(log)},
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "philox_doc_vector": PHILOX_DOC_VECTOR,
        "schema": SCHEMA,
        "cases": [_case_json(x) for x in CASES],
    }
    (out / "cases.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"  noise: {len(CASES)} cases, {total / 1e6:.2f} MB of arrays in {out}")
    return 0


if __name__ == "__main__":
    upstream.cli(main, __doc__, "../tests/fixtures/noise")
