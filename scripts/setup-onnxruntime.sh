#!/usr/bin/env bash
# Installs the ONNX Runtime shared library Easel loads at run time.
#
# The library comes from the official `onnxruntime` wheel on the Python package index (fetched with
# `pip download`, nothing is installed into any Python environment), is checked against a pinned
# sha256, and is extracted into the user cache dir, one of the places `easel` searches
# (ORT_DYLIB_PATH, next to the executable, then this folder). Re-running is instant when present.
# Prints the library path on stdout.
set -euo pipefail

ORT_VERSION="1.31.1"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}"
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

if [ -f "$lib" ] && [ -f "$dest/.verified-$ORT_VERSION" ]; then
  echo "$lib"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 with pip is needed once to fetch the ONNX Runtime wheel" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
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
