#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang (AddressSanitizer
# and UndefinedBehaviorSanitizer on) and runs each for a bounded time,
# starting from its corpus in the repository.
#   scripts/fuzz.sh [--seconds N] [--merge] [HARNESS...]
#     --seconds N  how long each harness runs (default: $ANWEDDOL_FUZZ_SECONDS, or 30)
#     --merge      add the inputs that reach new code to tests/fuzz/corpus/,
#                  minimised (libFuzzer's -merge=1): commit them
#     HARNESS      lease_file domain_xml shell_quote setup_arguments console_scanner
#                  classic_framing request_envelope (default: all)
# A failure leaves its input in build-fuzz/artifacts/HARNESS/; copy it into
# the corpus once fixed, so that the unit tests replay it from then on.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ANWEDDOL_FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${ANWEDDOL_FUZZ_SECONDS:-30}
merge=false
harnesses=()
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --merge) merge=true; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
((${#harnesses[@]})) || harnesses=(lease_file domain_xml shell_quote setup_arguments console_scanner
  classic_framing request_envelope)

if [[ $(id -u) -eq 0 ]]; then
  "$repo/scripts/setup.sh"
elif ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ is missing: run scripts/setup.sh as root" >&2
  exit 1
fi

CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DANWEDDOL_FUZZ=ON -DANWEDDOL_BUILD_EXAMPLES=OFF -DANWEDDOL_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j2 --target "${harnesses[@]/%/_fuzzer}"

failed=()
for name in "${harnesses[@]}"; do
  corpus=$repo/tests/fuzz/corpus/$name
  work=$build/corpus/$name          # what this run finds; the repository's stays as it is
  artifacts=$build/artifacts/$name/
  mkdir -p "$work" "$artifacts"
  echo "== $name: ${seconds}s"
  if ! "$build/tests/fuzz/${name}_fuzzer" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$work" "$corpus" 2>"$build/$name.log"; then
    failed+=("$name")
    tail -40 "$build/$name.log"
    continue
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::new_units_added)' "$build/$name.log" || true
  if $merge; then
    "$build/tests/fuzz/${name}_fuzzer" -merge=1 "$corpus" "$work" 2>>"$build/$name.log"
    echo "   corpus: $(ls "$corpus" | wc -l) files, $(du -sh "$corpus" | cut -f1)"
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in $build/artifacts/, logs in $build/*.log)" >&2
  exit 1
fi
echo "fuzz.sh: ${#harnesses[@]} harnesses, ${seconds}s each, no failure"
