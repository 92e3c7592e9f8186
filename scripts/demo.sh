#!/usr/bin/env bash
# demo.sh — installs what is missing, builds, and shows what SNIPE does today:
# identities and signed envelopes, then a 3-replica catalog on loopback that stores
# signed assertions, refuses a stale compare-and-set, and keeps working (and keeps its
# data) after its leader is killed with SIGKILL; then a checkpointing job (examples/pi.c)
# spawned on one of 3 host agents resumes from its latest checkpoint on another host
# after its own is killed with SIGKILL; a message sent by name reaches a process before
# and after its host is killed. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building SNIPE =="
scripts/build.sh build
SNIPE=$PWD/build/snipe
PI=$PWD/build/snipe-example-pi
unset SNIPE_CATALOG SNIPE_KEY SNIPE_CONFIG

work=$(mktemp -d /tmp/snipe-demo.XXXXXX)
cluster=$work/cluster
cleanup() {
  if [ -f "$cluster/pids" ]; then
    "$SNIPE" cluster down --dir "$cluster" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$work"

step() { printf '\n== %s ==\n' "$*"; }
say() { printf -- '-- %s\n' "$*"; }
# Shows the command, then runs it.
run() {
  printf '$ snipe %s\n' "$*"
  "$SNIPE" "$@"
}
# Prints `snipe cluster status` once every live replica in its first table agrees on
# a leader other than $1 (at most 10 tries); fails if that does not happen.
wait_new_leader() {
  local old=$1 table
  for _ in $(seq 10); do
    table=$("$SNIPE" cluster status --dir "$cluster" 2>/dev/null || true)
    if awk -v old="$old" 'NF == 0 { exit } NR > 1 && $3 != "down" { n++; l[$4]++ }
        END { for (x in l) if (x != old && x != 0 && l[x] == n) exit 0; exit 1 }' \
        <<<"$table"; then
      printf '%s\n' "$table"
      return 0
    fi
    sleep 0.2
  done
  echo "demo: no new catalog leader after killing replica $old" >&2
  return 1
}

# Waits (at most 10 s) until process $1's output has a line matching $2.
wait_log() {
  for _ in $(seq 50); do
    "$SNIPE" logs "$1" 2>/dev/null | grep -q "$2" && return 0
    sleep 0.2
  done
  echo "demo: $1 did not print '$2'" >&2
  return 1
}

step "1. identities and signed envelopes"
say "alice creates an Ed25519 identity (private key mode 0600, public key beside it)"
run keygen --out alice.key
say "alice signs a message; bob opens it trusting alice's public key"
echo "hello from alice" | SNIPE_KEY=alice.key "$SNIPE" envelope seal >msg.env
run envelope open --signer alice.key.pub msg.env
say "one bit flipped in transit: bob rejects the envelope"
b=$(od -An -tu1 -j40 -N1 msg.env | tr -d ' ')
printf '%b' "$(printf '\\0%03o' $((b ^ 1)))" | dd of=msg.env bs=1 seek=40 conv=notrunc status=none
if run envelope open --signer alice.key.pub msg.env; then
  echo "demo: tampered envelope was accepted" >&2
  exit 1
fi

step "2. a catalog of 3 replicas (rcdsd, Raft + SQLite) on loopback"
say "cluster up starts the replicas, makes an admin key and prints the environment to use"
printf '$ snipe cluster up --dir %s\n' "$cluster"
"$SNIPE" cluster up --dir "$cluster" >cluster.env
cat cluster.env
# shellcheck source=/dev/null
source cluster.env
say "each replica's Raft state: one leader, two followers"
run cluster status --dir "$cluster"

step "3. signed assertions: write, look up, query"
say "assert signs each ATTR=VALUE with SNIPE_KEY and commits them in one batch"
run assert urn:snipe:data:demo/greeting text=hello lang=en
say "lookup checks every assertion against its author's signature"
run lookup urn:snipe:data:demo/greeting
run lookup urn:snipe:data:demo/greeting --json
say "query by URN prefix and ATTR=VALUE"
run query urn:snipe:data:demo/ lang=en

step "4. compare-and-set on version"
say "--if-version 0 means 'only if absent': text exists, so this write is refused"
if out=$(run assert urn:snipe:data:demo/greeting text=bonjour --if-version 0 2>&1); then
  printf '%s\n' "$out"
  echo "demo: compare-and-set on a stale version was accepted" >&2
  exit 1
fi
printf '%s\n' "$out"
version=$("$SNIPE" lookup urn:snipe:data:demo/greeting | awk '$1 == "text" { print $3 }')
say "with text's current version ($version) the same write succeeds"
run assert urn:snipe:data:demo/greeting text=bonjour --if-version "$version"

step "5. kill -9 the catalog leader"
leader=$("$SNIPE" cluster status --dir "$cluster" | awk 'NF == 0 { exit } $3 == "leader" { print $2 }')
pid=$(awk -v r="replica$leader" '$3 == r { print $1 }' "$cluster/pids")
if [ -z "$leader" ] || [ -z "$pid" ]; then
  echo "demo: cannot find the leader's pid (leader '$leader')" >&2
  exit 1
fi
say "the leader is replica $leader (pid $pid): kill -9 $pid"
kill -9 "$pid"
say "the two survivors elect a new leader; the dead replica shows as down"
wait_new_leader "$leader"
say "writes still succeed, and nothing written before is lost"
run assert urn:snipe:data:demo/farewell text=goodbye lang=en
run query urn:snipe:data:demo/ lang=en

step "6. a checkpointing job survives the death of its host"
say "cluster up also started 3 host agents (snipe-agentd); the catalog knows them"
run hosts
say "spawn examples/pi.c: a Monte Carlo estimate of pi that saves its state with"
say "snipe_ckpt_save after every step; the catalog places it on the least loaded host"
run spawn --name pi --restart always -- "$PI" 1000 400000 250
job=urn:snipe:proc:pi
sleep 3
run ps
host=$("$SNIPE" ps | awk -v j="$job" '$1 == j { print $2 }')
oldpid=$("$SNIPE" ps | awk -v j="$job" '$1 == j { print $6 }')
agent=$(awk -v h="$host" '$3 == h { print $1 }' "$cluster/pids")
if [ -z "$host" ] || [ -z "$agent" ]; then
  echo "demo: cannot find the job's host agent (host '$host')" >&2
  exit 1
fi
say "its output so far, fetched from $host's agent:"
"$SNIPE" logs "$job" | tail -4
say "its checkpoints: each is on 2 agents before the catalog records its signed manifest"
run ckpt "$job"
say "kill -9 $host's agent (pid $agent): its watchdog kills the job with it, and once the"
say "host's 1 s lease lapses the catalog leader moves the job to a live host, epoch 2"
kill -9 "$agent"
moved=""
for _ in $(seq 50); do
  moved=$("$SNIPE" ps | awk -v h="$host" -v j="$job" '$1 == j && $2 != h && $3 == "running" { print $2 }')
  [ -n "$moved" ] && break
  sleep 0.1
done
if [ -z "$moved" ]; then
  echo "demo: the job did not move off $host within 5 s" >&2
  "$SNIPE" ps >&2 || true
  exit 1
fi
# (a killed process whose parent died may linger as a zombie until init reaps it)
if [ -n "$(ps -o stat= -p "$oldpid" 2>/dev/null | grep -v Z)" ]; then
  echo "demo: the first instance (pid $oldpid) still runs: two instances" >&2
  exit 1
fi
say "the first instance (pid $oldpid) is gone: never two at once"
run hosts
run ps
sleep 1.5
say "on $moved it loaded its latest checkpoint and goes on where it was, not from step 0:"
"$SNIPE" logs "$job" | head -4
if ! "$SNIPE" logs "$job" | head -1 | grep -q '^resumed from checkpoint at step [1-9]'; then
  echo "demo: the job did not resume from a checkpoint" >&2
  exit 1
fi

step "7. messages go to a name, and follow the process when it moves"
say "inbox prints every message it gets (snipe recv, run by an agent as a process)"
run spawn --name inbox --restart always -- "$SNIPE" recv --count 0
inbox_host=$("$SNIPE" ps | awk '$1 == "urn:snipe:proc:inbox" { print $2 }')
say "greeter sends to urn:snipe:proc:inbox: its agent finds inbox's host in the catalog"
run spawn --name greeter -- "$SNIPE" send urn:snipe:proc:inbox "hello, inbox"
"$SNIPE" wait urn:snipe:proc:greeter --timeout 30 >/dev/null
wait_log urn:snipe:proc:inbox '^urn:snipe:proc:greeter 0 hello, inbox'
run logs urn:snipe:proc:inbox
inbox_agent=$(awk -v h="$inbox_host" '$3 == h { print $1 }' "$cluster/pids")
say "kill -9 $inbox_host's agent (pid $inbox_agent): inbox moves to the last live host"
kill -9 "$inbox_agent"
for _ in $(seq 50); do
  now=$("$SNIPE" ps | awk '$1 == "urn:snipe:proc:inbox" && $3 == "running" { print $2 }')
  [ -n "$now" ] && [ "$now" != "$inbox_host" ] && break
  sleep 0.2
done
run ps
say "the same name reaches the new instance"
run spawn --name greeter2 -- "$SNIPE" send urn:snipe:proc:inbox "hello again, wherever you are"
"$SNIPE" wait urn:snipe:proc:greeter2 --timeout 30 >/dev/null
wait_log urn:snipe:proc:inbox '^urn:snipe:proc:greeter2 0 hello again'
run logs urn:snipe:proc:inbox

step "8. cluster down stops every process cluster up started"
pids=$(awk '{ print $1 }' "$cluster/pids")
run cluster down --dir "$cluster"
for p in $pids; do
  if [ -n "$(ps -o stat= -p "$p" 2>/dev/null | grep -v Z)" ]; then
    echo "demo: cluster process $p is still running" >&2
    exit 1
  fi
done

step "done: signed envelopes, a replicated catalog with leader failover, a job that resumes from its checkpoint on another host, and messages that follow a process by name"
