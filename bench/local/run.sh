#!/usr/bin/env bash
# Local inference: llmrr's engine against llama.cpp's own llama-bench, same file, same threads,
# same llama.cpp source (the copy vendored by llama-cpp-sys-2, built with the same options:
# native SIMD, OpenMP, Release). Writes synthetic 270M models (Q8_0 and Q4_0) unless given files.
#
#   bench/local/run.sh [FILE.gguf ...]      THREADS=2 OUT=/tmp/llmrr-bench/local
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-build-deps.sh
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/llmrr-bench/local}
mkdir -p "$OUT"
cargo build --release -p llmrr-cli
LLMRR=target/release/llmrr

SYS=$(cargo metadata --format-version 1 | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "llama-cpp-sys-2").rsplit("/", 1)[0])')
if [ ! -x "$OUT/llama.cpp-build/bin/llama-bench" ]; then
  cmake -S "$SYS/llama.cpp" -B "$OUT/llama.cpp-build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$OUT/llama.cpp-build" --target llama-bench -j "$(nproc)" >/dev/null
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for q in q8_0 q4_0; do
    [ -f "$OUT/synth-270m-$q.gguf" ] || $LLMRR models synth --preset 270m --quant $q --out "$OUT/synth-270m-$q.gguf"
    files+=("$OUT/synth-270m-$q.gguf")
  done
fi
for f in "${files[@]}"; do
  echo "## $(basename "$f")"
  echo
  echo "llama.cpp llama-bench (-t $THREADS, pp512 / tg128, 3 reps):"
  echo
  "$OUT/llama.cpp-build/bin/llama-bench" -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 -o md 2>/dev/null
  echo
  echo "llmrr bench local (--threads $THREADS):"
  echo
  $LLMRR bench local "$f" --threads "$THREADS" --prompt-tokens 512 --tokens 128 2>/dev/null
  echo
done | tee "$OUT/report.md"
