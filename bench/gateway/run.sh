#!/usr/bin/env bash
# Gateway overhead of llmrr against LiteLLM and Portkey on the static upstream of
# ../shared/bench/peers (see its README). Builds llmrr in release mode, then runs the shared
# harness with llmrr as an extra peer: pinned to one core like the others, with master-key auth,
# metrics and the request log on. Extra arguments and settings (CONCURRENCY, ROUNDS, PEERS, …)
# go to the harness.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_HARNESS:-$root/../shared/bench/peers}
[[ -x $peers/run.sh ]] || { echo "no harness at $peers (set PEERS_HARNESS)" >&2; exit 2; }

cargo build --release -p llmrr-cli --manifest-path "$root/Cargo.toml"
rm -f /tmp/llmrr-bench/llmrr.db* && mkdir -p /tmp/llmrr-bench/results
key="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

export RES_DIR=${RES_DIR:-/tmp/llmrr-bench/results}
export LLMRR_MASTER_KEY=$key BENCH_UPSTREAM_KEY=sk-dummy-not-a-real-key RUST_LOG=warn
export PEER_CMD_llmrr="$root/target/release/llmrr serve --config $here/llmrr.toml"
export PEER_HEADERS_llmrr="Authorization: Bearer $key"
exec "$peers/run.sh" llmrr=http://127.0.0.1:18090/v1 "$@"
