#!/usr/bin/env bash
# Runs the parallel-provisioning benchmark in the sandbox and plots it:
# writes docs/provision-benchmark.{txt,csv,png} and docs/provision-summary.csv.
# As root, after scripts/prepare.sh provision_benchmark. The sandbox is
# shared: hold its lock, and split long measurements over several sessions,
# each adding its runs to the CSV (--continue reads the runs already there):
#
#   flock /tmp/anweddol-sandbox.lock benchmarks/provision/run.sh --runs 1
#   flock /tmp/anweddol-sandbox.lock benchmarks/provision/run.sh --continue --runs 1
#
# Other arguments go to the program (such as --counts 1,2,4 or --modes
# cpu-heavy,sequential; see provision_benchmark.cpp).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs

csv=(--csv "$out/provision-benchmark.csv")
if [[ ${1:-} == --continue ]]; then
  shift
  csv=(--continue "$out/provision-benchmark.csv")
fi
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
machine="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG)"
"$repo/scripts/sandbox.sh" exec "$build/benchmarks/provision/provision_benchmark" \
  --iso "$build/guest/anweddol-test.iso" "${csv[@]}" \
  --summary-csv "$out/provision-summary.csv" "$@" | tee "$out/provision-benchmark.txt"
gnuplot -e "summary='$out/provision-summary.csv'; output='$out/provision-benchmark.png'; machine='$machine'" \
  "$repo/benchmarks/provision/plot.gp"
echo "wrote $out/provision-benchmark.png"
