#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's Chromium through ChromeDriver (packages
# chromium and chromium-driver). Detected exactly (the binaries the tests start, and that
# they run); installed with apt-get when missing (as root, or through sudo); otherwise says
# what to install (without their recommends: no printing or zeroconf services). LLMRR_CHROMIUM /
# LLMRR_CHROMEDRIVER name other binaries.
set -euo pipefail

chromium=${LLMRR_CHROMIUM:-/usr/bin/chromium}
driver=${LLMRR_CHROMEDRIVER:-/usr/bin/chromedriver}
works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

missing=()
works "$chromium" || missing+=(chromium)
works "$driver" || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "llmrr: the dashboard's browser tests need: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "llmrr: installing them with apt-get…" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if ! works "$chromium" || ! works "$driver"; then
    echo "llmrr: apt-get installed ${missing[*]} but $chromium or $driver does not run" >&2
    exit 1
  fi
  echo "llmrr: installed ${missing[*]}" >&2
else
  echo "llmrr: please install ${missing[*]} (Debian/Ubuntu: apt-get install chromium" \
       "chromium-driver), or point LLMRR_CHROMIUM and LLMRR_CHROMEDRIVER at a Chromium and" \
       "its matching ChromeDriver" >&2
  exit 1
fi
