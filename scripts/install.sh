#!/usr/bin/env bash
# Installs Easel so that `easel serve` works from any directory, without the source checkout:
#
#   PREFIX/lib/easel/easel                  the release binary
#   PREFIX/lib/easel/site/                  the web UI (wasm, js, css), found beside the binary
#   PREFIX/lib/easel/libonnxruntime.so.*    ONNX Runtime, found beside the binary
#   PREFIX/bin/easel -> ../lib/easel/easel
#   <data dir>/models/tiny-sd               the bundled tiny model (kept if already there)
#
# Usage: scripts/install.sh [--prefix DIR]        (default: ~/.local)
# Uninstall: rm -rf PREFIX/lib/easel PREFIX/bin/easel   (the data dir keeps jobs, images, models)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="$HOME/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
scripts/setup.sh run
export PATH="${XDG_CACHE_HOME:-$HOME/.cache}/easel/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
cargo leptos build --release

lib="$prefix/lib/easel"
mkdir -p "$lib" "$prefix/bin"
# Replace files by rename so a running easel keeps its old files until it exits.
install -m 0755 target/release/easel "$lib/easel.new" && mv -f "$lib/easel.new" "$lib/easel"
rm -rf "$lib/site.new" && cp -r target/site "$lib/site.new" && rm -rf "$lib/site" && mv "$lib/site.new" "$lib/site"
ort_dir="${XDG_CACHE_HOME:-$HOME/.cache}/easel/onnxruntime"
cp -f "$ort_dir"/libonnxruntime.so.* "$lib/"
for f in "$ort_dir"/libonnxruntime_providers_*.so; do
  [ -e "$f" ] && cp -f "$f" "$lib/"
done
ln -sfn ../lib/easel/easel "$prefix/bin/easel"

data="${EASEL_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/easel}"
mkdir -p "$data/models"
if [ ! -d "$data/models/tiny-sd" ]; then
  cp -r models/tiny-sd "$data/models/tiny-sd"
fi

echo
"$prefix/bin/easel" --version
echo "installed in $lib ($(du -sh "$lib" | cut -f1)), took $(( $(date +%s) - started )) s"
echo "models dir: $data/models (when the current directory has no ./models)"
case ":$PATH:" in
  *":$prefix/bin:"*) echo "run: easel serve" ;;
  *) echo "add $prefix/bin to PATH, then run: easel serve   (or run $prefix/bin/easel serve)" ;;
esac
