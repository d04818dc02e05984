#!/usr/bin/env bash
# CTest entry for the AArch64 (NEON) kernels: cross-compiled and run under qemu-user by
# scripts/test_aarch64.sh, which exits 77 (CTest: skipped) where the cross toolchain or qemu is absent.
set -euo pipefail
exec bash "$(dirname "$0")/../scripts/test_aarch64.sh"
