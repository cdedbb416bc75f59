#!/usr/bin/env bash
# Runs the many-hosts benchmark in the sandbox's two-host mode: N containers
# provisioned at once across both hosts, against the first host alone.
# Writes docs/hosts-benchmark.{txt,csv}. As root, after scripts/prepare.sh
# hosts_benchmark. The sandbox is shared: hold its lock,
#
#   flock /tmp/anweddol-sandbox.lock benchmarks/hosts/run.sh --runs 2
#
# Arguments go to the program (--count, --runs, --memory; see
# hosts_benchmark.cpp).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs

trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up --hosts 2
{
  echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG);" \
    "both hosts run on it"
  "$repo/scripts/sandbox.sh" exec "$build/benchmarks/hosts/hosts_benchmark" \
    --iso "$build/guest/anweddol-test.iso" --csv "$out/hosts-benchmark.csv" "$@"
} | tee "$out/hosts-benchmark.txt"
