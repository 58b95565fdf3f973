"""The committed noise fixtures (tests/fixtures/noise) are complete and consistent.

``tooling.ref_noise`` records them by running A1111's ``modules/rng.py`` and ComfyUI's ``comfy/sample.py`` /
``default_noise_sampler`` from checkouts, which these tests do not need: they check that the index, the case
list and the files agree, and cross-check the recorded arrays against each other, against the NV Philox
docstring vector, and against torch's CPU generator directly (``torch.randn`` with
``torch.Generator("cpu").manual_seed(seed)``), which is what A1111's CPU source and ComfyUI use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "noise"
INDEX = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in INDEX["cases"]}
# Recorded on one machine, recomputed here: torch's float32 CPU normal kernel may differ in the last bits
# between CPU kinds (AVX2 vs portable), so "equal" means equal to float32 rounding.
TOL = dict(rtol=1e-5, atol=1e-6)


def load(name: str) -> np.ndarray:
    return np.load(FIXTURES / CASES[name]["file"])


def cpu_randn(seed: int, *shape: int) -> np.ndarray:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32).numpy()


def cpu_stream(seed: int, shape, n: int) -> list[np.ndarray]:
    g = torch.Generator("cpu").manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float32).numpy() for _ in range(n)]


def test_index_matches_the_case_list_and_the_files():
    from tooling.ref_noise import CASES as DEFINED

    assert [c["name"] for c in INDEX["cases"]] == [c.name for c in DEFINED]
    for key in ("a1111", "comfyui"):
        src = INDEX["source"][key]
        assert src["repo"] and src["commit"] and len(src["commit"]) == 40, key
        for f, rec in src["files"].items():
            assert rec["commit"] and len(rec["sha256_lf"]) == 64, (key, f)
    total = 0
    for case in INDEX["cases"]:
        path = FIXTURES / case["file"]
        arr = np.load(path)
        total += path.stat().st_size
        assert arr.dtype == np.float32 and arr.flags["C_CONTIGUOUS"], case["name"]
        assert list(arr.shape) == [len(case["draws"]), *case["shape"]], case["name"]
        assert np.isfinite(arr).all(), case["name"]
        assert case["tool"] in ("a1111", "comfyui")
        if case["tool"] == "a1111":
            assert case["randn_source"] in ("nv", "cpu")
        else:
            assert case["randn_source"] is None
        if case["batch"] is not None:
            assert case["shape"] == [case["batch"], 4, case["height"] // 8, case["width"] // 8], case["name"]
    assert total < 2_000_000
    names = {p.name for p in FIXTURES.glob("*.npy")}
    assert names == {c["file"] for c in INDEX["cases"]}


def test_nv_philox_docstring_vector():
    got = load("a1111_nv_randn_local_s0_3x4")[0]
    assert np.allclose(got, np.array(INDEX["philox_doc_vector"], dtype=np.float32), atol=1e-6, rtol=0)


def test_nv_seed_uses_all_64_bits():
    s0 = load("a1111_nv_randn_local_s0_4x8x8")
    assert not np.allclose(load("a1111_nv_randn_local_s4294967296_4x8x8"), s0)
    assert not np.allclose(load("a1111_nv_randn_local_s4294967301_4x8x8"), load("a1111_nv_randn_local_s0_4x8x8"))
    # Philox counters are per element: the first 256 values of a bigger draw are the small draw.
    big = load("a1111_nv_randn_local_s42_4x64x64")[0].reshape(-1)
    small = load("a1111_nv_randn_local_s42_4x8x8")[0].reshape(-1)
    assert np.array_equal(big[: small.size], small)
    for name in CASES:
        arr = load(name)
        if name.startswith("a1111_nv_randn_local_") and arr.size >= 256:
            assert abs(float(arr.mean())) < 0.3 and 0.7 < float(arr.std()) < 1.3, name


@pytest.mark.parametrize("seed", [1234, 42, 2**32 + 7])
def test_a1111_cpu_first_is_one_torch_generator_per_image(seed):
    case = CASES[f"a1111_cpu_first_s{seed}"]
    arr = load(case["name"])[0]
    assert case["seeds"] == [seed, seed + 1]
    for i, s in enumerate(case["seeds"]):
        assert np.allclose(arr[i], cpu_randn(s, 4, 8, 8), **TOL)
    if seed >= 2**32:  # torch's CPU generator (mt19937) keeps only the low 32 bits of the seed
        assert np.allclose(arr[0], cpu_randn(seed & 0xFFFFFFFF, 4, 8, 8), **TOL)


def test_a1111_nv_first_is_one_philox_generator_per_image():
    assert np.array_equal(load("a1111_nv_first_s42")[0, 0], load("a1111_nv_randn_local_s42_4x8x8")[0])
    assert not np.allclose(load("a1111_nv_first_s4294967303")[0, 0], load("a1111_cpu_first_s4294967303")[0, 0])
    assert not np.allclose(load("a1111_nv_first_s1234"), load("a1111_cpu_first_s1234"))


@pytest.mark.parametrize("seed", [0, 42, 2**32 + 5])
def test_comfyui_prepare_noise_is_one_draw_for_the_batch(seed):
    arr = load(f"comfyui_prepare_noise_s{seed}")[0]
    assert np.allclose(arr, cpu_randn(seed, 2, 4, 8, 8), **TOL)
    # batch_index [3, 1]: draws [1,4,8,8] for indices 0..3 in sequence, keeps 3 then 1.
    inds = load(f"comfyui_prepare_noise_s{seed}_inds3_1")[0]
    stream = cpu_stream(seed, (1, 4, 8, 8), 4)
    assert np.allclose(inds[0], stream[3][0], **TOL) and np.allclose(inds[1], stream[1][0], **TOL)


def test_comfyui_item0_equals_a1111_cpu_image0():
    comfy = load("comfyui_prepare_noise_s42")[0]
    a1111 = load("a1111_cpu_first_s42")[0]
    assert np.allclose(comfy[0], a1111[0], **TOL)
    assert not np.allclose(comfy[1], a1111[1])  # A1111 uses seed+1 for image 1, ComfyUI continues the stream


@pytest.mark.parametrize("src", ["nv", "cpu"])
def test_variation_seed_strengths(src):
    plain = load(f"a1111_{src}_first_s1234")
    s0 = load(f"a1111_{src}_subseed99_str0p0")
    s3 = load(f"a1111_{src}_subseed99_str0p3")
    s1 = load(f"a1111_{src}_subseed99_str1p0")
    assert CASES[f"a1111_{src}_subseed99_str0p0"]["seeds"] == [1234, 1235]
    assert CASES[f"a1111_{src}_subseed99_str1p0"]["seeds"] == [1234, 1234]
    assert np.array_equal(s0, plain)  # strength 0: the subseed is ignored
    # strength 1: slerp gives the subseed noise (subseeds 99, 100)
    if src == "cpu":
        for i in range(2):
            assert np.allclose(s1[0, i], cpu_randn(99 + i, 4, 8, 8), **TOL)
    else:
        assert np.allclose(s1[0, 0], load("a1111_nv_randn_local_s99_4x8x8")[0], **TOL)
    assert not np.allclose(s1[0, 0], s1[0, 1])
    # strength 0.3: between; both images start from the same main seed (1234) but different subseeds.
    assert not np.allclose(s3, s0[:, :1].repeat(2, axis=1)) and not np.allclose(s3, s1)
    assert not np.allclose(s3[0, 0], s3[0, 1])


def test_seed_resize_pastes_the_small_noise_centred():
    case = CASES["a1111_cpu_resize_48x40"]
    assert case["seed_resize_from"] == [48, 40]
    arr = load(case["name"])
    for i, seed in enumerate(case["seeds"]):
        small = cpu_randn(seed, 4, 6, 5)  # (48/8, 40/8), from the global generator seeded with the image seed
        full = cpu_stream(seed, (4, 8, 8), 2)  # the image's own generator: the base, then the sampler draw
        expect = full[0].copy()
        expect[:, 1:7, 1:6] = small  # dy = (8-6)//2, dx = (8-5)//2
        assert np.allclose(arr[0, i], expect, **TOL)
        assert np.allclose(arr[1, i], full[1], **TOL)
    nv = load("a1111_nv_resize_48x40")
    assert nv.shape == arr.shape and not np.allclose(nv, arr)


def test_cpu_sampler_noise_continues_each_image_generator():
    arr = load("a1111_cpu_steps_s1234")
    for i, seed in enumerate(CASES["a1111_cpu_steps_s1234"]["seeds"]):
        for d, expect in enumerate(cpu_stream(seed, (4, 8, 8), 3)):
            assert np.allclose(arr[d, i], expect, **TOL), (d, i)
    assert np.array_equal(arr[0], load("a1111_cpu_first_s1234")[0])


@pytest.mark.parametrize("src", ["nv", "cpu"])
def test_eta_noise_seed_delta_restarts_generators_after_the_first_noise(src):
    plain = load(f"a1111_{src}_steps_s1234")
    ensd = load(f"a1111_{src}_steps_s1234_ensd31337")
    assert CASES[f"a1111_{src}_steps_s1234_ensd31337"]["eta_noise_seed_delta"] == 31337
    assert np.array_equal(ensd[0], plain[0])  # the initial noise is unchanged
    assert not np.allclose(ensd[1], plain[1]) and not np.allclose(ensd[2], plain[2])
    if src == "cpu":
        for i, seed in enumerate((1234, 1235)):
            for d, expect in enumerate(cpu_stream(seed + 31337, (4, 8, 8), 2)):
                assert np.allclose(ensd[1 + d, i], expect, **TOL)
    else:  # fresh Philox generators: the first sampler draw is offset 0 of seed+ENSD, not the first noise
        assert not np.allclose(ensd[1], ensd[0])
    assert not np.allclose(ensd[1], ensd[2])


def test_comfyui_default_noise_sampler():
    case = CASES["comfyui_noise_sampler_s42"]
    offset = case["noise_sampler_seed_offset"]
    assert offset in (0, 1)  # 1 where the checked-out ComfyUI adds seed += 1 for x on the CPU
    arr = load(case["name"])
    for d, expect in enumerate(cpu_stream(42 + offset, (2, 4, 8, 8), 2)):
        assert np.allclose(arr[d], expect, **TOL)
    assert not np.allclose(arr[0], arr[1])
