#!/usr/bin/env bash
# llama.cpp (built by the llama-cpp-sys-2 crate) needs cmake, and bindgen needs libclang.
# libclang is detected exactly (scripts/lib/find-libclang.sh: libclang-cpp is not libclang).
# Installs them with apt-get when they are missing (as root, or through sudo); otherwise says
# exactly what to install.
set -euo pipefail

here=$(dirname "$0")
have_libclang() { "$here/lib/find-libclang.sh" >/dev/null; }

missing=()
command -v cmake >/dev/null || missing+=(cmake)
have_libclang || missing+=(libclang-dev)
command -v c++ >/dev/null || missing+=(g++)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "llmrr: building llama.cpp needs: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "llmrr: installing them with apt-get…" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  if ! have_libclang || ! command -v cmake >/dev/null; then
    echo "llmrr: apt-get installed ${missing[*]} but cmake or libclang is still not found" >&2
    exit 1
  fi
  echo "llmrr: installed ${missing[*]}" >&2
else
  echo "llmrr: please install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]};" \
       "Fedora: dnf install cmake clang-devel gcc-c++; macOS: brew install cmake llvm)," \
       "or build without local models: cargo build -p llmrr-cli --no-default-features --features mimalloc" >&2
  exit 1
fi
