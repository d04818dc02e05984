#!/usr/bin/env bash
# Tests the AArch64 (NEON) path of the CPU kernels on any machine: cross-compiles the kernels
# alone (src/quant, src/cpu/dot_*, src/cpu/vec*: the whole library needs jansson, pcre2, ... for
# arm64, which Debian's cross toolchain does not bring) with the dependency-free driver
# tests/cross/test_kernels.c, statically so that qemu-user needs no sysroot, and runs it under
# qemu-aarch64. The runs cover both ways the kernels are built and both CPU kinds:
#   - built for ARMv8.2 + dotprod (SDOT by intrinsic), on an emulated CPU that has it;
#   - built for baseline ARMv8.0 (SDOT through the file's own target), on a CPU with dotprod,
#     and on a Cortex-A57, which lacks it: run-time detection must fall back to plain NEON;
#   - where clang can target AArch64, its baseline build (SDOT by inline assembly) too.
# Prints SKIP and exits 77 (CTest: skipped) when aarch64-linux-gnu-gcc or qemu-aarch64 is
# missing (scripts/deps.sh installs them: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user). Set Q3_AARCH64_CC to
# use another compiler (clang --target=aarch64-linux-gnu works too).
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${Q3_AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${Q3_QEMU_AARCH64:-qemu-aarch64}
if ! command -v "${CC%% *}" >/dev/null 2>&1 || ! command -v "$QEMU" >/dev/null 2>&1; then
  echo "SKIP: $CC or $QEMU not installed (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
  exit 77 # CTest: skipped
fi

out=$(mktemp -d "${Q3_TMP:-${TMPDIR:-/tmp}}/aarch64.XXXXXX")
trap 'rm -rf "$out"' EXIT

# The type kernels and what they need (the tile kernels next to them, where there are any).
shopt -s nullglob
SOURCES=(src/quant/*.c src/cpu/kernel_table.c src/cpu/dot_*.c src/cpu/gemm*.c src/cpu/vec*.c src/base/error.c tests/cross/test_kernels.c)
# The flags of the CMake build (-Wno-format-truncation is its GCC exception for error.c).
FLAGS=(-O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -static)
if $CC --version 2>/dev/null | grep -qi "gcc"; then FLAGS+=(-Wno-format-truncation); fi

build() { # march output
  echo "build: $CC -march=$1"
  $CC "${FLAGS[@]}" -march="$1" "${SOURCES[@]}" -o "$2" -lm -pthread
}

run() { # cpu binary args...
  local cpu=$1 bin=$2
  shift 2
  echo "run: $QEMU -cpu $cpu $(basename "$bin") $*"
  "$QEMU" -cpu "$cpu" "$bin" "$@"
}

build armv8.2-a+dotprod "$out/kernels_dotprod"
build armv8-a "$out/kernels_baseline"
run max "$out/kernels_dotprod" --expect neon --expect dotprod
run max "$out/kernels_baseline" --expect neon --expect dotprod
run cortex-a57 "$out/kernels_baseline" --expect neon --lack dotprod

# clang takes another road to SDOT in a baseline build (a target attribute and inline
# assembly): build and run it too when clang can target AArch64 with this toolchain's libc.
if [ -z "${Q3_AARCH64_CC:-}" ] && command -v clang >/dev/null 2>&1 &&
   echo 'int main(void) { return 0; }' | clang --target=aarch64-linux-gnu -static -x c - -o "$out/probe" 2>/dev/null; then
  CC="clang --target=aarch64-linux-gnu"
  FLAGS=(-O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -static)
  build armv8-a "$out/kernels_clang"
  run max "$out/kernels_clang" --expect neon --expect dotprod
else
  echo "clang: cannot target aarch64 here, its build skipped"
fi
echo "aarch64 kernels: all runs passed"
