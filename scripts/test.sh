#!/usr/bin/env bash
# The whole test suite: checks its services, then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/check-services.sh
exec cargo test --workspace --locked "$@"
