#!/usr/bin/env bash
# demo.sh — installs what is missing, builds, and shows what SNIPE can do so far:
# identities (snipe keygen) and signed envelopes that reject tampering.
# Later stages grow this into: cluster up, spawn, kill a host, resume elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building SNIPE =="
scripts/build.sh build
SNIPE=$PWD/build/snipe
work=$(mktemp -d /tmp/snipe-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n== %s ==\n' "$*"; }

step "1. create an identity for alice (Ed25519; private key mode 0600)"
"$SNIPE" keygen --out alice.key
ls -l alice.key alice.key.pub

step "2. alice seals a message in a signed envelope"
echo "hello from alice" | SNIPE_KEY=alice.key "$SNIPE" envelope seal > msg.env
echo "envelope is $(stat -c %s msg.env) bytes"

step "3. bob opens it, trusting alice's public key"
"$SNIPE" envelope open --signer alice.key.pub msg.env

step "4. one flipped byte in the body: the envelope is rejected"
python3 - <<'PY' 2>/dev/null || printf '\x01' | dd of=msg.env bs=1 seek=40 conv=notrunc status=none
data = bytearray(open("msg.env", "rb").read())
data[40] ^= 1
open("msg.env", "wb").write(data)
PY
if "$SNIPE" envelope open --signer alice.key.pub msg.env; then
  echo "demo: tampered envelope was accepted" >&2
  exit 1
fi

step "5. an envelope from a key bob does not trust is rejected"
"$SNIPE" keygen --out mallory.key >/dev/null
echo "pay mallory" | SNIPE_KEY=mallory.key "$SNIPE" envelope seal > forged.env
if "$SNIPE" envelope open --signer alice.key.pub forged.env; then
  echo "demo: untrusted signer was accepted" >&2
  exit 1
fi

step "done: identities and signed envelopes work"
