#!/usr/bin/env bash
# Installs what building and testing Easel needs, skipping everything already present.
#   scripts/setup.sh run    toolchain pieces + ONNX Runtime (enough to build and serve)
#   scripts/setup.sh test   the above + chromium, Playwright, the Python model tooling's venv
# Versions are pinned here and must match Cargo.lock (wasm-bindgen) and the build recipe.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION="0.3.10"   # 0.3.11 needs a newer rustc than 1.95
BINARYEN_VERSION="132.0.0"      # wasm-opt for release builds; Debian's binaryen 108 breaks hydration
TOOLS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/easel/tools"
mode="${1:-run}"

step() { printf '\n==> %s\n' "$*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

# Every crate Cargo.lock names, for every platform: builds fetch only this machine's, but the
# supply-chain test reads all of them offline (`cargo metadata --offline`).
if ! cargo metadata --format-version 1 --all-features --locked --offline >/dev/null 2>&1; then
  step "fetching every crate in Cargo.lock (all platforms)"
  cargo fetch --locked
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  step "installing cargo-leptos $CARGO_LEPTOS_VERSION (compiles once, ~18 min on 2 cores)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

wasm_bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
if ! wasm-bindgen --version 2>/dev/null | grep -q "$wasm_bindgen_version"; then
  step "installing wasm-bindgen-cli $wasm_bindgen_version (must equal Cargo.lock)"
  # Not --locked: its lock file pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version" --force
fi

if [ ! -x "$TOOLS_DIR/node_modules/.bin/wasm-opt" ]; then
  step "installing wasm-opt (npm binaryen $BINARYEN_VERSION) into $TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" "binaryen@$BINARYEN_VERSION" >&2
fi

if [ -n "${ORT_DYLIB_PATH:-}" ]; then
  # The user's own library (e.g. on macOS, where no wheel is pinned here); easel checks it at start.
  [ -f "$ORT_DYLIB_PATH" ] || { echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist" >&2; exit 1; }
  step "ONNX Runtime library: using ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
else
  step "ONNX Runtime library"
  scripts/setup-onnxruntime.sh >&2
fi

if [ "$mode" = "test" ]; then
  if [ ! -x /usr/bin/chromium ]; then
    step "installing Debian's chromium for the browser tests"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >&2
  fi
  if [ ! -d end2end/node_modules/@playwright/test ]; then
    step "installing Playwright (no browser download)"
    (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
  fi
  if [ -x models/sdtool ]; then
    step "Python venv for the model tooling"
    models/sdtool --help >/dev/null
  fi
fi
