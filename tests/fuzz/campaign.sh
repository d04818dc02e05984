#!/bin/bash
# A long fuzz campaign (tests/fuzz/RESULTS.md): each target named on the command line in turn,
# until 10^6 executions or MAX_SECONDS (default 600), niced, with the CI build's instrumentation
# (build-clang: -DQ3_FUZZ=ON, ASan + UBSan). Then every input of the scratch and checked-in corpora
# and every artifact is replayed by CPU time (replay_NAME): an input over 1 s of CPU is a finding.
#
# usage: tests/fuzz/campaign.sh WORK_DIR NAME...   (run from the repository root after
#        `CC=clang cmake -S . -B build-clang -G Ninja -DQ3_FUZZ=ON && cmake --build build-clang`)
# WORK_DIR keeps the scratch corpora (kept between campaigns), logs, artifacts and summary.txt.
set -u
work=$(realpath -m "$1"); shift
mkdir -p "$work/logs" "$work/artifacts"
for name in "$@"; do
  fuzzer=build-clang/tests/fuzz_$name
  replay=build-clang/tests/replay_$name
  corpus=$work/corpus/$name
  dict=tests/fuzz/$name.dict
  log=$work/logs/$name.log
  mkdir -p "$corpus"
  start=$(date +%s)
  # -timeout (HANG_SECONDS, default 10) catches hangs; it is wall-clock time, which a busy machine
  # stretches: the 1 s bound is checked by CPU time afterwards.
  nice -n 19 "$fuzzer" -runs=1000000 -max_total_time="${MAX_SECONDS:-600}" -timeout="${HANG_SECONDS:-10}" \
    -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$name-" $( [ -f "$dict" ] && echo "-dict=$dict") \
    "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - start ))
  artifacts=$(ls "$work/artifacts" | grep -c "^$name-")
  # Artifacts too: a timeout artifact is a finding only if it is slow by CPU time as well.
  slow=$(nice -n 19 "$replay" 1 "$corpus" "tests/fuzz/corpus/$name" $(ls -d "$work/artifacts/$name-"* 2>/dev/null) \
    2>&1 | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  echo "$name rc=$rc seconds=$seconds execs=${execs:-?} artifacts=$artifacts | $last | $slow" \
    >>"$work/summary.txt"
done
