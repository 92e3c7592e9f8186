#!/usr/bin/env bash
# build.sh DIR [CMAKE ARGS...] — configures and builds SNIPE into DIR (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
cmake -S . -B "$dir" -DSNIPE_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
