#!/usr/bin/env bash
# Installs what q3moe builds and tests with on Debian 12: the C libraries (apt-get) and, for the
# tests, a Python virtual environment in .venv with numpy, gguf, safetensors, openai, anthropic and
# jsonschema (pip).
# Idempotent: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
          libpcre2-dev libutf8proc-dev libjansson-dev libmicrohttpd-dev libyaml-dev libedit-dev
          libcmocka-dev libnuma-dev libopenmpi-dev openmpi-bin python3 python3-venv curl chromium
          gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-python" ]; then
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
  if ! .venv/bin/python -c "import numpy, gguf, safetensors, openai, anthropic, jsonschema" 2>/dev/null; then
    echo "deps: installing Python test packages into .venv"
    .venv/bin/pip install -q --disable-pip-version-check numpy gguf safetensors openai anthropic jsonschema
  fi
fi
