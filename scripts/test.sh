#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
# installs what is missing, builds, brings the sandbox up, runs unit and
# integration tests with CTest inside it, and tears the sandbox down, also
# when something fails. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}

"$repo/scripts/prepare.sh"
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
cd "$build"
"$repo/scripts/sandbox.sh" exec ctest --output-on-failure "$@"
