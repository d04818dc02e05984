#!/usr/bin/env bash
# --device cuda and its options on every model-running command, on a machine without a GPU:
# a build without CUDA says how to get one, a CUDA build says no device was found; both exit 1
# with one clear line, never a crash. Misused options (--cpu-experts on the CPU, --gpu-experts
# without --cpu-experts, --device tpu) are refused before anything loads. A machine with a GPU
# skips the no-device checks (tests/gpu/run.sh covers it).
set -uo pipefail
BIN=${Q3_BIN:?} FIX=${Q3_FIXTURES:?} TMP=${Q3_TMP:-/tmp}
MODEL="$FIX/tiny-qwen3moe"
passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

# expect RC PATTERN -- COMMAND...: the exit status and a line of stderr matching PATTERN.
expect() {
  local want_rc=$1 pattern=$2; shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null </dev/null); rc=$?
  if [ "$rc" = "$want_rc" ] && grep -qE -- "$pattern" <<<"$err"; then ok "$* -> $rc"
  else bad "$*: exit $rc (want $want_rc), stderr: $(head -c 400 <<<"$err")"; fi
}

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP the no-device checks: this machine has a GPU"
else
  NO_GPU="built without CUDA \(configure with -DQ3_CUDA=ON|no CUDA device found"
  expect 1 "$NO_GPU" -- "$BIN" run -m "$MODEL" --device cuda -n 1 -p hello
  expect 1 "$NO_GPU" -- "$BIN" run -m "$MODEL" --device cuda --cpu-experts --gpu-experts 2 -n 1 -p hello
  expect 1 "$NO_GPU" -- "$BIN" chat -m "$MODEL" --device cuda
  expect 1 "$NO_GPU" -- "$BIN" serve -m "$MODEL" --device cuda --port 0
  expect 1 "$NO_GPU" -- "$BIN" bench -m "$MODEL" --device cuda -p 4 -n 2
  expect 1 "$NO_GPU" -- "$BIN" logits -m "$MODEL" --device cuda --tokens 1,2,3 --out "$TMP/cuda_cli.bin"
  expect 1 "$NO_GPU" -- "$BIN" perplexity -m "$MODEL" --device cuda --ids "$FIX/tiny-qwen3moe/reference.safetensors:p64.input_ids" --ctx 16 --windows 1
  printf 'model: %s\ndevice: cuda\nn_predict: 1\nprompt: hi\n' "$MODEL" >"$TMP/cuda_cli.yaml"
  expect 1 "$NO_GPU" -- "$BIN" run --config "$TMP/cuda_cli.yaml"
fi
expect 1 "go with --device cuda" -- "$BIN" run -m "$MODEL" --cpu-experts -n 1 -p hello
expect 1 "goes with --cpu-experts" -- "$BIN" run -m "$MODEL" --device cuda --gpu-experts 4 -n 1 -p hello
expect 2 "--device: 'tpu' is not cpu or cuda" -- "$BIN" run -m "$MODEL" --device tpu -n 1 -p hello
expect 2 "--gpu-experts" -- "$BIN" bench -m "$MODEL" --gpu-experts -3
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
