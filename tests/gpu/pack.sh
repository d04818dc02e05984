#!/usr/bin/env bash
# Builds, on a machine without a GPU, what tests/gpu/run.sh runs on one: q3moe and q3_gpu_check
# for one architecture (sm_90: H100 / H200 by default; Q3_CUDA_ARCH=80 for an A100), without MPI
# and libnuma, with the CUDA runtime linked in statically, plus every shared library they need
# that is not the C runtime or the driver, in lib/ beside them (found there through their
# rpath, $ORIGIN/lib). The device machine has CUDA 13.0 and its driver but none of our Debian
# libraries. Writes build-gpu/q3gpu.tar.xz (ignored by git, like every build*/ directory), which
# the device tool's `carry` takes along: the repository and what it carries must stay under
# 64 MiB together, so this fails when the bundle would not leave room.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${Q3_CUDA_ARCH:-90}
BUILD=build-gpu-bundle
OUTDIR=build-gpu
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQ3_CUDA=ON -DQ3_MPI=OFF -DQ3_NUMA=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" '-DCMAKE_BUILD_RPATH=$ORIGIN/lib' \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target q3moe q3_gpu_check

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/q3gpu/lib" "$OUTDIR"
for bin in q3moe q3_gpu_check; do
  strip --strip-debug -o "$stage/q3gpu/$bin" "$BUILD/$bin"
done
# The C runtime and the driver come with the device machine; everything else travels.
ldd "$BUILD/q3moe" "$BUILD/q3_gpu_check" | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libgcc_s.so.*|libstdc++.so.*|libcuda.so.*) ;;
    *) cp -L "$lib" "$stage/q3gpu/lib/" ;;
  esac
done
git rev-parse HEAD >"$stage/q3gpu/COMMIT"
tar -C "$stage" -cJf "$OUTDIR/q3gpu.tar.xz" q3gpu

bundle=$(stat -c %s "$OUTDIR/q3gpu.tar.xz")
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
limit=$((64 * 1024 * 1024))
echo "bundle $OUTDIR/q3gpu.tar.xz: $((bundle / 1024)) KiB ($(ls "$stage/q3gpu/lib" | wc -l) libraries);" \
  "with the working tree ($(( (tree + ${untracked:-0}) / 1024 / 1024)) MiB): $(( (bundle + tree + ${untracked:-0}) / 1024 / 1024)) MiB of 64"
if [ $((bundle + tree + ${untracked:-0})) -ge $limit ]; then
  echo "pack.sh: the bundle and the working tree exceed the device tool's 64 MiB" >&2
  exit 1
fi
