#!/usr/bin/env bash
# Local inference: `llmrr bench local` on each file (the engine through its provider interface,
# beside llama.cpp measured bare in the same process and build, llama-bench's method), and
# optionally llama.cpp's own llama-bench binary. Writes synthetic 270M models (Q8_0 and Q4_0)
# unless given files.
#
#   bench/local/run.sh [FILE.gguf ...]      THREADS=2 OUT=/tmp/llmrr-bench/local LLAMA_BENCH=…
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-build-deps.sh
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/llmrr-bench/local}
mkdir -p "$OUT"
cargo build --release -p llmrr-cli
LLMRR=target/release/llmrr

# llama.cpp's own llama-bench, when given (LLAMA_BENCH=path): the crate vendors llama.cpp
# without its tools, so it comes from elsewhere (e.g. llama-cpp-python's sdist, another version).
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
  if [ -n "${LLAMA_BENCH:-}" ]; then
    echo "llama-bench (-t $THREADS, pp512 / tg128, 3 reps):"
    echo
    "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 -o md 2>/dev/null
    echo
  fi
  echo "llmrr bench local (--threads $THREADS):"
  echo
  $LLMRR bench local "$f" --threads "$THREADS" --prompt-tokens 512 --tokens 128 2>/dev/null
  echo
done | tee "$OUT/report.md"
