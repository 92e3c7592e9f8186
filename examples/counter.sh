#!/bin/sh
# counter.sh — a SNIPE job in directory mode: an unmodified shell script whose state
# is a file in its checkpoint directory. It counts, writes the count to state/count,
# and every 5 counts asks its agent to checkpoint the directory (`snipe ckpt commit`).
# Restarted anywhere, the agent first restores state/ from the latest checkpoint, so
# the count goes on from there.
#
#   snipe spawn --name counter --restart always --ckpt-dir state -- sh counter.sh [N]
#
# Counts to N (default 100), a count every 0.2 s. SNIPE (the snipe command) must be
# on PATH or named by $SNIPE_CLI.
set -eu
limit=${1:-100}
snipe=${SNIPE_CLI:-snipe}
mkdir -p state
count=$(cat state/count 2>/dev/null || echo 0)
echo "starting at $count on ${SNIPE_HOST:-?} (epoch ${SNIPE_EPOCH:-?})"
while [ "$count" -lt "$limit" ]; do
  count=$((count + 1))
  echo "$count" >state/count
  echo "count $count"
  if [ $((count % 5)) -eq 0 ]; then
    "$snipe" ckpt commit
  fi
  sleep 0.2
done
echo "done at $count"
