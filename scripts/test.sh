#!/usr/bin/env bash
# Sets everything up (first run only) and runs the whole test suite: rustfmt, clippy, the Rust unit
# and integration tests (among them tests/supply_chain.rs: Cargo.lock against the vendored RustSec
# advisory database, offline), the Python model-tooling tests, and the Playwright
# browser tests against the real server. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*" >&2; }

step "formatting (cargo fmt --check; rustfmt.toml)"
cargo fmt --check

step "clippy (server and browser builds)"
cargo clippy --features ssr --all-targets -- -D warnings
cargo clippy --features hydrate --lib --target wasm32-unknown-unknown -- -D warnings

step "Dockerfile lint (hadolint; no container engine needed)"
scripts/lint-dockerfile.sh

# Every stage is time-bounded so a hung test fails the run instead of stalling CI.
step "Rust unit and integration tests"
timeout 2400 cargo test --features ssr

if [ -x models/sdtool ]; then
  step "model tooling tests (Python)"
  timeout 1800 models/sdtool test
fi

# The clients people use, unchanged, against the real binary (the debug build the tests just made):
# the webuiapi package over A1111's API, a websocket client over ComfyUI's; about a minute.
step "API clients: webuiapi (A1111) and a ComfyUI websocket client against the real server"
timeout 900 models/sdtool test ../tests/clients -p no:cacheprovider

# Both start their own server (the debug binary the tests just built) on loopback; about a minute each.
step "load test: 50 clients, 500 jobs followed over SSE; nothing lost or duplicated"
timeout 900 python3 scripts/load_test.py --binary target/debug/easel
step "flood test: 1,000 event streams and 10,000 submissions at once; 429/503 where due, health answers, memory bounded"
timeout 600 python3 scripts/flood_test.py --binary target/debug/easel

step "leak test: 1,000 jobs in a row; resident memory within 5% of after the first 50"
timeout 900 python3 scripts/leak_test.py --binary target/debug/easel

step "browser tests (Playwright in Debian chromium, against the real server)"
e2e_data="$(mktemp -d)"
trap 'rm -rf "$e2e_data"' EXIT
# The Models page pulls from a fake hub the Playwright setup starts on this free port.
hub_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# A models dir of its own (the bundled models linked in), so files the tests write (a merged
# checkpoint) stay out of the checkout; and an AUTOMATIC1111-layout folder as an extra models dir
# holding a single-file checkpoint, a LoRA, a VAE and an embedding (end2end/tests/networks.spec.ts).
mkdir -p "$e2e_data/models" "$e2e_data/a1111/models/Stable-diffusion" "$e2e_data/a1111/models/Lora" "$e2e_data/a1111/models/VAE"
for model in models/tiny-sd*/; do ln -s "$PWD/$model" "$e2e_data/models/$(basename "$model")"; done
cp tests/fixtures/checkpoints/tiny-ldm.safetensors "$e2e_data/a1111/models/Stable-diffusion/"
cp tests/fixtures/lora/style-kohya.safetensors "$e2e_data/a1111/models/Lora/style.safetensors"
cp tests/fixtures/checkpoints/vae-standalone-bf16.safetensors "$e2e_data/a1111/models/VAE/tiny-vae.safetensors"
mkdir -p "$e2e_data/a1111/embeddings" && cp tests/fixtures/prompts/embeddings/tinystyle.safetensors "$e2e_data/a1111/embeddings/"
EASEL_E2E_HUB_PORT="$hub_port" HF_ENDPOINT="http://127.0.0.1:$hub_port" HF_HUB_CACHE="$e2e_data/hub" \
  EASEL_DATA_DIR="$e2e_data" EASEL_MODELS_DIR="$e2e_data/models" EASEL_EXTRA_MODELS_DIRS="$e2e_data/a1111" \
  timeout 1800 cargo leptos end-to-end
