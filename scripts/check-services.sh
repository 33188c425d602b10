#!/usr/bin/env bash
# Checks what the test suite needs besides the Rust toolchain, starting the local Postgres
# when it is installed but stopped, and says clearly what is missing.
set -uo pipefail

pg_url=${LLMRR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
pg_host=127.0.0.1
pg_port=5432

if ! command -v cargo >/dev/null 2>&1; then
    echo "check-services: cargo not found: install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if [[ -z ${LLMRR_TEST_POSTGRES_URL:-} ]] && ! port_open "$pg_host" "$pg_port"; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
        echo "check-services: starting the local PostgreSQL cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        for _ in $(seq 1 30); do port_open "$pg_host" "$pg_port" && break; sleep 1; done
    fi
fi
if [[ -z ${LLMRR_TEST_POSTGRES_URL:-} ]] && ! port_open "$pg_host" "$pg_port"; then
    echo "check-services: PostgreSQL is not reachable on $pg_host:$pg_port." >&2
    echo "  The store tests run against a real Postgres. Start one (trust auth for user postgres)," >&2
    echo "  or set LLMRR_TEST_POSTGRES_URL=postgres://user@host:port/db to a server where that" >&2
    echo "  user may create databases." >&2
    exit 1
fi
echo "check-services: Postgres at ${pg_url%%\?*} — ok"

# Redis: the shared-state tests (budgets across replicas) use a real server, each test under
# its own key prefix.
redis_url=${LLMRR_TEST_REDIS_URL:-redis://127.0.0.1:6379}
if [[ -z ${LLMRR_TEST_REDIS_URL:-} ]] && ! port_open 127.0.0.1 6379; then
    if command -v redis-server >/dev/null 2>&1; then
        echo "check-services: starting redis-server"
        redis-server --daemonize yes --save "" --appendonly no >/dev/null || true
        for _ in $(seq 1 30); do port_open 127.0.0.1 6379 && break; sleep 0.2; done
    fi
fi
if [[ -z ${LLMRR_TEST_REDIS_URL:-} ]] && ! port_open 127.0.0.1 6379; then
    echo "check-services: Redis is not reachable on 127.0.0.1:6379." >&2
    echo "  The shared-state tests run against a real Redis. Start one, or set" >&2
    echo "  LLMRR_TEST_REDIS_URL=redis://host:port to a server they may use." >&2
    exit 1
fi
echo "check-services: Redis at $redis_url — ok"
