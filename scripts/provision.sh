#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds the tool and the test ISO, brings the sandbox up, boots one
# container, administers it and prints its client credentials, then tears the
# sandbox down. Extra arguments go to anweddol-first-container (see --help).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}

"$repo/scripts/prepare.sh" anweddol-first-container
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
"$repo/scripts/sandbox.sh" exec "$build/tools/anweddol-first-container" \
  --iso "$build/guest/anweddol-test.iso" "$@"
