#!/usr/bin/env bash
# The response cache against a bare nginx proxy hop, in one run of ../shared/bench/peers (see
# its README): the static nginx upstream (`direct`, no hop), nginx as a plain reverse proxy
# (`nginx-proxy`, one efficient hop), llmrr without the cache (`llmrr`, every request
# forwarded) and llmrr with it (`llmrr-cache`, every request after the first an L1 hit), each
# gateway pinned to one core. Builds llmrr in release mode first. Extra settings
# (CONCURRENCY, ROUNDS, DURATION, PEERS — default none of LiteLLM/Portkey) go to the harness;
# results land in RES_DIR (default /tmp/llmrr-bench/results).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_HARNESS:-$root/../shared/bench/peers}
[[ -x $peers/run.sh ]] || { echo "no harness at $peers (set PEERS_HARNESS)" >&2; exit 2; }
mkdir -p /tmp/llmrr-bench/results
rm -f /tmp/llmrr-bench/*.db*
cargo build --release -p llmrr-cli --manifest-path "$root/Cargo.toml"
key="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

export RES_DIR=${RES_DIR:-/tmp/llmrr-bench/results}
export PEERS=${PEERS-}
export LLMRR_MASTER_KEY=$key BENCH_UPSTREAM_KEY=sk-dummy-not-a-real-key RUST_LOG=warn
export PEER_CMD_nginx_proxy="$peers/examples/nginx-proxy.sh 18081"
export PEER_CMD_llmrr="$root/target/release/llmrr serve --config $root/bench/gateway/llmrr.toml"
export PEER_CMD_llmrr_cache="$root/target/release/llmrr serve --config $here/llmrr-cache.toml"
for n in llmrr llmrr_cache; do export "PEER_HEADERS_$n=Authorization: Bearer $key"; done
exec "$peers/run.sh" nginx-proxy=http://127.0.0.1:18081/v1 llmrr=http://127.0.0.1:18090/v1 \
    llmrr-cache=http://127.0.0.1:18093/v1 "$@"
