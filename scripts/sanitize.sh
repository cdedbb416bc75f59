#!/usr/bin/env bash
# The unit tests under a sanitizer, in a build directory of its own
# (build-asan/ or build-tsan/ beside the usual one). Any report fails the test
# that caused it: the programs are built with -fno-sanitize-recover and run
# with halt_on_error. Reports inside libvirt or libssh, which are not
# instrumented, are suppressed in tests/sanitizers/, each with its reason.
#   scripts/sanitize.sh asan|tsan [CTEST_ARGS...]
#     asan  AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer
#     tsan  ThreadSanitizer
# As root for the local sshd tests (scripts/test.sh runs it so).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-}
shift || true
case $kind in
  asan) sanitize=address,undefined ;;
  tsan) sanitize=thread ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan [CTEST_ARGS...]" >&2; exit 2 ;;
esac
build=${ANWEDDOL_BUILD_DIR:-$repo/build}-$kind
supp=$repo/tests/sanitizers

cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DANWEDDOL_SANITIZE=$sanitize -DANWEDDOL_BUILD_EXAMPLES=OFF -DANWEDDOL_BUILD_BENCHMARKS=OFF \
  >/dev/null
# Every program the unit tests run (tests/CMakeLists.txt keeps the list).
cmake --build "$build" -j2 --target unit_test_programs

# GLib's slice allocator (libvirt's objects) recycles memory among threads
# with locks the sanitizers cannot see, and hides leaks and reuse from them:
# plain malloc makes libvirt's memory visible to ASan and its reuse to TSan.
export G_SLICE=always-malloc
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:check_initialization_order=1
export LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp
cd "$build"
echo "== unit tests under $kind ($sanitize)"
ctest -L unit --output-on-failure "$@"
