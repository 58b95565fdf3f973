#!/usr/bin/env bash
# Benchmark: Easel against diffusers' Python ONNX pipeline and diffusers PyTorch, same model
# architecture, settings and thread count, each in its own process. Prints a table; asserts nothing.
#   scripts/bench.sh ONNX_MODEL_DIR TORCH_MODEL_DIR [sizes...]
# Make the full-size random model first (never committed):
#   models/sdtool random sd15 --seed 0 /tmp/sd15   (writes the ONNX folder and, beside it, /tmp/sd15-torch)
set -euo pipefail
cd "$(dirname "$0")/.."
onnx_dir="${1:?ONNX model folder}"; torch_dir="${2:?torch model folder}"; shift 2
sizes=("${@:-256 512}")
threads="${BENCH_THREADS:-2}"; steps="${BENCH_STEPS:-4}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/setup-onnxruntime.sh)}"
cargo build --release --features ssr --bin easel >&2
results="$(mktemp)"
for size in ${sizes[@]}; do
  target/release/easel bench --model "$onnx_dir" --size "$size" --steps "$steps" --threads "$threads" --sampler pndm --json >> "$results"
  target/release/easel bench --model "$onnx_dir" --size "$size" --steps "$steps" --threads "$threads" --sampler pndm --low-memory --json >> "$results"
  (cd models && ./sdtool --help >/dev/null && .venv/bin/python -m tooling.bench_reference onnx "$onnx_dir" --size "$size" --steps "$steps" --threads "$threads") >> "$results"
  (cd models && .venv/bin/python -m tooling.bench_reference torch "$torch_dir" --size "$size" --steps "$steps" --threads "$threads") >> "$results"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"| impl | size | steps | load s | text s | unet s/step | vae s | total s | peak RSS GB |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    name = r["impl"] + (" (low memory)" if r.get("low_memory") else "")
    print(f"| {name} | {r['size']} | {r['steps']} | {r['load_s']:.1f} | {r['text_encoding_s']:.2f} | {r['unet_step_s']:.2f} | {r['vae_decode_s']:.2f} | {r['total_s']:.2f} | {r['peak_rss_gb']:.2f} |")
PY
