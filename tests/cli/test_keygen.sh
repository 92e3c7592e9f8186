#!/usr/bin/env bash
# test_keygen.sh SNIPE — `snipe keygen` and `snipe envelope` as a user runs them:
# files and modes, refusals, exit codes, one-line errors.
set -u
SNIPE=$1
dir=$(mktemp -d /tmp/snipe-cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
pass=0 fail=0
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: expected [$2] got [$3]"; fi
}

out=$("$SNIPE" keygen --out k 2>&1); rc=$?
check "keygen exit" 0 "$rc"
check "private mode" 600 "$(stat -c %a k)"
check "pub mode" 644 "$(stat -c %a k.pub)"
pk=$(cat k.pub)
check "pub is 64 hex" 1 "$(grep -cE '^[0-9a-f]{64}$' k.pub)"
check "prints public key" 1 "$(grep -c "public:      $pk" <<<"$out")"
check "prints key id urn" 1 "$(grep -cE '^key id:      urn:snipe:key:[0-9a-f]{20}$' <<<"$out")"

before=$(cat k)
err=$("$SNIPE" keygen --out k 2>&1); rc=$?
check "refuses overwrite exit" 1 "$rc"
check "refuses overwrite msg" "snipe: keygen: k.pub exists; use --force to replace it" "$err"
check "key unchanged" "$before" "$(cat k)"
"$SNIPE" keygen --out k --force >/dev/null; rc=$?
check "force exit" 0 "$rc"
check "force replaced" 1 "$([ "$before" != "$(cat k)" ] && echo 1 || echo 0)"

err=$("$SNIPE" keygen --out /nonexistent-dir/k 2>&1); rc=$?
check "missing dir exit" 1 "$rc"
check "missing dir one line" 1 "$(wc -l <<<"$err")"

SNIPE_KEY=k "$SNIPE" envelope seal <<<"hi" >e; rc=$?
check "seal exit" 0 "$rc"
body=$("$SNIPE" envelope open --signer k.pub e 2>/dev/null); rc=$?
check "open exit" 0 "$rc"
check "open body" "hi" "$body"
err=$(head -c 20 e | "$SNIPE" envelope open --signer k.pub 2>&1); rc=$?
check "truncated exit" 1 "$rc"
check "truncated reason" 1 "$(grep -c 'EDECODE' <<<"$err")"

chmod 644 k
err=$(SNIPE_KEY=k "$SNIPE" envelope seal </dev/null 2>&1); rc=$?
check "world-readable key exit" 1 "$rc"
check "world-readable key msg" "snipe: key file k has mode 0644; other users may read it (run: chmod 600 k)" "$err"

err=$("$SNIPE" envelope seal </dev/null 2>&1); rc=$?
check "no key exit" 2 "$rc"
"$SNIPE" frobnicate >/dev/null 2>&1; rc=$?
check "unknown command exit" 2 "$rc"
"$SNIPE" keygen --help >/dev/null; rc=$?
check "help exit" 0 "$rc"
printf '[client]\nbogus = 1\n' >bad.ini
err=$("$SNIPE" --config bad.ini keygen --out k2 2>&1); rc=$?
check "bad config exit" 1 "$rc"
check "bad config msg" "snipe: bad.ini: unknown key 'bogus' in [client]" "$err"
check "bad config wrote nothing" 0 "$([ -e k2 ] && echo 1 || echo 0)"

# Global options may follow the command; one missing its value is a usage error.
err=$("$SNIPE" lookup urn:snipe:data:x --key "$dir/none" --catalog tcp://127.0.0.1:1 2>&1); rc=$?
check "global options after command exit" 1 "$rc"
check "global options after command msg" "snipe: cannot open key file $dir/none: No such file or directory" "$err"
err=$("$SNIPE" lookup urn:snipe:data:x --catalog 2>&1); rc=$?
check "global option without value exit" 2 "$rc"
check "global option without value msg" "snipe: --catalog needs a value" "$err"
err=$("$SNIPE" lookup urn:snipe:data:a/../b 2>&1); rc=$?
check "bad urn exit" 2 "$rc"
check "bad urn msg" "snipe: lookup: '..' at position 18 of URN" "$err"

echo "keygen: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
