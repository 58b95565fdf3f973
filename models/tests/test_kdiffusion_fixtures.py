"""The committed k-diffusion fixtures (tests/fixtures/kdiffusion) are complete and consistent.

``tooling.ref_kdiffusion`` records them by running A1111's and ComfyUI's sampler code from checkouts, which
these tests do not need: they check that the index and the files agree, and recompute pieces of the recorded
runs from the stored arrays alone (closed-form schedules, the stand-in model, the first Euler / Euler-ancestral
step with the noise each tool draws, the initial noise scaling) and the Brownian increments against torchsde
(in the venv) and their Gaussian scaling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from tooling.ref_kdiffusion import slug

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "kdiffusion"
INDEX = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
SCHEDULES = {c["name"]: c for c in INDEX["schedules"]}
SAMPLERS = {c["name"]: c for c in INDEX["samplers"]}
BROWNIAN = {c["name"]: c for c in INDEX["brownian"]}
SHAPE = INDEX["latent"]["shape"]
# Recomputed here in float64 / with torch's CPU kernels: equal to float32 rounding.
TOL = dict(rtol=1e-5, atol=1e-5)


def load(rel: str) -> np.ndarray:
    return np.load(FIXTURES / rel)


def sched(name: str) -> np.ndarray:
    return load(SCHEDULES[name]["file"])


def part(case: str, what: str) -> np.ndarray:
    return load(SAMPLERS[case]["files"][what])


def eps(x_in: np.ndarray, t: float) -> np.ndarray:
    """The stand-in of cases.json "standin" (float32)."""
    x_in = x_in.astype(np.float32)
    s = np.float32(1) + np.float32(t) / np.float32(1000)
    return np.float32(0.6) * x_in + np.float32(0.2) * np.sin(x_in * s)


def cpu_stream(seed: int, shape, n: int) -> list[np.ndarray]:
    g = torch.Generator("cpu").manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float32).numpy() for _ in range(n)]


def karras(n: int, smin: float, smax: float, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    s = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.append(s, 0.0)


def model_range(tool: str) -> tuple[float, float]:
    m = INDEX["model"][tool]
    return m["sigma_min"], m["sigma_max"]


# --------------------------------------------------------------------------------------------------
# Index and files
# --------------------------------------------------------------------------------------------------

def test_index_and_files_agree():
    for key in ("a1111", "comfyui"):
        src = INDEX["source"][key]
        assert src["repo"] and src["commit"] and len(src["commit"]) == 40, key
        for f, rec in src["files"].items():
            assert rec["commit"] and len(rec["sha256_lf"]) == 64, (key, f)
    assert INDEX["source"]["k_diffusion"]["version"] and INDEX["source"]["torchsde"]["version"]
    for f, rec in INDEX["source"]["k_diffusion"]["files"].items():
        assert rec["same_as"], f"PyPI k-diffusion {f} differs from the commit A1111 pins"

    declared = {"noise.npy", INDEX["model"]["a1111"]["sigmas"], INDEX["model"]["comfyui"]["sigmas"]}
    for s in INDEX["schedules"]:
        assert s["tool"] in ("a1111", "comfyui")
        if "error" in s:
            assert "file" not in s
            continue
        arr = sched(s["name"])
        declared.add(s["file"])
        assert arr.dtype == np.float32 and arr.shape == (s["len"],), s["name"]
        assert bool(np.isfinite(arr).all()) == s["finite"], s["name"]
    for c in INDEX["samplers"]:
        assert c["tool"] in ("a1111", "comfyui") and c["steps"] == 10 and c["seed"] == 42
        if "same_as" in c:
            assert "files" not in c and "files" in SAMPLERS[c["same_as"]], c["name"]
            continue
        n_cb, n_calls = len(c["callback_i"]), c["model_calls"]
        shapes = {"x": (n_cb, *SHAPE), "denoised": (n_cb, *SHAPE), "out": tuple(SHAPE), "calls": (n_calls, 2)}
        for what, rel in c["files"].items():
            arr = load(rel)
            declared.add(rel)
            assert arr.dtype == np.float32 and arr.flags["C_CONTIGUOUS"], (c["name"], what)
            assert np.isfinite(arr).all(), (c["name"], what)
            if what == "sigmas":
                assert arr.ndim == 1 and arr[0] > 0, c["name"]
            else:
                assert arr.shape == shapes[what], (c["name"], what, arr.shape)
        if c["tool"] == "a1111":
            assert c["display_name"] and c["seeds"] == [42, 43]
    for b in INDEX["brownian"]:
        q, inc = load(b["queries"]), load(b["increments"])
        declared |= {b["queries"], b["increments"]}
        assert q.shape == (b["n_queries"], 2) and inc.shape == (b["n_queries"], *b["x_shape"])
    on_disk = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.npy")}
    assert on_disk == declared
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 3_500_000  # (the whole fixture set stays small enough to keep in git)


def test_standin_matches_the_recorder():
    from tooling.ref_kdiffusion import SHAPE as REC_SHAPE, STANDIN, standin_eps

    assert INDEX["standin"] == STANDIN and list(REC_SHAPE) == SHAPE
    x = load("noise.npy")
    t = torch.tensor([999.0, 3.5])
    # torch's and numpy's float32 sin may differ in the last bit
    assert np.allclose(standin_eps(torch.from_numpy(x), t).numpy()[1], eps(x[1], 3.5), rtol=0, atol=1e-6)


def test_every_tool_sampler_is_recorded_or_skipped():
    a1111 = {c["display_name"] for c in INDEX["samplers"] if c["tool"] == "a1111" and c.get("kind") != "timesteps"}
    assert set(INDEX["a1111_automatic"]) == a1111
    timesteps = {c["display_name"]: c["sampler"] for c in INDEX["samplers"] if c.get("kind") == "timesteps"}
    assert timesteps == {"DDIM": "ddim", "DDIM CFG++": "ddim_cfgpp", "PLMS": "plms", "UniPC": "unipc"}
    assert {"Euler", "Euler a", "Heun", "DPM2", "DPM2 a", "LMS", "DPM fast", "DPM adaptive", "DPM++ 2S a",
            "DPM++ SDE", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "Restart", "LCM"} <= a1111
    for name in a1111:  # Automatic always, plus Karras where Automatic is something else
        auto = INDEX["a1111_automatic"][name]["resolves_to"]
        scheds = {c["scheduler"] for c in INDEX["samplers"] if c["display_name"] == name}
        assert scheds == ({"Automatic"} if auto == "Karras" else {"Automatic", "Karras"}), name
    comfy = {c["sampler"] for c in INDEX["samplers"] if c["tool"] == "comfyui"}
    skipped = {s["sampler"] for s in INDEX["skipped"] if s["tool"] == "comfyui"}
    for name in ("euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
                 "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m",
                 "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
                 "res_multistep", "gradient_estimation", "er_sde", "seeds_2", "seeds_3"):
        assert name in comfy | skipped, name
    assert all(s["reason"] for s in INDEX["skipped"])


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tool,name", [("a1111", "a1111_euler_karras_{n}"), ("comfyui", "comfyui_euler_karras_{n}")])
@pytest.mark.parametrize("n", [10, 3, 1])
def test_karras_closed_form(tool, name, n):
    smin, smax = model_range(tool)
    assert np.allclose(sched(name.format(n=n)), karras(n, smin, smax), rtol=1e-5, atol=1e-7)


def test_a1111_automatic_resolution():
    smin, smax = model_range("a1111")
    table = load(INDEX["model"]["a1111"]["sigmas"]).astype(np.float64)
    for name, auto in INDEX["a1111_automatic"].items():
        for n in (10, 3, 1):
            if name == "Euler":
                got = sched(f"a1111_euler_automatic_{n}")
            else:
                s = SCHEDULES[f"a1111_{slug(name)}_automatic_{n}"]
                assert s["resolves_to"] == auto["resolves_to"], name
                got = sched(s["name"])
            if name == "LCM":
                continue  # its own 50-entry table
            if auto["resolves_to"] == "Karras":
                want = karras(n + 1, smin, smax) if auto["discard_penultimate_sigma"] else karras(n, smin, smax)
                if auto["discard_penultimate_sigma"]:
                    want = np.delete(want, -2)
                assert np.allclose(got, want, rtol=1e-5, atol=1e-7), (name, n)
            elif auto["resolves_to"] == "model_wrap.get_sigmas":  # Uniform: t = linspace(999, 0, n), log-linear
                t = np.linspace(999, 0, n)
                lo, hi, w = np.floor(t).astype(int), np.ceil(t).astype(int), t - np.floor(t)
                want = np.append(np.exp((1 - w) * np.log(table[lo]) + w * np.log(table[hi])), 0.0)
                assert np.allclose(got, want, rtol=1e-5, atol=1e-7), (name, n)
                assert np.array_equal(got, sched(f"a1111_euler_uniform_{n}")), (name, n)
            else:
                assert len(got) == n + 1 and got[-1] == 0 and np.isclose(got[0], smax, rtol=1e-5), (name, n)
    assert INDEX["a1111_automatic"]["DPM++ 2M SDE"]["resolves_to"] == "Exponential"
    assert np.array_equal(sched("a1111_dpmpp_2m_sde_automatic_10"), sched("a1111_euler_exponential_10"))


def test_schedule_shapes_and_quirks():
    smin, smax = model_range("a1111")
    for n in (10, 3, 1):
        for label in ("uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "simple", "normal", "beta",
                      "align_your_steps"):
            s = sched(f"a1111_euler_{label}_{n}")
            assert len(s) == n + 1 and s[-1] == 0 and np.all(np.diff(s) < 0), (label, n)
        kl = sched(f"a1111_euler_kl_optimal_{n}")  # A1111 KL Optimal: i/n for i = 0..n, ends at sigma_min, no 0
        assert len(kl) == n + 1 and np.isclose(kl[-1], smin, rtol=1e-5)
        i = np.arange(n + 1) / n
        assert np.allclose(kl, np.tan(i * np.arctan(smin) + (1 - i) * np.arctan(smax)), rtol=1e-5)
    exp10 = sched("a1111_euler_exponential_10")[:-1]
    assert np.allclose(exp10, np.exp(np.linspace(math.log(smax), math.log(smin), 10)), rtol=1e-5)
    for name in ("comfyui_euler_simple_10", "comfyui_euler_normal_10", "comfyui_euler_karras_10"):
        assert len(sched(name)) == 11 and sched(name)[-1] == 0
    table = load(INDEX["model"]["comfyui"]["sigmas"])
    assert np.array_equal(sched("comfyui_euler_simple_10")[:-1], table[[999 - 100 * i for i in range(10)]])
    assert not SCHEDULES["comfyui_euler_kl_optimal_1"]["finite"]  # ComfyUI divides by n - 1 = 0
    for name in ("dpm_2", "dpm_2_ancestral", "uni_pc"):  # 11 sigmas, penultimate dropped
        s = sched(f"comfyui_{name}_simple_10")
        assert len(s) == 11 and s[-1] == 0


# --------------------------------------------------------------------------------------------------
# Sampler runs
# --------------------------------------------------------------------------------------------------

def a1111_sigma_to_t(sigma: float) -> float:
    """k-diffusion DiscreteSchedule.sigma_to_t (not quantized), float64."""
    log_sigmas = np.log(load(INDEX["model"]["a1111"]["sigmas"]).astype(np.float64))
    ls = math.log(sigma)
    lo = min(int(np.argmax(np.cumsum(ls - log_sigmas >= 0))), len(log_sigmas) - 2)
    w = min(max((log_sigmas[lo] - ls) / (log_sigmas[lo] - log_sigmas[lo + 1]), 0.0), 1.0)
    return (1 - w) * lo + w * (lo + 1)


def comfy_timestep(sigma: float) -> int:
    log_sigmas = np.log(load(INDEX["model"]["comfyui"]["sigmas"]).astype(np.float64))
    return int(np.argmin(np.abs(math.log(sigma) - log_sigmas)))


@pytest.mark.parametrize("case", ["a1111_euler_automatic", "a1111_lms_karras", "comfyui_euler_simple",
                                  "comfyui_dpmpp_2m_simple"])
def test_first_call_is_the_standin_through_the_tool_denoiser(case):
    c = SAMPLERS[case]
    x, d, calls = part(case, "x")[0], part(case, "denoised")[0], part(case, "calls")
    sigma, t = float(calls[0, 0]), float(calls[0, 1])
    assert sigma == part(case, "sigmas")[0]
    if c["tool"] == "a1111":
        assert abs(t - a1111_sigma_to_t(sigma)) < 1e-3
    else:
        assert t == comfy_timestep(sigma) == 999
    c_in = np.float32(1) / np.sqrt(np.float32(sigma) ** 2 + np.float32(1))
    want = x - np.float32(sigma) * eps(x * c_in, t)
    assert np.allclose(d, want, **TOL)


def test_initial_x_scaling():
    noise = load("noise.npy")
    assert np.array_equal(noise, torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(0)).numpy())
    for c in INDEX["samplers"]:
        if "same_as" in c:
            continue
        s0 = part(c["name"], "sigmas")[0]
        if c.get("kind") == "timesteps":  # CompVisSampler.sample starts from the noise itself
            assert c["x0_scale"] == 1.0, c["name"]
        elif c["tool"] == "a1111":  # x = noise * sigmas[0]
            assert c["x0_scale"] == s0, c["name"]
        else:  # EPS.noise_scaling with max_denoise: noise * sqrt(1 + sigma0^2)
            # float32 sqrt may differ by one ulp between CPUs' vector kernels.
            assert math.isclose(c["x0_scale"], float(torch.sqrt(1.0 + torch.tensor(s0) ** 2.0)), rel_tol=2e-7), c["name"]
        if "callback_note" not in c:  # the first callback sees the initial x
            assert np.array_equal(part(c["name"], "x")[0], noise * np.float32(c["x0_scale"])), c["name"]


@pytest.mark.parametrize("case", ["a1111_euler_automatic", "a1111_euler_karras", "comfyui_euler_simple"])
def test_euler_steps_from_the_stored_arrays(case):
    x, d, sig, out = part(case, "x"), part(case, "denoised"), part(case, "sigmas"), part(case, "out")
    for i in range(len(sig) - 1):
        nxt = x[i] + (x[i] - d[i]) / sig[i] * (sig[i + 1] - sig[i])
        assert np.allclose(nxt, x[i + 1] if i + 1 < len(x) else out, **TOL), i


def sd15_alphas_cumprod() -> np.ndarray:
    """LDM's register_schedule: cumprod(1 - linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2) in float64, float32."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas).astype(np.float32)


@pytest.mark.parametrize("case", ["a1111_ddim_automatic", "a1111_ddim_cfgpp_automatic", "a1111_plms_automatic"])
def test_a1111_timestep_samplers_from_the_stored_arrays(case):
    """DDIM (eta 0) and PLMS written out from the DDIM paper's update and Adams-Bashforth weights, over the recorded
    timesteps: A1111's range(0, 1000, 1000 // steps) + 1, walked from the last down to the second."""
    ts = part(case, "sigmas").astype(np.int64)
    assert list(ts) == [1 + 100 * i for i in range(10)]
    ac = sd15_alphas_cumprod().astype(np.float64)
    xs, preds, out = part(case, "x"), part(case, "denoised"), part(case, "out")
    x, old = load("noise.npy").astype(np.float64), []

    def update(x, e, index):
        a_t, a_prev = ac[ts[index]], ac[ts[index - 1]]
        pred = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        return math.sqrt(a_prev) * pred + math.sqrt(1 - a_prev) * e, pred

    for i, index in enumerate(range(len(ts) - 1, 0, -1)):
        e = eps(x, ts[index]).astype(np.float64)
        if case != "a1111_plms_automatic" or not old:  # (without guidance DDIM CFG++ is DDIM)
            prime = e
            if case == "a1111_plms_automatic":  # the first PLMS step: improved Euler over two model calls
                ahead, _ = update(x, e, index)
                prime = (e + eps(ahead, ts[index - 1])) / 2
        elif len(old) == 1:
            prime = (3 * e - old[-1]) / 2
        elif len(old) == 2:
            prime = (23 * e - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            prime = (55 * e - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        old = (old + [e])[-3:]
        x, pred = update(x, prime, index)
        assert np.allclose(x, xs[i], **TOL) and np.allclose(pred, preds[i], **TOL), (case, i)
    assert np.allclose(x, out, **TOL)
    assert SAMPLERS[case]["model_calls"] == (10 if case == "a1111_plms_automatic" else 9)


def ancestral_step(s_from: float, s_to: float) -> tuple[float, float]:
    up = min(s_to, math.sqrt(s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2))
    return math.sqrt(s_to ** 2 - up ** 2), up


def test_euler_ancestral_noise_is_each_tool_generator():
    # A1111: per-image generators seeded 42, 43; their first draw was the (replaced) initial noise.
    case = "a1111_euler_a_automatic"
    x, d, sig = part(case, "x"), part(case, "denoised"), part(case, "sigmas").astype(np.float64)
    streams = [cpu_stream(seed, SHAPE[1:], 3) for seed in SAMPLERS[case]["seeds"]]
    for i in range(2):
        down, up = ancestral_step(sig[i], sig[i + 1])
        noise = np.stack([s[1 + i] for s in streams])
        want = x[i] + (x[i] - d[i]) / sig[i] * (down - sig[i]) + noise * up
        assert np.allclose(want, x[i + 1], rtol=1e-5, atol=1e-4), i
    # ComfyUI: one generator seeded 42 for the batch (default_noise_sampler), one [2,4,8,8] draw per step.
    case = "comfyui_euler_ancestral_simple"
    x, d, sig = part(case, "x"), part(case, "denoised"), part(case, "sigmas").astype(np.float64)
    stream = cpu_stream(42, SHAPE, 2)
    for i in range(2):
        down, up = ancestral_step(sig[i], sig[i + 1])
        want = x[i] + (x[i] - d[i]) / sig[i] * (down - sig[i]) + stream[i] * up
        assert np.allclose(want, x[i + 1], rtol=1e-5, atol=1e-4), i


def test_stochastic_flags():
    for name in ("a1111_euler_automatic", "a1111_heun_karras", "a1111_dpmpp_2m_automatic", "comfyui_euler_simple",
                 "comfyui_dpm_fast_simple", "comfyui_dpm_adaptive_simple"):
        assert not SAMPLERS[name]["stochastic"], name
    for name in ("a1111_euler_a_automatic", "a1111_dpmpp_sde_automatic", "a1111_dpm_fast_automatic",
                 "a1111_dpm_adaptive_automatic", "a1111_lcm_automatic", "comfyui_euler_ancestral_simple",
                 "comfyui_dpmpp_sde_simple", "comfyui_dpmpp_2m_sde_simple", "comfyui_lcm_simple"):
        assert SAMPLERS[name]["stochastic"], name
    # A1111 runs DPM fast / adaptive with eta = opts.eta_ancestral (1.0); ComfyUI leaves eta at 0.
    assert SAMPLERS["a1111_dpm_fast_automatic"]["kwargs"]["eta"] == 1.0
    assert SAMPLERS["a1111_euler_automatic"]["noise_draws"] == 10  # drawn every step, multiplied by gamma = 0
    for c in INDEX["samplers"]:
        if "same_as" in c:
            ref = SAMPLERS[c["same_as"]]
            assert ref["model_calls"] == c["model_calls"] and ref["brownian_queries"] == c["brownian_queries"]


# --------------------------------------------------------------------------------------------------
# Brownian tree
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a1111_dpmpp_sde", "comfyui_dpmpp_sde"])
def test_brownian_increments_are_gaussian_scaled(name):
    b = BROWNIAN[name]
    q, inc = load(b["queries"]).astype(np.float64), load(b["increments"]).astype(np.float64)
    assert b["n_queries"] == 18  # 9 non-final DPM++ SDE steps ask two increments each
    for (s, sn), w in zip(q, inc):
        assert sn < s
        ratio = float(np.mean(w ** 2)) / abs(sn - s)
        assert 0.7 < ratio < 1.35, (s, sn, ratio)
        assert abs(float(w.mean())) < 4 * math.sqrt(abs(sn - s) / w.size)
    # one tree per image (A1111) or one for the batch (ComfyUI): images never share noise
    assert not np.allclose(inc[:, 0], inc[:, 1])


@pytest.mark.parametrize("name", ["a1111_dpmpp_sde", "comfyui_dpmpp_sde"])
def test_brownian_tree_rebuilt_with_torchsde(name):
    torchsde = pytest.importorskip("torchsde")
    b = BROWNIAN[name]
    sig = torch.from_numpy(load(b["sigmas"]))
    t0, t1 = sig[sig > 0].min(), sig.max()
    q, inc = load(b["queries"]), load(b["increments"])
    entropy = b["construction"]["entropy"]
    shape = SHAPE[1:] if b["tool"] == "a1111" else SHAPE
    trees = [torchsde.BrownianTree(t0, torch.zeros(shape), t1, entropy=e) for e in entropy]
    for (s, sn), w in zip(q[:6], inc[:6]):
        lo, hi = torch.tensor(sn), torch.tensor(s)
        got = torch.stack([tree(lo, hi) for tree in trees]) * -1.0  # W(sigma_next) - W(sigma)
        got = got if b["tool"] == "a1111" else got[0]
        assert np.allclose(got.numpy(), w, rtol=1e-5, atol=1e-6)
