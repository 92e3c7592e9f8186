#!/usr/bin/env bash
# bench.sh — builds an optimised tree and runs every benchmark under tests/bench.
# Each benchmark prints its figures beside a baseline measured in the same run.
# bench_catalog and bench_spawn (spawn latency, spawns/s, nofile, failover; ~40 s) start
# local clusters with the snipe, rcdsd and snipe-agentd built here and stop them again;
# so does bench_ckpt (checkpoint save/restore throughput and where its time goes; ~25 s)
# and bench_msg (message round trip and one-way throughput between processes on two
# agents, beside raw nanomsg over tcp loopback; ~10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build-bench -DCMAKE_BUILD_TYPE=Release
for b in build-bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b") =="
  "$b"
done
