#!/usr/bin/env bash
# Sizing numbers for docs/DEPLOY.md, measured on this machine with the release build:
#   1. memory per concurrent stream: streams.py (a slow upstream + N streaming clients) against
#      llmrr with streams.toml, for each N in STREAMS (default "1000 3000");
#   2. requests/s per core and what logs and traces cost: the shared peer harness
#      (../shared/bench/peers, static nginx upstream, llmrr pinned to one core) with three
#      configurations of the same binary — text access lines (the default), JSON access lines,
#      and JSON + OTLP traces of every request (sample_ratio 1, exported to the harness's nginx).
# PART=1 or PART=2 runs one part. Results: /tmp/llmrr-ops/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=/tmp/llmrr-ops
mkdir -p "$out"
cargo build --release -p llmrr-cli --manifest-path "$root/Cargo.toml"
bin=$root/target/release/llmrr
key="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export LLMRR_MASTER_KEY=$key BENCH_UPSTREAM_KEY=sk-dummy-not-a-real-key

if [[ ${PART:-1} == 1 ]]; then
    ulimit -n "$(ulimit -Hn)"   # two descriptors a stream, in each process
    for n in ${STREAMS:-1000 3000}; do
        rm -f "$out"/llmrr.db*
        "$bin" serve --config "$here/streams.toml" 2>"$out/streams-$n.log" &
        pid=$!
        for _ in $(seq 100); do curl -fs http://127.0.0.1:18095/health/live >/dev/null && break; sleep 0.1; done
        python3 "$here/streams.py" --gateway 127.0.0.1:18095 --key "$key" --pid "$pid" \
            --streams "$n" | tee "$out/streams-$n.json"
        kill -TERM "$pid"; wait "$pid" || true
    done
fi

if [[ ${PART:-2} == 2 ]]; then
    peers=${PEERS_HARNESS:-$root/../shared/bench/peers}
    [[ -x $peers/run.sh ]] || { echo "no harness at $peers (set PEERS_HARNESS)" >&2; exit 2; }
    rm -f /tmp/llmrr-bench/*.db*
    mkdir -p /tmp/llmrr-bench
    sed -e 's/18090/18093/' -e 's/llmrr.db/llmrr-json.db/' "$root/bench/gateway/llmrr.toml" \
        > "$out/llmrr-json.toml"
    printf '\n[telemetry]\nlog_format = "json"\n' >> "$out/llmrr-json.toml"
    sed -e 's/18090/18094/' -e 's/llmrr.db/llmrr-traced.db/' "$root/bench/gateway/llmrr.toml" \
        > "$out/llmrr-traced.toml"
    printf '\n[telemetry]\nlog_format = "json"\notlp_endpoint = "http://127.0.0.1:18080"\n' \
        >> "$out/llmrr-traced.toml"
    export RES_DIR=${RES_DIR:-$out/results}
    export PEER_CMD_llmrr="$bin serve --config $root/bench/gateway/llmrr.toml"
    export PEER_CMD_llmrr_json="$bin serve --config $out/llmrr-json.toml"
    export PEER_CMD_llmrr_traced="$bin serve --config $out/llmrr-traced.toml"
    for n in llmrr llmrr_json llmrr_traced; do export "PEER_HEADERS_$n=Authorization: Bearer $key"; done
    PEERS=${PEERS-} exec "$peers/run.sh" llmrr=http://127.0.0.1:18090/v1 \
        llmrr-json=http://127.0.0.1:18093/v1 llmrr-traced=http://127.0.0.1:18094/v1 "$@"
fi
