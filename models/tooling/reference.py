"""``sdtool reference``: diffusers' own outputs, saved as fixtures for the Easel engine's parity tests.

Owns: running diffusers ``StableDiffusionPipeline`` (float32, CPU, ``torch.Generator("cpu").manual_seed``)
with a scheduler built by ``<Class>.from_config(<the model's original scheduler config>)``, capturing what
the engine must reproduce (initial noise, the text embeddings fed to the UNet, the latents after every
step, the timesteps, the images), the committed case list and its regeneration, and the rebuild/check of
the tiny torch model from its seed.

Per case folder: ``settings.json``, ``image_<i>.png``, ``noise.npy`` [B,4,h,w] (before scaling by
``init_noise_sigma``), ``text_embeddings.npy`` ([uncond; cond] when CFG > 1, else cond), ``latents.npy``
[len(timesteps),B,4,h,w], ``timesteps.npy``, and ``sigmas.npy`` for schedulers that have sigmas.
All arrays are float32 little-endian C order (``np.save``).
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import ToolError

MODELS_DIR = Path(__file__).resolve().parent.parent
TINY_ONNX = MODELS_DIR / "tiny-sd"
TINY_TORCH = MODELS_DIR / "tiny-sd-torch"
TINY_SEED = 0

SAMPLERS = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}

LONG_PROMPT = (
    "an extremely detailed oil painting of a lighthouse on a rocky cliff at dawn, waves crashing below, "
    "seagulls circling overhead, warm golden light breaking through heavy storm clouds, a small fishing boat "
    "returning to the harbour, wet stones glistening, moss and lichen on the old brick walls, a winding path "
    "with wooden fences leading down to the beach, footprints in the sand, distant mountains fading into mist, "
    "dramatic composition, rich colours, fine brush strokes, museum quality, by a nineteenth century master"
)


@dataclass
class CaseSettings:
    prompt: str = "a photo of an astronaut riding a horse"
    negative_prompt: str | None = None
    seed: int = 0
    steps: int = 10
    cfg_scale: float = 7.5
    width: int = 64
    height: int = 64
    batch_size: int = 1
    sampler: str = "pndm"
    schedule: str = "default"


@dataclass
class Case:
    name: str
    what: str
    settings: CaseSettings = field(default_factory=CaseSettings)


def _case(name, what, **kw) -> Case:
    return Case(name, what, CaseSettings(**kw))


# The committed fixture set (tiny model, seed 0). Seeds differ per case so no two share their noise.
CASES = [
    _case("pndm", "PNDM (diffusers' SD 1.5 default), leading spacing, N+1 UNet calls", sampler="pndm", seed=1),
    _case("ddim", "DDIM, eta 0", sampler="ddim", seed=2),
    _case("euler", "Euler, linspace spacing (key absent from the scheduler config)", sampler="euler", seed=3),
    _case("euler_a", "Euler ancestral: per-step noise from the same generator", sampler="euler_a", seed=4),
    _case("heun", "Heun: 2N-1 timesteps", sampler="heun", seed=5),
    _case("lms", "LMS (order 4)", sampler="lms", seed=6),
    _case("dpmpp_2m", "DPM++ 2M (DPMSolverMultistep)", sampler="dpmpp_2m", seed=7),
    _case("unipc", "UniPC (bh2)", sampler="unipc", seed=8),
    _case("dpmpp_2m_karras", "DPM++ 2M with Karras sigmas", sampler="dpmpp_2m", schedule="karras", seed=9),
    _case("euler_karras", "Euler with Karras sigmas", sampler="euler", schedule="karras", seed=10),
    _case("batch2_euler_a", "batch of 2 (one noise draw [2,4,h,w]; ancestral noise for both)", sampler="euler_a",
          batch_size=2, seed=11),
    _case("batch2_ddim", "batch of 2, deterministic sampler", sampler="ddim", batch_size=2, seed=12),
    _case("size_96x64", "non-square, width 96 height 64 (latents 8x12, not a multiple of 64 px)", sampler="dpmpp_2m",
          width=96, height=64, seed=13),
    _case("size_64x128", "non-square, width 64 height 128", sampler="pndm", width=64, height=128, seed=14),
    _case("empty_prompt", "empty prompt (cond = uncond)", sampler="euler", prompt="", seed=15),
    _case("long_prompt", "prompt over 77 tokens: truncated to BOS + 75 + EOS", sampler="ddim", prompt=LONG_PROMPT, seed=16),
    _case("negative_prompt", "negative prompt replaces the empty uncond prompt", sampler="dpmpp_2m",
          prompt="a cozy cabin in a snowy forest, warm light", negative_prompt="blurry, low quality, watermark", seed=17),
    _case("cfg1", "guidance 1.0: no CFG, one UNet pass per step on the cond embeddings only", sampler="euler",
          cfg_scale=1.0, seed=18),
    _case("seed_large", "seed above 2^32: torch's CPU generator keeps only the low 32 bits (same noise as seed 12346)", sampler="euler_a",
          seed=4294967297 + 12345, steps=6),
]


def make_scheduler(pipe, sampler: str, schedule: str):
    import diffusers

    if sampler not in SAMPLERS:
        raise ToolError(f"unknown sampler {sampler!r}; one of {', '.join(SAMPLERS)}")
    if schedule not in ("default", "karras"):
        raise ToolError(f"unknown schedule {schedule!r}; default or karras")
    cls = getattr(diffusers, SAMPLERS[sampler])
    extra = {}
    if schedule == "karras":
        if sampler in ("pndm", "ddim"):
            raise ToolError(f"{sampler} has no karras schedule in diffusers")
        extra["use_karras_sigmas"] = True
    # Always from the model's original scheduler (PNDM as loaded from scheduler_config.json), never from
    # whatever scheduler a previous case left on the pipeline: from_config keeps explicitly set keys, so
    # e.g. use_karras_sigmas would leak from one case into the next.
    return cls.from_config(pipe.easel_original_scheduler.config, **extra)


def _json_safe(config) -> dict:
    """The config as strict JSON: non-finite floats (diffusers' `-inf` defaults) become strings."""
    def fix(v):
        return str(v) if isinstance(v, float) and not np.isfinite(v) else v
    return {k: fix(v) for k, v in json.loads(json.dumps(dict(config), default=str)).items()}


def _f32(t) -> np.ndarray:
    a = t.detach().cpu().float().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float32)
    return np.ascontiguousarray(a.astype("<f4"))


def run_case(model_dir: Path, s: CaseSettings, out_dir: Path, log=print, pipe=None) -> dict:
    import diffusers
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion as sd_module

    torch.set_num_threads(1)  # single-threaded: bit-identical reruns on the same machine
    if pipe is None:
        pipe = load_pipeline(model_dir)
    pipe.scheduler = make_scheduler(pipe, s.sampler, s.schedule)
    if s.width % 8 or s.height % 8:
        raise ToolError("width and height must be multiples of 8")

    captured = {"noise": None, "embeds": None, "unet_calls": 0, "latents": []}
    original_randn = sd_module.randn_tensor

    def recording_randn(*args, **kwargs):
        out = original_randn(*args, **kwargs)
        if captured["noise"] is None:
            captured["noise"] = out.detach().clone()
        return out

    def unet_hook(_module, args, kwargs):
        captured["unet_calls"] += 1
        if captured["embeds"] is None:
            ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
            captured["embeds"] = ehs.detach().clone()

    def on_step_end(_pipe, i, t, cb_kwargs):
        captured["latents"].append(cb_kwargs["latents"].detach().clone())
        return cb_kwargs

    handle = pipe.unet.register_forward_pre_hook(unet_hook, with_kwargs=True)
    sd_module.randn_tensor = recording_randn
    try:
        generator = torch.Generator("cpu").manual_seed(s.seed)
        result = pipe(
            prompt=s.prompt,
            negative_prompt=s.negative_prompt,
            height=s.height,
            width=s.width,
            num_inference_steps=s.steps,
            guidance_scale=s.cfg_scale,
            num_images_per_prompt=s.batch_size,
            eta=0.0,
            generator=generator,
            output_type="pil",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
    finally:
        sd_module.randn_tensor = original_randn
        handle.remove()

    sched = pipe.scheduler
    noise = captured["noise"]
    check = torch.randn(noise.shape, generator=torch.Generator("cpu").manual_seed(s.seed))
    if not torch.equal(check, noise):
        raise ToolError("internal: the pipeline's initial noise is not torch.randn(shape) of a fresh generator")

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    np.save(out_dir / "noise.npy", _f32(noise))
    np.save(out_dir / "text_embeddings.npy", _f32(captured["embeds"]))
    np.save(out_dir / "latents.npy", _f32(torch.stack(captured["latents"])))
    np.save(out_dir / "timesteps.npy", _f32(sched.timesteps))
    has_sigmas = hasattr(sched, "sigmas") and sched.sigmas is not None
    if has_sigmas:
        np.save(out_dir / "sigmas.npy", _f32(torch.as_tensor(sched.sigmas)))
    for i, img in enumerate(result.images):
        img.save(out_dir / f"image_{i}.png")

    used_config = {k: v for k, v in dict(sched.config).items() if not k.startswith("_")}
    settings = asdict(s)
    settings["meta"] = {
        "generator": "torch.Generator('cpu').manual_seed(seed); whole batch in one randn call",
        "scheduler_class": type(sched).__name__,
        "scheduler_config_used": _json_safe(used_config),
        "init_noise_sigma": float(sched.init_noise_sigma),
        "unet_calls": captured["unet_calls"],
        "num_timesteps": int(len(sched.timesteps)),
        "latent_shape": list(noise.shape),
        "images": [f"image_{i}.png" for i in range(len(result.images))],
        "arrays": ["noise.npy", "text_embeddings.npy", "latents.npy", "timesteps.npy"] + (["sigmas.npy"] if has_sigmas else []),
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"  {out_dir.name}: {s.sampler}/{s.schedule} {s.width}x{s.height} b{s.batch_size} cfg {s.cfg_scale} "
        f"steps {s.steps} -> {len(sched.timesteps)} timesteps, {captured['unet_calls']} UNet calls")
    return settings


def load_pipeline(model_dir: Path):
    import torch
    from diffusers import StableDiffusionPipeline

    from . import quiet_diffusers

    quiet_diffusers()
    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise ToolError(f"{model_dir}: not a torch diffusers model folder (no model_index.json)")
    pipe = StableDiffusionPipeline.from_pretrained(
        str(model_dir), torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.easel_original_scheduler = pipe.scheduler
    return pipe.to("cpu")


# The committed random ONNX models under models/ and how their torch forms are rebuilt:
# ONNX folder name -> (torch folder, `sdtool random` architecture, seed).
TINY_MODELS = {
    "tiny-sd": (TINY_TORCH, "tiny", TINY_SEED),
    "tiny-sd-inpaint": (MODELS_DIR / "tiny-sd-inpaint-torch", "tiny-inpaint", TINY_SEED),
}


def default_torch_model(log=print, name: str = "tiny-sd") -> Path:
    """models/<name>-torch, rebuilt from the seed when absent, and checked against models/<name>.

    ``name`` is one of ``TINY_MODELS``: "tiny-sd" (4-channel UNet) or "tiny-sd-inpaint" (9-channel UNet).
    """
    from .provenance import read_record
    from .random_model import build_random, component_hashes, load_torch_folder, save_torch_folder

    if name not in TINY_MODELS:
        raise ToolError(f"unknown tiny model {name!r}; one of {', '.join(TINY_MODELS)}")
    torch_dir, arch_name, seed = TINY_MODELS[name]
    onnx_dir = MODELS_DIR / name
    try:
        expected = read_record(onnx_dir)["source"]["weights_sha256"]
    except (OSError, KeyError, json.JSONDecodeError):
        raise ToolError(f"{onnx_dir}: missing or without weight hashes in easel-model.json") from None
    if torch_dir.is_dir():
        have = component_hashes(load_torch_folder(torch_dir))
        if have == expected:
            return torch_dir
        log(f"{torch_dir} does not match {onnx_dir}; rebuilding it")
        shutil.rmtree(torch_dir)
    log(f"building {torch_dir} from seed {seed} ...")
    components = build_random(arch_name, seed)
    have = component_hashes(components)
    if have != expected:
        raise ToolError(
            f"the {arch_name} model rebuilt from seed {seed} does not match {onnx_dir}/easel-model.json "
            f"(weights differ: {', '.join(k for k in have if have[k] != expected.get(k))}); "
            f"regenerate both with `sdtool random {arch_name} --seed {seed} models/{name} --force`"
        )
    save_torch_folder(components, torch_dir)
    return torch_dir


def all_fixtures(out_dir: Path, model: Path | None = None, only: list[str] | None = None, log=print) -> None:
    model = model or default_torch_model(log=log)
    names = {c.name for c in CASES}
    for o in only or []:
        if o not in names:
            raise ToolError(f"unknown case {o!r}; one of {', '.join(sorted(names))}")
    pipe = load_pipeline(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"writing reference fixtures to {out_dir} (model {model})")
    for case in CASES:
        if only and case.name not in only:
            continue
        run_case(model, case.settings, out_dir / case.name, log=log, pipe=pipe)
    index = {
        "model": "models/tiny-sd (ONNX) = models/tiny-sd-torch (torch), random tiny SD 1.5 architecture, seed 0",
        "generator": "diffusers StableDiffusionPipeline, float32, CPU, torch.Generator('cpu').manual_seed(seed)",
        "regenerate": "models/sdtool reference --all-fixtures",
        "cases": [{"name": c.name, "what": c.what, **asdict(c.settings)} for c in CASES],
    }
    (out_dir / "cases.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ``sdtool reference <target> OUT`` -> the module that writes that fixture set (its ``main(out)``).
HELPERS = {
    "randn": "ref_randn",
    "schedulers": "ref_schedulers",
    "img2img": "ref_img2img",
    "inpaint": "ref_inpaint",
    "hires": "ref_hires",
    "imageops": "ref_imageops",
    "checkpoints": "ref_checkpoints",
    "prompts": "ref_prompts",  # needs EASEL_A1111 and EASEL_COMFYUI (upstream checkouts)
    "noise": "ref_noise",  # needs EASEL_A1111 and EASEL_COMFYUI (upstream checkouts)
    "kdiffusion": "ref_kdiffusion",  # needs EASEL_A1111 and EASEL_COMFYUI (upstream checkouts)
    "compat_images": "ref_compat_images",  # needs EASEL_A1111 and EASEL_COMFYUI (upstream checkouts)
    "lora": "ref_lora",
    "vae_tiling": "ref_vae_tiling",
    "latent_resize": "ref_latent_resize",
}


def run_helper(which: str, out: Path) -> int:
    """``reference randn|schedulers|img2img|inpaint|hires|imageops|checkpoints|prompts|noise|kdiffusion|compat_images|lora|vae_tiling|latent_resize OUT``: generators in separate modules."""
    module_name = HELPERS[which]
    if importlib.util.find_spec(f"tooling.{module_name}") is None:
        raise ToolError(f"tooling/{module_name}.py is not present in this checkout")
    mod = importlib.import_module(f"tooling.{module_name}")
    out.mkdir(parents=True, exist_ok=True)
    result = mod.main(out)
    return result if isinstance(result, int) else 0
