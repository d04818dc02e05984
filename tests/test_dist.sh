#!/usr/bin/env bash
# Tensor and expert parallelism under mpirun on loopback (oversubscribed on 2 cores): logits of
# every tp/ep split on 2 and 4 ranks equal the single process's within 1e-5 relative, prefill and
# token-by-token decode, and a prefill long enough to run in slices whose sums overlap compute
# (src/model/forward.c); a file missing on one rank and a rank that dies both end every rank with
# a clear error, never a hang.
set -uo pipefail
BIN=${Q3_BIN:?} FIX=${Q3_FIXTURES:?} TMP=${Q3_TMP:-/tmp}
PY=${Q3_PYTHON:-python3}
if ! command -v mpirun >/dev/null || ! "$BIN" logits --tp 1 --help >/dev/null 2>&1; then
  echo "SKIP: mpirun missing or q3moe built without MPI"; exit 0
fi
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
# OpenMPI itself leaks at MPI_Finalize (its op tables, its unloaded plugins): under the sanitizers
# these runs keep every check but the leak report, which every single-process test still makes.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -q)
work=$(mktemp -d "$TMP/dist.XXXXXX")
passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

ids=$("$PY" - "$FIX" <<'PY'
import sys, json, struct
path = sys.argv[1] + "/tiny-qwen3moe/reference.safetensors"
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
a, b = h["p64.input_ids"]["data_offsets"]
print(",".join(str(x) for x in struct.unpack(f"<{(b - a) // 4}i", data[a:b])))
PY
)
model="$FIX/tiny-qwen3moe"
"$BIN" logits -m "$model" --tokens "$ids" --out "$work/single.bin" -t 1 || { echo "single-process run failed"; exit 1; }

compare() {  # compare FILE LABEL [REFERENCE]
  "$PY" - "${3:-$work/single.bin}" "$1" "$2" <<'PY'
import sys, struct
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
if len(a) != len(b): print(f"{sys.argv[3]}: sizes differ"); sys.exit(1)
n = len(a) // 4
x = struct.unpack(f"<{n}f", a); y = struct.unpack(f"<{n}f", b)
scale = max(abs(v) for v in x); worst = max(abs(p - q) for p, q in zip(x, y))
print(f"{sys.argv[3]}: max relative difference {worst / scale:.2e}")
sys.exit(0 if worst <= 1e-5 * scale else 1)
PY
}

for split in "2 --tp 2" "2 --ep 2" "4 --tp 4" "4 --tp 2 --ep 2" "4 --tp 1 --ep 4"; do
  set -- $split; np=$1; shift
  for mode in prefill decode; do
    extra=(); [ $mode = decode ] && extra=(--decode)
    out="$work/np$np-$mode.bin"
    if timeout 120 "${MPIRUN[@]}" -np "$np" "$BIN" logits -m "$model" --tokens "$ids" --out "$out" -t 1 "$@" "${extra[@]}" &&
       compare "$out" "np $np $* $mode"; then ok "np $np $* $mode"; else bad "np $np $* $mode"; fi
  done
done

# 300 tokens in one batch: every multi-rank run cuts the MoE layers into 4 slices of 75 tokens
# (at least 64 each), summing one slice while the next computes.
long_ids=$(for i in $(seq 0 299); do echo $(((i * 131 + 7) % 512)); done | paste -sd,)
"$BIN" logits -m "$model" --tokens "$long_ids" --out "$work/single-long.bin" -t 1 || { echo "single-process long run failed"; exit 1; }
for split in "2 --tp 2" "2 --ep 2" "4 --tp 2 --ep 2" "4 --tp 1 --ep 4"; do
  set -- $split; np=$1; shift
  out="$work/np$np-long.bin"
  if timeout 120 "${MPIRUN[@]}" -np "$np" "$BIN" logits -m "$model" --tokens "$long_ids" --out "$out" -t 1 "$@" &&
     compare "$out" "np $np $* sliced prefill of 300" "$work/single-long.bin"; then ok "np $np $* sliced prefill"
  else bad "np $np $* sliced prefill"; fi
done

# Equal logits alone would also pass if the batch were never sliced: bench's per-rank table must
# show sums that overlapped compute on every rank (column 6 of the table after "ranks:").
table=$(timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" bench -m "$model" -p 300 -n 1 -t 1 --ep 2 2>&1)
overlapped=$(awk -F'|' '/^ranks:/ {r = 1} r && $2 ~ /^ *[0-9]+ *$/ && $6 + 0 > 0 {n++} END {print n + 0}' <<<"$table")
if [ "$overlapped" -eq 2 ]; then ok "both ranks overlapped sums with compute"
else bad "overlapped sums on $overlapped of 2 ranks: $table"; fi

# A split that does not divide the heads: a clear error from rank 0, every rank ends.
msg=$(timeout 60 "${MPIRUN[@]}" -np 3 "$BIN" logits -m "$model" --tokens 1,2 --out "$work/x.bin" -t 1 --tp 3 2>&1)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "heads cannot be split" <<<"$msg"; then ok "bad split rejected: $msg"; else bad "bad split (rc $rc): $msg"; fi

# The model file missing on one rank: rank 1 starts in a directory where the relative path is absent.
mkdir -p "$work/a" "$work/b"
ln -s "$model" "$work/a/model"
msg=$(timeout 60 "${MPIRUN[@]}" -np 1 -wdir "$work/a" "$BIN" logits -m model --tokens 1,2 --out "$work/x.bin" -t 1 : \
      -np 1 -wdir "$work/b" "$BIN" logits -m model --tokens 1,2 --out "$work/x.bin" -t 1 2>&1)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 1" <<<"$msg"; then ok "missing file on rank 1: $(grep -m1 'rank 1' <<<"$msg")"
else bad "missing file on one rank (rc $rc): $msg"; fi

# A rank that dies mid-run: mpirun ends the job instead of hanging.
"${MPIRUN[@]}" -np 2 "$BIN" logits -m "$model" --tokens "$(printf '5,%.0s' $(seq 1 3000))5" --decode --out "$work/long.bin" -t 1 \
  >"$work/die.log" 2>&1 &
job=$!
sleep 3
follower=$(pgrep -f "q3moe logits -m $model" | while read -r p; do
  [ "$(tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -c '^OMPI_COMM_WORLD_RANK=1$')" = 1 ] && echo "$p"; done | head -1)
if [ -n "$follower" ]; then
  kill -9 "$follower"
  for _ in $(seq 1 60); do kill -0 $job 2>/dev/null || break; sleep 1; done
  if kill -0 $job 2>/dev/null; then kill -9 $job; bad "a killed rank left the job hanging"
  else wait $job; rc=$?; [ $rc -ne 0 ] && ok "killed rank ends the job (rc $rc)" || bad "killed rank: job exit 0"; fi
else
  wait $job; bad "could not find rank 1 to kill"
fi

# Two ranks serve the OpenAI API on loopback; greedy completions equal a single process's.
ROOT=${Q3_ROOT:-$(dirname "$0")/..}
demo="$ROOT/models/qwen3-moe-demo-py.gguf"
serve_and_ask() {  # serve_and_ask PORT LAUNCHER... -> prints the completion text
  local port=$1; shift
  "$@" "$BIN" serve -m "$demo" --host 127.0.0.1 --port "$port" -t 1 ${SERVE_SPLIT:-} >"$work/serve-$port.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.3; done
  curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "def fibonacci(n):\n", "max_tokens": 24, "temperature": 0}' |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["text"])'
  kill -INT $pid 2>/dev/null
  for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
}
port=$((20000 + RANDOM % 20000))
single=$(serve_and_ask $port env)
pair=$(SERVE_SPLIT="--tp 2" serve_and_ask $((port + 1)) "${MPIRUN[@]}" -np 2)
if [ -n "$single" ] && [ "$single" = "$pair" ]; then ok "2-rank server answers like one process: $(head -c 40 <<<"$single" | tr '\n' ' ')..."
else bad "2-rank server: '$pair' vs single '$single' ($(tail -3 "$work/serve-$((port + 1)).log"))"; fi

rm -rf "$work"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
