"""What the recorders that run AUTOMATIC1111's and ComfyUI's own code share (``ref_noise``, ``ref_prompts``,
``ref_kdiffusion``, ``ref_compat_images``).

Owns: installing stand-in modules into ``sys.modules`` for the heavy imports of the upstream checkouts
(``module`` / ``package`` / ``sink_module``, the ``Anything`` attribute sink, the optional-package stand-ins,
crowsonkb's k-diffusion loaded without its package ``__init__``; ``class_from_source`` / ``defs_from_source``:
definitions extracted from a file too heavy to import; ``module_from_file``); opening a checkout (``a1111_checkout``,
``a1111_runtime``, ``comfyui_checkout``, ``comfy_packages``) and reading A1111's option defaults; recording
what ran (``CHECKOUTS``, the checkout commits the fixtures were recorded from; ``pinned_source``: per file the
pinned commit (or ``Blob``, its git blob id) and the sha256 of its LF-normalised content, and the checkout's
``git HEAD``;
``package_source``: the PyPI k-diffusion and torchsde files); and each recorder's command line
(``checkouts``: ``--a1111`` / ``--comfyui`` or ``EASEL_A1111`` / ``EASEL_COMFYUI``; ``cli``). What a recorder
writes, and which upstream files it pins, stay in the recorder.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

# The checkouts the fixtures were recorded from: tool -> (repository, commit). Each recorder pins the files it
# runs or reads there (its A1111_FILES / COMFYUI_FILES).
CHECKOUTS = {
    "a1111": ("AUTOMATIC1111/stable-diffusion-webui",
              "82a973c04367123ae98bd9abdf80d9eda9b910e2"),  # master, 2024-07-27 (v1.10.1)
    "comfyui": ("Comfy-Org/ComfyUI",  # formerly comfyanonymous/ComfyUI
                "a125cd84b054a57729b5eecab930ca9408719832"),  # master, 2025-10-12
}

# A1111 clones crowsonkb/k-diffusion at this commit (modules/launch_utils.py, K_DIFFUSION_COMMIT_HASH); the
# PyPI files the recorders run are compared with it by content.
KDIFFUSION_REPO = "crowsonkb/k-diffusion"
KDIFFUSION_A1111_COMMIT = "ab527a9a6d347f364e3d185ba6d714e22d80cb3c"  # "Release 0.0.16"
KDIFFUSION_A1111_FILES = {  # file -> (last commit at ab527a9, sha256 LF)
    "k_diffusion/sampling.py": ("d911c4bec5783166af3b1af9e8ec7f6f7eeff4d5",
                                "4c5c2d92ddc2a07f9964440979430908d47a09634ac79f4a4e97c4f4682560bc"),
    "k_diffusion/external.py": ("4314f9101a2f3bd7f11ba4290d2a7e2e64b4ceea",
                                "422e6f3e35cac7d59974053dbd24977e773dc5a7cdb96ef0254caf5611f83995"),
}
TORCHSDE_FILES = ["torchsde/_brownian/brownian_interval.py", "torchsde/_brownian/derived.py"]


# --------------------------------------------------------------------------------------------------
# Stand-ins for the heavy upstream imports
# --------------------------------------------------------------------------------------------------

def module(name: str, **attrs) -> types.ModuleType:
    """A module ``name`` with ``attrs`` in ``sys.modules`` (and as an attribute of its parent package)."""
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, m)
    return m


def package(name: str, path: Path | None = None) -> types.ModuleType:
    """A package ``name`` whose submodules are found in ``path`` (none when ``path`` is None)."""
    m = module(name)
    m.__path__ = [str(path)] if path is not None else []
    return m


def noop(*_a, **_k):
    return None


class Anything:
    """Attribute sink for names upstream modules import but the recording never calls."""

    def __init__(self, *_a, **_k):
        pass

    def __call__(self, *_a, **_k):
        return None

    def __getattr__(self, _name):
        return Anything()

    def __iter__(self):
        return iter(())


def sink_module(name: str, **attrs) -> types.ModuleType:
    """A module whose every other attribute is an ``Anything``."""
    return module(name, __getattr__=lambda n: Anything(), **attrs)


def missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def stand_in_missing(name: str, **attrs) -> None:
    """``name`` as a stand-in module unless the package is installed (then the real one is used)."""
    if missing(name):
        module(name, **attrs)


def optional_standins() -> None:
    """Packages imported at module level by k-diffusion / ComfyUI but unused by sampling (not in the venv)."""
    stand_in_missing("torchdiffeq", odeint=Anything())  # k_diffusion.sampling: odeint, only for log_likelihood
    if missing("torchvision"):  # k_diffusion.utils: transforms.functional, only for image helpers
        package("torchvision")
        package("torchvision.transforms")
        sink_module("torchvision.transforms.functional")
    # comfy/ldm/modules/diffusionmodules/util.py: rearrange/repeat, unused by make_beta_schedule
    stand_in_missing("einops", rearrange=Anything(), repeat=Anything())


def kdiffusion_package():
    """crowsonkb's k-diffusion from PyPI without its package __init__ (which imports the training stack)."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the k-diffusion package is not installed (models/requirements.txt)")
    optional_standins()
    package("k_diffusion", Path(list(spec.submodule_search_locations)[0]))
    importlib.import_module("k_diffusion.utils")
    importlib.import_module("k_diffusion.sampling")
    importlib.import_module("k_diffusion.external")
    return sys.modules["k_diffusion.sampling"]


@contextlib.contextmanager
def patched(obj, name, value):
    """``obj.name = value`` for the duration of the block (yields the old value)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield old
    finally:
        setattr(obj, name, old)


def class_from_source(path: Path, name: str, namespace: dict) -> type:
    """The class ``name`` defined at the top level of the Python file ``path``, executed alone in ``namespace``
    (for a node class of a module whose imports need a whole install, such as ComfyUI's ``nodes.py``)."""
    import ast
    tree = ast.parse(path.read_text(), str(path))
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    if len(found) != 1:
        raise SystemExit(f"{path}: {len(found)} classes named {name}")
    scope = dict(namespace)
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec"), scope)
    return scope[name]


def defs_from_source(path: Path, names, namespace: dict, module_name: str) -> dict:
    """The top-level statements of the Python file ``path`` that define ``names`` (functions, classes, plain
    assignments), executed alone and in the file's order in a copy of ``namespace`` (compiled with the file's
    ``from __future__`` flags and its line numbers), for definitions of a module whose imports need a whole
    install (A1111's ``processing.py`` / ``images.py``). ``module_name``: their ``__module__``, a module of that
    name put into ``sys.modules``. Returns its namespace."""
    import __future__

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    wanted, found, flags = set(names), [], 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(__future__, alias.name).compiler_flag
        defined = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                   [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else [])
        if wanted & set(defined):
            found.append(node)
            wanted -= set(defined)
    if wanted:
        raise SystemExit(f"{path}: no top-level definition of {sorted(wanted)}")
    m = types.ModuleType(module_name)  # in sys.modules: dataclasses looks the class's module up
    m.__dict__.update(namespace)
    m.__file__ = str(path)
    sys.modules[module_name] = m
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec", flags=flags, dont_inherit=True),
         m.__dict__)
    return m.__dict__


def module_from_file(name: str, path: Path) -> types.ModuleType:
    """The Python file ``path`` run as a module ``name`` of its own (not put into ``sys.modules``), for an upstream
    module whose usual name is taken by a stand-in."""
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


# --------------------------------------------------------------------------------------------------
# The checkouts
# --------------------------------------------------------------------------------------------------

def check_files(root: Path, files, flag: str) -> None:
    for f in files:
        if not (root / f).is_file():
            raise SystemExit(f"{flag} {root}: {f} not found")


def a1111_checkout(root, files) -> Path:
    """A stable-diffusion-webui checkout holding ``files``, put first on ``sys.path``, its ``modules`` imported
    (the checkout's package, namespace or regular)."""
    root = Path(root)
    check_files(root, files, "--a1111")
    sys.path.insert(0, str(root))
    importlib.import_module("modules")
    return root


def a1111_runtime(opts, *, shared: dict | None = None, devices: dict | None = None, sinks=()) -> types.ModuleType:
    """Stand-ins for webui's runtime: ``modules.shared`` (``opts``, the CPU, no model, no command-line options,
    a sink ``state``; ``shared`` adds or replaces attributes), ``modules.devices`` (the CPU; plus ``devices``) and
    ``modules.<name>`` for each of ``sinks`` as an attribute sink. Returns ``modules.shared``."""
    import torch

    cpu = torch.device("cpu")
    m = module("modules.shared", **{"opts": opts, "device": cpu, "state": Anything(),
                                    "cmd_opts": types.SimpleNamespace(), "sd_model": None, **(shared or {})})
    module("modules.devices", device=cpu, cpu=cpu, **(devices or {}))
    for name in sinks:
        sink_module(f"modules.{name}")
    return m


def comfy_packages(root: Path, subs) -> None:
    """``comfy`` (sub "") and ``comfy.<sub>`` packages over the checkout's folders, where not yet in place."""
    comfy_dir = Path(root) / "comfy"
    for sub in subs:
        name = "comfy." + sub.replace("/", ".") if sub else "comfy"
        if name not in sys.modules or not getattr(sys.modules[name], "__path__", None):
            package(name, comfy_dir / sub if sub else comfy_dir)


def comfyui_checkout(root, files, subs=("",)) -> Path:
    """A ComfyUI checkout holding ``files``, put first on ``sys.path``, with the ``comfy`` packages of ``subs``
    over its folders (see ``comfy_packages``; their ``__init__`` files are not run)."""
    root = Path(root)
    check_files(root, files, "--comfyui")
    sys.path.insert(0, str(root))
    comfy_packages(root, subs)
    return root


def option_defaults(path: Path, keys) -> dict:
    """The literal defaults of ``"key": OptionInfo(default, ...)`` entries in A1111's shared_options.py."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for k, v in zip(node.keys, node.values):
            while isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute):  # OptionInfo(...).info(...).link(...)
                v = v.func.value
            if (isinstance(k, ast.Constant) and k.value in keys and isinstance(v, ast.Call)
                    and getattr(v.func, "id", None) == "OptionInfo" and v.args):
                found[k.value] = ast.literal_eval(v.args[0])
    absent = [k for k in keys if k not in found]
    if absent:
        raise SystemExit(f"{path}: no literal OptionInfo default for {absent}")
    return found


# --------------------------------------------------------------------------------------------------
# Recording what ran
# --------------------------------------------------------------------------------------------------

def file_digest(path: Path) -> str:
    """sha256 of the file with line endings normalised to LF (A1111 commits some files with CRLF)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def git_head(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


class Blob(str):
    """A pin's git blob id (``git hash-object FILE`` of the file as committed) where the table gives no commit."""


def git_blob(path: Path) -> str:
    """``git hash-object`` of the file: sha1 of ``blob <size>\\0`` and its bytes as they are."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pinned_source(root: Path, tool: str, files: dict, log, recorder: str) -> dict:
    """The "source" record of ``tool``'s checkout (see ``CHECKOUTS``): ``files`` maps a path to ``(commit,
    sha256_lf)`` or ``(role, commit, sha256_lf)`` as pinned, the commit the one that last changed the file, or a
    ``Blob`` (the file's git blob id, also checked) in its place; a file whose content differs is recorded with
    commit (or git_blob) null (and a warning), and the checkout's commit is its git HEAD, else the pinned checkout
    commit when every file is the pinned one, else null. ``recorder``: the recorder's path in this repository."""
    repo, commit = CHECKOUTS[tool]
    recorded, all_pinned = {}, True
    for f, pin in files.items():
        *role, file_commit, digest = pin
        actual = file_digest(root / f)
        pinned = actual == digest and (not isinstance(file_commit, Blob) or git_blob(root / f) == file_commit)
        all_pinned &= pinned
        if not pinned:
            log(f"  warning: {root / f} is not the pinned revision ({repo} {file_commit}); recorded with commit null")
        key = "git_blob" if isinstance(file_commit, Blob) else "commit"
        recorded[f] = {**({"role": role[0]} if role else {}), key: str(file_commit) if pinned else None,
                       "sha256_lf": actual}
    head = git_head(root)
    return {"repo": repo, "commit": head or (commit if all_pinned else None), "files": recorded,
            "recorder": recorder}


def package_source() -> dict:
    """The PyPI k-diffusion (compared with the commit A1111 pins) and torchsde files that ran, and versions."""
    kd_dir = Path(sys.modules["k_diffusion"].__path__[0])
    kd_files = {}
    for f, (commit, digest) in KDIFFUSION_A1111_FILES.items():
        actual = file_digest(kd_dir.parent / f)
        kd_files[f] = {"sha256_lf": actual, "same_as": f"{KDIFFUSION_REPO}@{KDIFFUSION_A1111_COMMIT}" if actual == digest
                       else None, "commit": commit if actual == digest else None}
    sde_dir = Path(list(importlib.util.find_spec("torchsde").submodule_search_locations)[0])
    return {
        "k_diffusion": {"package": "k-diffusion", "version": importlib.metadata.version("k-diffusion"),
                        "a1111_pins": f"{KDIFFUSION_REPO}@{KDIFFUSION_A1111_COMMIT} (modules/launch_utils.py)",
                        "files": kd_files},
        "torchsde": {"package": "torchsde", "version": importlib.metadata.version("torchsde"),
                     "files": {f: {"sha256_lf": file_digest(sde_dir.parent / f)} for f in TORCHSDE_FILES}},
        "trampoline": {"package": "trampoline", "version": importlib.metadata.version("trampoline")},
        "scipy": {"package": "scipy", "version": importlib.metadata.version("scipy")},
    }


def f32(t) -> np.ndarray:
    """A tensor (or array-like) as a C-order little-endian float32 array."""
    if hasattr(t, "detach"):
        import torch

        t = t.detach().cpu().to(dtype=torch.float32).numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32).astype("<f4"))


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def checkouts(who: str, a1111_dir: str | None, comfyui_dir: str | None) -> tuple[Path, Path]:
    """The two checkouts from the arguments, else from ``EASEL_A1111`` / ``EASEL_COMFYUI``."""
    a1111_dir = a1111_dir or os.environ.get("EASEL_A1111")
    comfyui_dir = comfyui_dir or os.environ.get("EASEL_COMFYUI")
    if not a1111_dir or not comfyui_dir:
        raise SystemExit(f"{who}: give --a1111 DIR and --comfyui DIR (or EASEL_A1111 / EASEL_COMFYUI)")
    return Path(a1111_dir), Path(comfyui_dir)


def cli(main, doc: str, default_out: str) -> None:
    """``python -m tooling.<recorder> [--a1111 DIR] [--comfyui DIR] [OUT]``: runs ``main(out, a1111, comfyui)``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--a1111", help="stable-diffusion-webui checkout (needs the files listed in A1111_FILES)")
    p.add_argument("--comfyui", help="ComfyUI checkout (needs the files listed in COMFYUI_FILES)")
    p.add_argument("out", nargs="?", default=default_out)
    args = p.parse_args()
    sys.exit(main(Path(args.out), args.a1111, args.comfyui))
