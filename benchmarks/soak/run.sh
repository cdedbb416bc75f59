#!/usr/bin/env bash
# Runs the soak benchmark both ways and keeps the output in
# docs/soak-benchmark.txt: 1,000 lifecycles on test:///default (in this
# process, no sandbox needed), then 20 real ones in the sandbox
# (provision(): boot, address, SSH, administration, client login; then a
# destroy). As root. Extra arguments go to the sandbox run (such as
# --lifecycles 40 or --concurrency 1).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs/soak-benchmark.txt

"$repo/scripts/prepare.sh" soak
machine="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG)"
echo "soak benchmark on $machine, $(date -u '+%Y-%m-%d %H:%M UTC')" | tee "$out"
status=0
"$build/benchmarks/soak/soak" | tee -a "$out" || status=$?
echo | tee -a "$out"

trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
"$repo/scripts/sandbox.sh" exec "$build/benchmarks/soak/soak" --provision \
  --iso "$build/guest/anweddol-test.iso" "$@" | tee -a "$out" || status=$?
echo "wrote $out"
exit "$status"
