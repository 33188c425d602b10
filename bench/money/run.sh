#!/usr/bin/env bash
# What budgets cost on the request path: the same release binary three times, side by side in
# the shared peer harness (../shared/bench/peers: static nginx upstream, wrk, each gateway
# pinned alone to CPU 1, interleaved rounds, medians):
#   llmrr-plain   a virtual key of team `bench`, no budget
#   llmrr-budget  the same, with a budget on the key and one on its team (in-process counters)
#   llmrr-redis   the same budgets, counters in Redis ([shared] redis_url)
#   llmrr-before  (with BASE_BIN=path: an older llmrr binary, e.g. one without the money layer,
#                 same config and key, to measure what the ledger itself costs)
# Every gateway has the SQLite request log and the spend ledger on. Needs nginx + wrk (the
# harness's setup.sh) and Redis on 127.0.0.1:6379. Settings go to the harness (CONCURRENCY,
# ROUNDS, DURATION…); results land in RES_DIR (default /tmp/llmrr-bench/money).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_HARNESS:-$root/../shared/bench/peers}
[[ -x $peers/run.sh ]] || { echo "no harness at $peers (set PEERS_HARNESS)" >&2; exit 2; }
# The harness needs nginx (its echo module) and wrk; its setup.sh installs them (and the other
# peers). Only this benchmark needs them: the build and the tests do not.
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { echo "$tool not found: run $peers/setup.sh first" >&2; exit 2; }
done
[[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] \
    || { echo "nginx's echo module is missing: run $peers/setup.sh first" >&2; exit 2; }
work=/tmp/llmrr-bench/money
rm -rf "$work" && mkdir -p "$work/results"
cargo build --release -p llmrr-cli --manifest-path "$root/Cargo.toml"
bin=$root/target/release/llmrr
master="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
prefix="llmrr-bench-$(date +%s)"
export LLMRR_MASTER_KEY=$master BENCH_UPSTREAM_KEY=sk-dummy-not-a-real-key RUST_LOG=warn

config() { # name port [shared]
    cat > "$work/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
[store]
url = "sqlite://$work/$1.db"
$( [[ ${3:-} == shared ]] && printf '[shared]\nredis_url = "redis://127.0.0.1:6379"\nkey_prefix = "%s"\n' "$prefix" )
[[models]]
name = "mock-gpt"
provider = "openai"
base_url = "http://127.0.0.1:18080/v1"
api_key = "env:BENCH_UPSTREAM_KEY"
input_cost_per_mtok = 0.15
output_cost_per_mtok = 0.60
TOML
}

peer() { # name port budgets? shared? binary?
    local name=$1 port=$2 serve_bin=${5:-$bin}
    config "$name" "$port" "${4:-}"
    "$bin" --config "$work/$name.toml" teams set bench >/dev/null
    local key id
    key=$("$bin" --config "$work/$name.toml" keys create --name bench --team bench 2>"$work/$name.key.err")
    id=$(grep -o 'key_[0-9a-f]*' "$work/$name.key.err" | head -n1)
    if [[ $3 == budgets ]]; then
        "$bin" --config "$work/$name.toml" budgets set --scope "key:$id" --period month --limit-usd 1000000 >/dev/null
        "$bin" --config "$work/$name.toml" budgets set --scope team:bench --period month --limit-usd 1000000 >/dev/null
    fi
    local var=${name//-/_}
    export "PEER_CMD_$var=$serve_bin serve --config $work/$name.toml"
    export "PEER_HEADERS_$var=Authorization: Bearer $key"
}

peer llmrr-plain 18094 none
peer llmrr-budget 18095 budgets
peer llmrr-redis 18096 budgets shared
extra=()
if [[ -n ${BASE_BIN:-} ]]; then
    peer llmrr-before 18097 none "" "$BASE_BIN"
    extra+=(llmrr-before=http://127.0.0.1:18097/v1)
fi

export RES_DIR=${RES_DIR:-$work/results} PEERS=${PEERS-""} ISOLATE=0
"$peers/run.sh" llmrr-plain=http://127.0.0.1:18094/v1 llmrr-budget=http://127.0.0.1:18095/v1 \
    llmrr-redis=http://127.0.0.1:18096/v1 "${extra[@]}" "$@"
# The budgets counted every request: their spend is the ledger's.
for n in llmrr-budget llmrr-redis; do
    echo "== $n budgets after the run"
    "$bin" --config "$work/$n.toml" budgets list
done
