#!/usr/bin/env bash
# A 131072-token context end to end, in minutes: the bundled demo model (trained at 4096) with
# YaRN x32 turned on from the command line, a q8_0 KV cache, served over loopback. A prompt of
# ~125K tokens (27 copies of tests/fixtures/demo/heldout.py) is prefilled in chunks through the
# paged cache; a second request that extends it must find all of it in the prefix cache
# (usage.prompt_tokens_details.cached_tokens) and answer in a fraction of the time.
#   bench/long_context.sh [BIN] [PORT]      prints the KV report, both requests' usage and times, peak RSS
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/q3moe} PORT=${2:-18931}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 27); do cat tests/fixtures/demo/heldout.py; done >"$work/prompt.txt"
/usr/bin/time -v "$BIN" serve -m models/qwen3-moe-demo-py.gguf --host 127.0.0.1 --port "$PORT" \
  --rope-scaling yarn --rope-scale 32 --yarn-orig-ctx 4096 -c 131072 --kv-type q8_0 \
  --max-batch-size 1 --cache-lens 133120 --chunk-size 512 --timeout 3600 --max-body 8000000 \
  2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.3; done
grep "KV cache" "$work/serve.log"
ask() { # prompt file -> usage json and seconds
  python3 - "$1" "$PORT" <<'PY'
import json, sys, time, urllib.request
prompt = open(sys.argv[1]).read()
body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[2]}/v1/completions", body, {"Content-Type": "application/json"})
t = time.time()
reply = json.load(urllib.request.urlopen(req, timeout=3600))
print(json.dumps({"seconds": round(time.time() - t, 1), "usage": reply["usage"], "text": reply["choices"][0]["text"]}))
PY
}
ask "$work/prompt.txt"
{ cat "$work/prompt.txt"; echo "def longest_common_prefix(words):"; } >"$work/prompt2.txt"
ask "$work/prompt2.txt"
kill -INT $server
wait $server || true
grep -E "Maximum resident|Elapsed" "$work/serve.log"
