#!/usr/bin/env bash
# Installs the ONNX Runtime shared library Easel loads at run time.
#
#   scripts/setup-onnxruntime.sh         the CPU build (every machine; what the tests use)
#   scripts/setup-onnxruntime.sh --gpu   the CUDA build beside it, for `easel --device cuda`
#                                        (Linux x86_64, an NVIDIA driver for CUDA 13)
#
# The library comes from the official `onnxruntime` (or `onnxruntime-gpu`) wheel on the Python package
# index (fetched with `pip download`, nothing is installed into any Python environment), is checked
# against a pinned sha256, and is extracted into the user cache dir, one of the places `easel` searches
# (ORT_DYLIB_PATH, next to the executable, then this folder). The CUDA build also gets the CUDA 13 and
# cuDNN 9 libraries it needs, from NVIDIA's wheels (versions and sha256 in
# scripts/onnxruntime-gpu-requirements.txt), extracted into the same folder; Easel preloads them from
# there. Re-running is instant when present. Prints the library path on stdout.
set -euo pipefail

gpu=0
case "${1:-}" in
  "") ;;
  --gpu) gpu=1 ;;
  *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
esac

ORT_VERSION="1.31.1"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}"
here="$(cd "$(dirname "$0")" && pwd)"

# Prints the library and stops when an earlier run installed and verified it ($lib, $dest).
finish_if_verified() {
  if [ -f "$lib" ] && [ -f "$dest/.verified-$ORT_VERSION" ]; then
    echo "$lib"
    exit 0
  fi
}

# Checks for python3 (it fetches $1 once) and makes $tmp, removed on exit.
start_fetch() {
  command -v python3 >/dev/null || { echo "error: python3 with pip is needed once to fetch $1" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
}

if [ "$gpu" = 1 ]; then
  # Easel looks here first for --device cuda (engine/runtime.rs, GPU_DIR).
  dest="$cache_root/easel/onnxruntime-gpu"
  lib="$dest/libonnxruntime.so.$ORT_VERSION"
  if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "error: the CUDA build is set up for Linux x86_64 only; elsewhere download onnxruntime-gpu $ORT_VERSION" \
         "yourself and set ORT_DYLIB_PATH to its libonnxruntime (see docs/install.md)" >&2
    exit 1
  fi
  finish_if_verified
  start_fetch "the wheels"
  echo "fetching onnxruntime-gpu $ORT_VERSION and its CUDA 13 / cuDNN 9 libraries (about 1.5 GB) ..." >&2
  # pip takes a wheel only for a platform named here (NVIDIA's are tagged for older glibc versions).
  platforms=()
  for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010; do
    platforms+=(--platform "${tag}_x86_64")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 "${platforms[@]}" \
    --require-hashes -r "$here/onnxruntime-gpu-requirements.txt" -d "$tmp" >&2
  mkdir -p "$dest"
  python3 - "$tmp" "$dest" "$ORT_VERSION" <<'PY'
import os, sys, zipfile
tmp, dest, version = sys.argv[1:]
kept = []
for wheel in sorted(os.listdir(tmp)):
    with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            ort = name.startswith("onnxruntime/capi/lib") and ".so" in base
            nvidia = name.startswith("nvidia/") and "/lib/lib" in name and ".so." in base
            if not (ort or nvidia):
                continue
            target = os.path.join(dest, base)
            with z.open(name) as src, open(target + ".part", "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(target + ".part", target)
            kept.append(base)
needed = [f"libonnxruntime.so.{version}", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so",
          "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcufft.so.12", "libcudnn.so.9"]
missing = [n for n in needed if n not in kept]
if missing:
    sys.exit(f"error: the wheels did not hold {', '.join(missing)}")
PY
  touch "$dest/.verified-$ORT_VERSION"
  echo "$lib"
  exit 0
fi

dest="$cache_root/easel/onnxruntime"
lib="$dest/libonnxruntime.so.$ORT_VERSION"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64)
    platform="manylinux_2_28_x86_64"
    wheel_sha256="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f" ;;
  Linux-aarch64)
    platform="manylinux_2_28_aarch64"
    wheel_sha256="da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3" ;;
  *)
    echo "error: no pinned ONNX Runtime wheel for $(uname -s)-$(uname -m); download onnxruntime $ORT_VERSION" \
         "yourself and set ORT_DYLIB_PATH to its libonnxruntime (see docs/install.md)" >&2
    exit 1 ;;
esac

finish_if_verified
start_fetch "the ONNX Runtime wheel"
echo "fetching onnxruntime $ORT_VERSION ($platform) ..." >&2
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform "$platform" -d "$tmp" "onnxruntime==$ORT_VERSION" >&2
wheel="$(ls "$tmp"/onnxruntime-"$ORT_VERSION"-*.whl)"
got="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [ "$got" != "$wheel_sha256" ]; then
  echo "error: $(basename "$wheel") has sha256 $got, expected $wheel_sha256; not installing it" >&2
  exit 1
fi
mkdir -p "$dest"
python3 - "$wheel" "$dest" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in (f"onnxruntime/capi/libonnxruntime.so.{version}", "onnxruntime/capi/libonnxruntime_providers_shared.so"):
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target + ".part", "wb") as out:
            out.write(src.read())
        os.replace(target + ".part", target)
PY
touch "$dest/.verified-$ORT_VERSION"
echo "$lib"
