#!/usr/bin/env bash
# Starts the server on its built-in defaults (or ./llmrr.toml): checks the llama.cpp build
# dependencies, then `cargo run --release -p llmrr-cli -- serve`. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-build-deps.sh
exec cargo run --release -p llmrr-cli -- serve "$@"
