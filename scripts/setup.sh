#!/usr/bin/env bash
# setup.sh — installs the Debian packages SNIPE needs, only those missing.
# Runs `apt-get update` only when something must be installed. Needs root for that.
set -euo pipefail

PACKAGES=(
  gcc make cmake pkg-config
  libsodium-dev libsqlite3-dev libnanomsg-dev uuid-dev check
  libprotobuf-c-dev protobuf-c-compiler libraft-dev libuv1-dev
  libjansson-dev libzstd-dev
  iproute2 procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: need root to install packages (missing: ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
