#!/usr/bin/env bash
# Runs the hand-out latency benchmark in the sandbox and plots it: writes
# docs/latency-benchmark.{txt,csv,png}. As root, after
# scripts/prepare.sh anweddol-server. Extra arguments go to latency.py
# (such as --modes 0,2 or --interval 8).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs

"$repo/scripts/prepare.sh" anweddol-server
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
machine="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG)"
"$repo/scripts/sandbox.sh" exec /usr/bin/python3 "$repo/benchmarks/latency/latency.py" \
  --server "$build/server/anweddol-server" --iso "$build/guest/anweddol-test.iso" \
  --csv "$out/latency-benchmark.csv" --summary-csv "$out/latency-summary.csv" "$@" |
  tee "$out/latency-benchmark.txt"
gnuplot -e "summary='$out/latency-summary.csv'; output='$out/latency-benchmark.png'; machine='$machine'" \
  "$repo/benchmarks/latency/plot.gp"
echo "wrote $out/latency-benchmark.png"
