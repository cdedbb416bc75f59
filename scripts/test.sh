#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
# installs what is missing, builds, brings the sandbox up, runs unit and
# integration tests with CTest inside it, then the tests of many hypervisor
# hosts in its two-host mode, and tears the sandbox down, also when
# something fails. Extra arguments go to ctest (e.g. -L unit).
# Then the unit tests again under sanitizers (scripts/sanitize.sh), outside
# the sandbox, which they do not need: ANWEDDOL_SANITIZERS lists which,
# "asan tsan" by default: AddressSanitizer, LeakSanitizer and UBSan on every
# unit test, then ThreadSanitizer on the tests of the runtime's threads
# (libvirt's event loop and its routing, connections, several io_contexts;
# ANWEDDOL_TSAN_TESTS, a ctest regex, "." for all); "none" for neither.
# Any failure fails the whole.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_BUILD_DIR:-$repo/build}
sanitizers=${ANWEDDOL_SANITIZERS:-asan tsan}
tsan_tests=${ANWEDDOL_TSAN_TESTS:-event loop|event router|connection|runtime}
[[ $sanitizers == none ]] && sanitizers=

"$repo/scripts/prepare.sh"
trap '"$repo/scripts/sandbox.sh" down' EXIT
"$repo/scripts/sandbox.sh" up
failed=()
(cd "$build" && "$repo/scripts/sandbox.sh" exec ctest --output-on-failure -LE hosts "$@") ||
  failed+=("the suite")
"$repo/scripts/sandbox.sh" down
# The tests of many hypervisor hosts, in the sandbox's two-host mode.
"$repo/scripts/sandbox.sh" up --hosts 2
(cd "$build" && "$repo/scripts/sandbox.sh" exec ctest --output-on-failure --no-tests=error -L hosts "$@") ||
  failed+=("the two-host tests")
"$repo/scripts/sandbox.sh" down
trap - EXIT

for kind in $sanitizers; do
  start=$SECONDS
  selection=()
  [[ $kind == tsan ]] && selection=(-R "$tsan_tests")
  "$repo/scripts/sanitize.sh" "$kind" "${selection[@]}" "$@" || failed+=("unit tests under $kind")
  echo "== unit tests under $kind: $((SECONDS - start)) s, build included"
done

if ((${#failed[@]})); then
  echo "test.sh: failed: ${failed[*]}" >&2
  exit 1
fi
