#!/usr/bin/env bash
# Installs what the build needs, checks the formatting, builds, and runs every test through
# ctest: unit, integration, and GPU tests (which report themselves skipped, visibly, on a machine
# without a GPU). Then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# Formatting first, so that a badly formatted file fails in seconds, not after the build.
# .clang-format at the root; clang-format 14 (Debian 12's), since other versions format some
# constructs differently. Fix with: clang-format -i FILE...
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
echo "== formatting ($($CLANG_FORMAT --version))"
git ls-files -z '*.cpp' '*.h' '*.cu' '*.cuh' | xargs -0 "$CLANG_FORMAT" --dry-run -Werror

# Line tables only (-g1) instead of full debug information: backtraces keep their file:line, and
# the build on CI's 2 cores takes about a third less time.
LINES_ONLY=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_DEBUG="-g1")
BUILD_DIR=${EEP_BUILD_DIR:-build}
step() { echo "== $1 (at ${SECONDS} s)"; }
# CI shows only the tail of a long output, where a fleet's logs can bury the failed check: after a
# failure, the failed checks (Catch's "FAILED:" with the test's name above it) and sanitizer
# reports are printed again, last.
failures_of() {
  echo "== what failed, from $1"
  grep -a -n -B8 -A12 -E ': FAILED:|^[^ ]*ERROR: (Address|Leak)Sanitizer|runtime error:' "$1" |
    tail -n 400 || echo "(no failed check in the log: a crash or a timeout; see above)"
}
step "build"
EEP_BUILD_DIR=$BUILD_DIR scripts/build.sh "${LINES_ONLY[@]}"
step "ctest"
# Unit tests two at a time; the integration and hosts tests are RUN_SERIAL (tests/CMakeLists.txt):
# each runs alone, since a fleet of processes on 2 cores must not wait on another test's.
if ! (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 600 -j "$(nproc)"); then
  failures_of "$BUILD_DIR/Testing/Temporary/LastTest.log"
  exit 1
fi

if [ "${EEP_SKIP_ASAN:-0}" != 1 ]; then
  ASAN_DIR=${BUILD_DIR}-asan
  if [ ! -f "$ASAN_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$ASAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEEP_SANITIZE=ON -DEEP_CUDA=OFF \
      -DEEP_WERROR=ON "${LINES_ONLY[@]}"
  fi
  step "ASan build"
  cmake --build "$ASAN_DIR" -j "$(nproc)" --target eep_unit_tests
  step "unit tests under ASan + UBSan"
  # One process for all of them: through ctest (a process per test case, two at a time) they
  # took 220 s instead of 128 s, each sanitized process paying its start-up.
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$ASAN_DIR/bin/eep_unit_tests" 2>&1 | tee "$ASAN_DIR/unit_tests.log"; then
    failures_of "$ASAN_DIR/unit_tests.log"
    exit 1
  fi
fi
step "done"
