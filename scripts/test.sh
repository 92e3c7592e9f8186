#!/usr/bin/env bash
# test.sh — the whole suite: installs what is missing, builds, runs every test with
# ctest, then again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== build (RelWithDebInfo) =="
scripts/build.sh build
echo "== tests =="
(cd build && ctest --output-on-failure -j2)

echo "== build (ASan + UBSan) =="
scripts/build.sh build-asan -DSNIPE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan =="
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j2)
