#!/usr/bin/env bash
# Prints the directory of a libclang that bindgen (clang-sys) can load, or exits 1.
#
# Exact names only: `libclang.so`, `libclang.so.N…`, `libclang-N….so`, `libclang-N….so.…`.
# `libclang-cpp.so.N` (the C++ library, which many machines carry without libclang itself) is
# NOT libclang and never matches. Searched, in order: $LIBCLANG_PATH (as bindgen honours it),
# the directories of `llvm-config --libdir`, the dynamic linker's cache, and the usual library
# directories. LLMRR_LIBCLANG_ROOT (for the tests) prefixes every searched directory and turns
# off the linker cache and llvm-config, so the detection can be run against a prepared tree.
set -uo pipefail

root=${LLMRR_LIBCLANG_ROOT:-}
name_re='^libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?$'

dirs=()
if [ -n "${LIBCLANG_PATH:-}" ]; then
  # bindgen accepts the library file itself as well as its directory.
  if [ -f "$LIBCLANG_PATH" ] && [[ $(basename "$LIBCLANG_PATH") =~ $name_re ]]; then
    dirname "$LIBCLANG_PATH"
    exit 0
  fi
  dirs+=("$LIBCLANG_PATH")
fi
if [ -z "$root" ]; then
  for config in llvm-config $(compgen -c llvm-config- 2>/dev/null | sort -rV); do
    libdir=$("$config" --libdir 2>/dev/null) && dirs+=("$libdir")
  done
  while read -r path; do dirs+=("$(dirname "$path")"); done < <(
    ldconfig -p 2>/dev/null | awk '{print $NF}' | grep -E '/libclang[^/]*$')
fi
# Quoted: each pattern is expanded below, under $root.
for pattern in '/usr/lib/llvm-*/lib' '/usr/lib64/llvm*/lib' /usr/local/lib /usr/local/llvm/lib \
               /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
  for dir in "$root"$pattern; do [ -d "$dir" ] && dirs+=("$dir"); done
done

for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  for file in "$dir"/libclang*; do
    [ -e "$file" ] || continue
    if [[ $(basename "$file") =~ $name_re ]]; then
      echo "$dir"
      exit 0
    fi
  done
done
exit 1
