#!/usr/bin/env bash
# Runs the parallel-provisioning benchmark in the sandbox and plots it:
# writes docs/provision-benchmark.{txt,csv,png}. As root, after
# scripts/prepare.sh provision_benchmark. Extra arguments go to the program
# (such as --counts 1,2,4).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs

"$repo/scripts/prepare.sh" provision_benchmark
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
machine="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG)"
"$repo/scripts/sandbox.sh" exec "$build/benchmarks/provision/provision_benchmark" \
  --iso "$build/guest/anweddol-test.iso" --csv "$out/provision-benchmark.csv" \
  --summary-csv "$out/provision-summary.csv" "$@" | tee "$out/provision-benchmark.txt"
gnuplot -e "summary='$out/provision-summary.csv'; output='$out/provision-benchmark.png'; machine='$machine'" \
  "$repo/benchmarks/provision/plot.gp"
echo "wrote $out/provision-benchmark.png"
