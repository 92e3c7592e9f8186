#!/usr/bin/env bash
# test_proc_cli.sh SNIPE — the process, checkpoint and message commands given bad input,
# with no cluster needed: usage errors exit 2, failures exit 1, each with one clear line,
# and nothing is left behind. Then, on a local cluster, `snipe send` and `snipe recv`
# run as spawned processes deliver messages and report an unknown receiver.
set -u
SNIPE=$(realpath "$1")
dir=$(mktemp -d /tmp/snipe-cli.XXXXXX)
cleanup() {
  if [ -f "$dir/c2/pids" ]; then "$SNIPE" cluster down --dir "$dir/c2" >/dev/null 2>&1; fi
  rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir" || exit 1
pass=0 fail=0
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: expected [$2] got [$3]"; fi
}
unset SNIPE_CATALOG SNIPE_KEY SNIPE_CONFIG SNIPE_URN SNIPE_AGENT SNIPE_PROC_KEY SNIPE_MSG
"$SNIPE" keygen --out k >/dev/null

err=$("$SNIPE" spawn --key k --catalog tcp://127.0.0.1:9 2>&1 >/dev/null); rc=$?
check "spawn without a command exits 2" 2 "$rc"
check "spawn says why" "snipe: spawn: no command (put it after --)" "$(tail -1 <<<"$err")"

# The agent's watchdog, started by hand with no pipe from an agent, stops at once.
err=$(timeout 5 "$(dirname "$SNIPE")/snipe-agentd" --watchdog-fd 99 2>&1); rc=$?
check "a watchdog with no pipe exits 1" 1 "$rc"
check "a watchdog with no pipe says why" 1 "$(grep -c "cannot read the agent's pipe fd=99" <<<"$err")"

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

err=$("$SNIPE" send 2>&1); rc=$?
check "send without a URN exits 2" 2 "$rc"
check "send without a URN says so" "snipe: send: no URN" "$(tail -1 <<<"$err")"
err=$("$SNIPE" send urn:snipe:proc:x 2>&1); rc=$?
check "send without a TEXT exits 2" 2 "$rc"
check "send without a TEXT says so" "snipe: send: no TEXT" "$(tail -1 <<<"$err")"
err=$("$SNIPE" send urn:snipe:proc:x hello there 2>&1); rc=$?
check "send with an extra argument exits 2" 2 "$rc"
check "send with an extra argument names it" "snipe: send: unexpected argument 'there'" \
  "$(tail -1 <<<"$err")"
err=$("$SNIPE" send proc:x hello 2>&1); rc=$?
check "send to a malformed URN exits 2" 2 "$rc"
check "send to a malformed URN says why" \
  "snipe: send: URN must start with 'urn:snipe:' (mismatch at position 1)" "$err"
err=$("$SNIPE" send urn:snipe:host:x hello 2>&1); rc=$?
check "send to a non-process URN exits 2" 2 "$rc"
check "send to a non-process URN says so" "snipe: send: urn:snipe:host:x is not a process URN" "$err"
err=$("$SNIPE" send urn:snipe:proc:x hello --tag 4294967296 2>&1); rc=$?
check "send with a bad --tag exits 2" 2 "$rc"
check "send with a bad --tag says why" \
  "snipe: send: --tag '4294967296' is not a number (0..4294967295)" "$err"
err=$("$SNIPE" send urn:snipe:proc:x hello --tag 7 2>&1); rc=$?
check "send outside a job exits 1" 1 "$rc"
check "send outside a job says so" \
  "snipe: send: SNIPE_URN is not set: this program was not started by a SNIPE agent" "$err"
err=$("$SNIPE" recv --count many 2>&1); rc=$?
check "recv with a bad --count exits 2" 2 "$rc"
check "recv with a bad --count says why" \
  "snipe: recv: --count 'many' is not a number (0..4294967295)" "$err"
err=$("$SNIPE" recv --timeout-ms -5 2>&1); rc=$?
check "recv with a bad --timeout-ms exits 2" 2 "$rc"
err=$("$SNIPE" recv extra 2>&1); rc=$?
check "recv with an argument exits 2" 2 "$rc"
check "recv with an argument names it" "snipe: recv: unexpected argument 'extra'" \
  "$(tail -1 <<<"$err")"
err=$("$SNIPE" recv --timeout-ms 10 2>&1); rc=$?
check "recv outside a job exits 1" 1 "$rc"
check "recv outside a job says so" \
  "snipe: recv: SNIPE_URN is not set: this program was not started by a SNIPE agent" "$err"
out=$("$SNIPE" send --help 2>/dev/null); rc=$?
check "send --help exits 0" 0 "$rc"
check "send --help prints the usage" "usage: snipe send URN TEXT [--tag N]" "$(head -1 <<<"$out")"
out=$("$SNIPE" recv --help 2>/dev/null); rc=$?
check "recv --help exits 0" 0 "$rc"
check "recv --help prints the usage" "usage: snipe recv [--count N] [--timeout-ms MS] [--json]" \
  "$(head -1 <<<"$out")"

# ---- messages end to end: `snipe recv` and `snipe send` as processes of a local cluster,
# the receiver on host1 and the senders on host2, so the agents route between them.
if ! "$SNIPE" cluster up --hosts 2 --replicas 1 --dir "$dir/c2" >"$dir/c2.env" 2>"$dir/c2.err"; then
  fail=$((fail + 1)); echo "FAIL cluster up: $(cat "$dir/c2.err")"
else
  # shellcheck source=/dev/null
  source "$dir/c2.env"
  spawn() { "$SNIPE" spawn --name "$1" --host "$2" -- "${@:3}" >/dev/null; }
  spawn rx host1 "$SNIPE" recv --count 2 --timeout-ms 30000
  spawn rxj host1 "$SNIPE" recv --json --timeout-ms 30000
  spawn tx host2 "$SNIPE" send urn:snipe:proc:rx hello
  "$SNIPE" wait --timeout 60 urn:snipe:proc:tx >/dev/null; rc=$?
  check "send exits 0" 0 "$rc"
  spawn tx2 host2 "$SNIPE" send urn:snipe:proc:rx world --tag 7
  spawn tx4 host2 "$SNIPE" send urn:snipe:proc:rxj $'two\nlines' --tag 4294967295
  "$SNIPE" wait --timeout 60 urn:snipe:proc:rx >/dev/null; rc=$?
  check "recv --count 2 exits 0" 0 "$rc"
  # Order is kept per sender; tx and tx2 are two senders.
  check "recv prints FROM TAG TEXT for each message" \
    $'urn:snipe:proc:tx 0 hello\nurn:snipe:proc:tx2 7 world' \
    "$("$SNIPE" logs urn:snipe:proc:rx 2>&1 | sort)"
  "$SNIPE" wait --timeout 60 urn:snipe:proc:rxj >/dev/null; rc=$?
  check "recv --json exits 0" 0 "$rc"
  check "recv --json prints an object, text with a newline in hex" \
    '{"from":"urn:snipe:proc:tx4","tag":4294967295,"data":"hex:74776f0a6c696e6573"}' \
    "$("$SNIPE" logs urn:snipe:proc:rxj 2>&1)"

  start=$(date +%s)
  spawn tx3 host2 "$SNIPE" send urn:snipe:proc:nobody hi
  out=$("$SNIPE" wait --timeout 60 urn:snipe:proc:tx3)
  took=$(($(date +%s) - start))
  check "send to an unknown process exits 1" "urn:snipe:proc:tx3 failed exit=1" "$out"
  err=$("$SNIPE" logs --stderr urn:snipe:proc:tx3 2>&1)
  want="snipe: send: urn:snipe:proc:nobody: "
  check "send to an unknown process names it" "$want" "${err:0:${#want}}"
  check "send to an unknown process gives up within the agent's timeout (5 s) and a margin" \
    1 "$([ "$took" -le 12 ] && echo 1 || echo 0)"
fi

echo "test_proc_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
