#!/usr/bin/env bash
# Runs anweddol-server and the reference Anweddol server (anwdlserver) on the
# same client stream in the sandbox, and plots it: writes
# docs/server-benchmark.{txt,csv,png} and docs/server-summary.csv. As root.
#
#   benchmarks/server/run.sh [server_bench.py arguments, such as --sequential 5 --burst 4 --pool 2]
#
# Builds anweddol-server (in $ANWEDDOL_BUILD_DIR, default build/) and the
# public-endpoint benchmark ISO (tests/guest/build-iso.sh with
# ANWEDDOL_ISO_PUBLIC_ENDPOINT=1: the reference only knows endpoint/endpoint),
# and takes the reference from $ANWEDDOL_REFERENCE_DIR, a checkout of
# github.com/Darnethal0z/Anweddol-server (cloned to a temporary folder when
# unset; never into this repository). The reference needs Debian's
# python3-twisted python3-sqlalchemy python3-paramiko python3-cerberus
# python3-daemon python3-psutil python3-libvirt python3-defusedxml
# python3-yaml socat; the driver python3-requests.
# The sandbox is brought up and down around the run, unless
# ANWEDDOL_SANDBOX_UP=1 says it already runs (and is left running).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
out=$repo/docs
iso=$build/guest/anweddol-bench-public-endpoint.iso

die() { echo "run.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (the sandbox and libvirt need it)"
/usr/bin/python3 -c 'import twisted, sqlalchemy, paramiko, cerberus, daemon, psutil, libvirt, defusedxml, yaml, requests' ||
  die "the reference's Python modules are missing: apt-get install python3-twisted python3-sqlalchemy python3-paramiko python3-cerberus python3-daemon python3-psutil python3-libvirt python3-defusedxml python3-yaml python3-requests socat"
command -v socat >/dev/null || die "socat is missing (the reference forwards with it): apt-get install socat"

reference=${ANWEDDOL_REFERENCE_DIR:-}
cleanup=()
on_exit() { for step in "${cleanup[@]}"; do eval "$step"; done; }
trap on_exit EXIT
if [[ -z $reference ]]; then
  reference=$(mktemp -d)
  cleanup+=("rm -rf '$reference'")
  git clone -q --depth 1 https://github.com/Darnethal0z/Anweddol-server "$reference"
fi
[[ -f $reference/anwdlserver/process.py ]] || die "$reference is not an Anweddol-server checkout"

cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice cmake --build "$build" -j2 --target anweddol-server
ANWEDDOL_ISO_PUBLIC_ENDPOINT=1 "$repo/tests/guest/build-iso.sh" "$iso"

if [[ ${ANWEDDOL_SANDBOX_UP:-0} != 1 ]]; then
  cleanup+=("'$repo/scripts/sandbox.sh' down")
  "$repo/scripts/sandbox.sh" up
fi
machine="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -r), no KVM (TCG)"
status=0
"$repo/scripts/sandbox.sh" exec /usr/bin/python3 "$repo/benchmarks/server/server_bench.py" \
  --ours "$build/server/anweddol-server" --reference-dir "$reference" --iso "$iso" \
  --machine "$machine" --csv "$out/server-benchmark.csv" \
  --summary-csv "$out/server-summary.csv" "$@" | tee "$out/server-benchmark.txt" ||
  status=$?
gnuplot -e "summary='$out/server-summary.csv'; output='$out/server-benchmark.png'; machine='$machine'" \
  "$repo/benchmarks/server/plot.gp"
echo "wrote $out/server-benchmark.png"
exit $status
