#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds anweddol-provision and the test ISO, brings the sandbox up,
# provisions containers (two by default) with live progress, prints their
# client credentials and per-phase timings, destroys them and tears the
# sandbox down. Extra arguments go to anweddol-provision (see --help), such
# as --count 4, --json or --show-passwords.
#
# The domains use software emulation (--domain-type qemu) unless
# ANWEDDOL_DOMAIN_TYPE says otherwise: the sandbox does not assume KVM works.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}

"$repo/scripts/prepare.sh" anweddol-provision
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
"$repo/scripts/sandbox.sh" exec "$build/tools/anweddol-provision" \
  --iso "$build/guest/anweddol-test.iso" --count 2 \
  --domain-type "${ANWEDDOL_DOMAIN_TYPE:-qemu}" "$@"
