#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. gcc release build, every test (C unit and parity tests, Python interop and server tests)
#   2. the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. clang build with -Werror (compile only: the code must be clean under both compilers)
#   4. CUDA build with -Werror when nvcc is installed (compile and link only: CI has no GPU; the
#      GPU kernels' block math and the backend's host-side code are tested in stages 1 and 2)
#   5. libFuzzer targets (clang), each for a short time
set -euo pipefail
cd "$(dirname "$0")/.."
export Q3_PYTHON="$PWD/.venv/bin/python"
JOBS=$(nproc)
# 8 s per target keeps the stage under ~3 minutes on 2 cores for 16 targets (start-up included)
FUZZ_SECONDS=${FUZZ_SECONDS:-8}

step() { printf '\n=== %s\n' "$*"; }

step "release build (gcc)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQ3_WERROR=ON >/dev/null
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

step "AddressSanitizer + UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQ3_SANITIZE=ON -DQ3_WERROR=ON >/dev/null
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$JOBS" -LE slow)

step "clang build (-Werror)"
CC=clang cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Release -DQ3_FUZZ=ON -DQ3_WERROR=ON >/dev/null
cmake --build build-clang -j "$JOBS"

step "CUDA build (nvcc, -Werror, sm_80/89/90)"
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$NVCC" ]; then
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DQ3_CUDA=ON -DQ3_WERROR=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" "-DCMAKE_CUDA_ARCHITECTURES=80-real;89-real;90" >/dev/null
  cmake --build build-cuda -j "$JOBS" --target q3moe q3_gpu_check
  # no GPU here: --device cuda must end with a clear error, on every command
  Q3_BIN=$PWD/build-cuda/q3moe Q3_FIXTURES=$PWD/tests/fixtures Q3_TMP=$PWD/build-cuda bash tests/test_cuda_cli.sh | tail -n 1
else
  echo "!!! nvcc not found: the CUDA build was SKIPPED (install the CUDA toolkit, e.g. /usr/local/cuda, to compile src/cuda)"
fi

step "fuzzing (${FUZZ_SECONDS}s per target)"
# Every target first runs its checked-in corpus (seeds and the regression inputs of past findings,
# tests/fuzz/corpus/NAME), then mutates for FUZZ_SECONDS with its dictionary (tests/fuzz/NAME.dict).
# The targets' own chatter is closed off (-close_fd_mask); libFuzzer's and the sanitizers' reports
# go to build-clang/NAME.log, shown when a target fails. Long campaigns: tests/fuzz/RESULTS.md.
for f in build-clang/tests/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus="tests/fuzz/corpus/${name#fuzz_}"
  dict="tests/fuzz/${name#fuzz_}.dict"
  log="build-clang/$name.log"
  mkdir -p "build-clang/corpus-$name"
  if ! "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -close_fd_mask=3 -artifact_prefix=build-clang/ \
      $( [ -f "$dict" ] && echo "-dict=$dict") "build-clang/corpus-$name" $( [ -d "$corpus" ] && echo "$corpus") >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "$name failed: the input is in build-clang/ (crash-*, leak-*, timeout-*, oom-*)"
    exit 1
  fi
  printf '%-20s %s\n' "$name" "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
done
echo
echo "all test stages passed"
