#!/usr/bin/env bash
# test_proc_cli.sh SNIPE — the process and checkpoint commands given bad input, with no
# cluster needed: usage errors exit 2, failures exit 1, each with one clear line, and
# nothing is left behind.
set -u
SNIPE=$1
dir=$(mktemp -d /tmp/snipe-cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
pass=0 fail=0
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: expected [$2] got [$3]"; fi
}
unset SNIPE_CATALOG SNIPE_KEY SNIPE_CONFIG SNIPE_URN SNIPE_AGENT SNIPE_PROC_KEY
"$SNIPE" keygen --out k >/dev/null

err=$("$SNIPE" spawn --key k --catalog tcp://127.0.0.1:9 2>&1 >/dev/null); rc=$?
check "spawn without a command exits 2" 2 "$rc"
check "spawn says why" "snipe: spawn: no command (put it after --)" "$(tail -1 <<<"$err")"

err=$("$SNIPE" spawn --restart sometimes -- true 2>&1); rc=$?
check "bad --restart exits 2" 2 "$rc"
check "bad --restart says why" "snipe: spawn: --restart 'sometimes' is not never, on-failure or always" "$err"

err=$("$SNIPE" spawn --env NOEQUALS -- true 2>&1); rc=$?
check "bad --env exits 2" 2 "$rc"
check "bad --env says why" "snipe: spawn: 'NOEQUALS' is not K=V" "$err"

err=$("$SNIPE" spawn --max-restarts -1 -- true 2>&1); rc=$?
check "bad --max-restarts exits 2" 2 "$rc"

err=$("$SNIPE" spawn -- true 2>&1); rc=$?
check "spawn without a catalog exits 2" 2 "$rc"
check "spawn without a catalog says where to set it" 1 "$(grep -c 'no catalog: pass --catalog ENDPOINTS or set SNIPE_CATALOG' <<<"$err")"

err=$("$SNIPE" spawn --name 'bad name' --key k --catalog tcp://127.0.0.1:9 -- true 2>&1); rc=$?
check "bad name exits 1" 1 "$rc"
check "bad name names the character" 1 "$(grep -c "invalid character ' '" <<<"$err")"

err=$("$SNIPE" ps extra 2>&1); rc=$?
check "ps with an argument exits 2" 2 "$rc"

err=$("$SNIPE" kill 2>&1); rc=$?
check "kill without a URN exits 2" 2 "$rc"
err=$("$SNIPE" kill urn:snipe:proc:x --key k --catalog tcp://127.0.0.1:9 2>&1); rc=$?
check "kill with no catalog reachable exits 1" 1 "$rc"
check "kill says no replica answered" 1 "$(grep -c 'no catalog replica answered' <<<"$err")"

err=$("$SNIPE" wait urn:snipe:proc:x --timeout soon 2>&1); rc=$?
check "wait with a bad --timeout exits 2" 2 "$rc"

err=$("$SNIPE" ckpt commit 2>&1); rc=$?
check "ckpt commit outside a job exits 1" 1 "$rc"
check "ckpt commit outside a job says so" \
  "snipe: ckpt commit: SNIPE_URN is not set: this program was not started by a SNIPE agent" "$err"
err=$("$SNIPE" ckpt urn:snipe:data:x --key k --catalog tcp://127.0.0.1:9 2>&1); rc=$?
check "ckpt of a non-process URN exits 2" 2 "$rc"
check "ckpt of a non-process URN says so" "snipe: ckpt: urn:snipe:data:x is not a process URN" "$err"

err=$("$SNIPE" cluster up --hosts 99 --dir "$dir/c" 2>&1); rc=$?
check "cluster up --hosts 99 exits 2" 2 "$rc"
check "nothing started for a refused cluster up" 0 "$( [ -e "$dir/c/pids" ] && echo 1 || echo 0)"

echo "test_proc_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
