#!/usr/bin/env bash
# Gateway overhead of llmrr against LiteLLM and Portkey on the static upstream of
# ../shared/bench/peers (see its README). Builds llmrr in release mode, then runs the shared
# harness with two extra peers, each pinned to one core like the others, with master-key auth,
# metrics and the request log on:
#   llmrr        "mock-gpt" is a model (llmrr.toml)
#   llmrr-route  "mock-gpt" is a route over three models, balanced strategy (llmrr-route.toml)
# Set SYSALLOC=1 to add llmrr-sysalloc: llmrr built with the system allocator instead of
# mimalloc. Extra arguments and settings (CONCURRENCY, ROUNDS, PEERS, ...) go to the harness;
# results land in RES_DIR (default /tmp/llmrr-bench/results).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_HARNESS:-$root/../shared/bench/peers}
[[ -x $peers/run.sh ]] || { echo "no harness at $peers (set PEERS_HARNESS)" >&2; exit 2; }
mkdir -p /tmp/llmrr-bench/results
rm -f /tmp/llmrr-bench/*.db*

extra=()
if [[ ${SYSALLOC:-0} == 1 ]]; then
    cargo build --release -p llmrr-cli --no-default-features --features local --manifest-path "$root/Cargo.toml"
    cp "$root/target/release/llmrr" /tmp/llmrr-bench/llmrr-sysalloc
    sed -e 's/18090/18092/' -e 's/llmrr.db/llmrr-sys.db/' "$here/llmrr.toml" > /tmp/llmrr-bench/llmrr-sysalloc.toml
    export PEER_CMD_llmrr_sysalloc="/tmp/llmrr-bench/llmrr-sysalloc serve --config /tmp/llmrr-bench/llmrr-sysalloc.toml"
    extra+=(llmrr-sysalloc=http://127.0.0.1:18092/v1)
fi
cargo build --release -p llmrr-cli --manifest-path "$root/Cargo.toml"
key="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

export RES_DIR=${RES_DIR:-/tmp/llmrr-bench/results}
export LLMRR_MASTER_KEY=$key BENCH_UPSTREAM_KEY=sk-dummy-not-a-real-key RUST_LOG=warn
export PEER_CMD_llmrr="$root/target/release/llmrr serve --config $here/llmrr.toml"
export PEER_CMD_llmrr_route="$root/target/release/llmrr serve --config $here/llmrr-route.toml"
for n in llmrr llmrr_route llmrr_sysalloc; do export "PEER_HEADERS_$n=Authorization: Bearer $key"; done
exec "$peers/run.sh" llmrr=http://127.0.0.1:18090/v1 llmrr-route=http://127.0.0.1:18091/v1 "${extra[@]}" "$@"
