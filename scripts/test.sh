#!/usr/bin/env bash
# The whole test suite: checks the llama.cpp build tools and the dashboard tests' browser
# (installs them if it can) and its services, then `cargo test --workspace`, and ends with one
# summary line over every test binary ("tests: N passed, M failed").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-build-deps.sh
./scripts/ensure-test-deps.sh
./scripts/check-services.sh
# The servers the tests use (defaults: the local ones).
export LLMRR_TEST_POSTGRES_URL=${LLMRR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export LLMRR_TEST_REDIS_URL=${LLMRR_TEST_REDIS_URL:-redis://127.0.0.1:6379}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
