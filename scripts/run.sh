#!/usr/bin/env bash
# Sets everything up (first run only), builds Easel in release mode and serves the web UI on the
# bundled tiny model. Extra arguments go to `easel serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
export PATH="${XDG_CACHE_HOME:-$HOME/.cache}/easel/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
cargo leptos build --release
export LEPTOS_SITE_ROOT="$PWD/target/site" LEPTOS_ENV=PROD
exec target/release/easel serve --models-dir models "$@"
