#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds the tool and the test ISO, brings the sandbox up, boots one
# container, administers it and prints its client credentials, then tears the
# sandbox down. Extra arguments go to anweddol-first-container (see --help).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
  echo "provision.sh: run as root: it installs packages and starts libvirtd in a network namespace" >&2
  exit 1
fi

scripts/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j2 --target anweddol-first-container
tests/guest/build-iso.sh "$build/guest/anweddol-test.iso"

trap '"$repo/scripts/sandbox.sh" down' EXIT
scripts/sandbox.sh up
scripts/sandbox.sh exec "$build/tools/anweddol-first-container" \
  --iso "$build/guest/anweddol-test.iso" "$@"
