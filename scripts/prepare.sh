#!/usr/bin/env bash
# What both README commands do before the sandbox: as root, install what is
# missing, configure and build (the given targets, or everything), and build
# the guest ISO, which needs apt for the kernel package and so cannot be
# built inside the sandbox.
#   scripts/prepare.sh [TARGET...]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
  echo "anweddol: run as root: it installs packages and starts libvirtd in a network namespace" >&2
  exit 1
fi

scripts/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j2 ${1:+--target "$@"}
tests/guest/build-iso.sh "$build/guest/anweddol-test.iso"
