#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
# installs what is missing, builds, brings the sandbox up, runs unit and
# integration tests with CTest inside it, and tears the sandbox down, also
# when something fails. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: run as root: it installs packages and starts libvirtd in a network namespace" >&2
  exit 1
fi

scripts/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j2
# The ISO needs apt (for the kernel package), which the sandbox cannot reach.
tests/guest/build-iso.sh "$build/guest/anweddol-test.iso"

trap '"$repo/scripts/sandbox.sh" down' EXIT
scripts/sandbox.sh up
cd "$build"
"$repo/scripts/sandbox.sh" exec ctest --output-on-failure "$@"
