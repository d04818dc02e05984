#!/usr/bin/env bash
# The chat page at GET / in headless Chromium, against q3moe serve on 127.0.0.1.
#
#   1. src/server/chat_page.h is what src/server/chat_page_embed.sh makes of chat_page.html, and
#      the server sends exactly that page;
#   2. a screenshot of the empty page (chromium --screenshot), kept under $Q3_TMP/chat_page/;
#   3. the page driven through the DevTools protocol (over --remote-debugging-pipe, so no port and
#      no extra package): /?q=...&autosend=1 sends a question, the reply streams in, and the DOM
#      must then hold the reasoning block and the answer; again with think=0 (no reasoning).
#      Screenshots of both conversations are kept too.
# The server runs the scripted model of test_server_tools.py, whose replies are known: with
# thinking on it reasons, answers and calls a tool; with thinking off it answers. Everything is
# bounded in time; the server is stopped on exit whatever happens.
set -euo pipefail

BIN=${Q3_BIN:?Q3_BIN must name the q3moe binary}
ROOT=${Q3_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${Q3_TMP:-$(mktemp -d)}/chat_page
mkdir -p "$OUT"
fail() { echo "test_chat_page: FAIL: $*" >&2; exit 1; }

# ---- 1. the embedded page is the HTML file ----
sh "$ROOT/src/server/chat_page_embed.sh" "$OUT/chat_page.h"
cmp -s "$OUT/chat_page.h" "$ROOT/src/server/chat_page.h" ||
  fail "src/server/chat_page.h is stale: run sh src/server/chat_page_embed.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "test_chat_page: SKIP: chromium is not installed (scripts/deps.sh installs it)"
  exit 0
fi
PY=${Q3_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

# ---- the server, on the scripted model ----
MODEL="$OUT/scripted-qwen3moe"
Q3_BIN="$BIN" "$PY" -c "import sys; sys.path.insert(0, '$ROOT/tests'); import test_server_tools as t; \
t.write_scripted_model('$MODEL')"
: >"$OUT/server.log" # the background job opens it itself, maybe after the first look below
"$BIN" serve -m "$MODEL" --host 127.0.0.1 --port 0 --threads 2 2>"$OUT/server.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
PORT=
for _ in $(seq 300); do
  PORT=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$OUT/server.log" | head -n 1)
  [ -n "$PORT" ] && break
  kill -0 "$SERVER" 2>/dev/null || fail "the server did not start: $(cat "$OUT/server.log")"
  sleep 0.1
done
[ -n "$PORT" ] || fail "the server did not report its port"
URL="http://127.0.0.1:$PORT"
curl -sf --max-time 10 "$URL/" -o "$OUT/served.html" || fail "GET / failed"
cmp -s "$OUT/served.html" "$ROOT/src/server/chat_page.html" || fail "GET / is not chat_page.html"

# ---- 2. the empty page ----
timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,800 \
  --virtual-time-budget=3000 --screenshot="$OUT/chat_page_empty.png" "$URL/" >/dev/null 2>&1 ||
  fail "chromium could not take a screenshot"
[ -s "$OUT/chat_page_empty.png" ] || fail "no screenshot written"

# ---- 3. the page driven: load, wait for the streamed reply, dump the DOM, screenshot ----
drive() { # URL DOM_OUT PNG_OUT
  timeout 90 "$PY" - "$CHROMIUM" "$@" <<'EOF'
import base64, fcntl, json, os, subprocess, sys, time

chromium, url, dom_out, png_out = sys.argv[1:5]
# Pipe ends well above 4, so that putting Chromium's on 3 and 4 in the child cannot clobber one.
high = lambda fd: (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10), os.close(fd))[0]
to_chrome_r, to_chrome_w = map(high, os.pipe())
from_chrome_r, from_chrome_w = map(high, os.pipe())

def pipes():  # Chromium reads commands on fd 3 and writes replies on fd 4
    os.dup2(to_chrome_r, 3)
    os.dup2(from_chrome_w, 4)

proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                         "--remote-debugging-pipe", "--window-size=1000,800", "about:blank"],
                        preexec_fn=pipes, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(to_chrome_r)
os.close(from_chrome_w)
replies, buffered, next_id = open(from_chrome_r, "rb", buffering=0), b"", 0

def call(method, session=None, **params):
    global buffered, next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    while True:
        while b"\0" not in buffered:
            chunk = replies.read(65536)
            if not chunk:
                raise SystemExit("chromium closed the pipe")
            buffered += chunk
        raw, buffered = buffered.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply:
                raise SystemExit(f"{method}: {reply['error']}")
            return reply["result"]

try:
    target = call("Target.createTarget", url="about:blank")["targetId"]
    session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    call("Page.enable", session)
    call("Page.navigate", session, url=url)
    state, deadline = None, time.time() + 60
    while state not in ("done", "error") and time.time() < deadline:
        time.sleep(0.1)
        state = call("Runtime.evaluate", session, expression="document.body && document.body.dataset.state",
                     returnByValue=True)["result"].get("value")
    dom = call("Runtime.evaluate", session, expression="document.documentElement.outerHTML",
               returnByValue=True)["result"]["value"]
    with open(dom_out, "w") as f:
        f.write(dom)
    png = call("Page.captureScreenshot", session, format="png")["data"]
    with open(png_out, "wb") as f:
        f.write(base64.b64decode(png))
    print(f"page state: {state}")
finally:
    try:
        call("Browser.close")
    except BaseException:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
EOF
}

Q='What%20is%20the%20weather%20in%20Paris%3F'
drive "$URL/?q=$Q&autosend=1" "$OUT/dom_thinking.html" "$OUT/chat_page_thinking.png" || fail "driving the page failed"
DOM="$OUT/dom_thinking.html"
grep -q 'data-state="done"' "$DOM" || fail "the reply did not finish (see $DOM)"
grep -q '<details class="reasoning"' "$DOM" || fail "no reasoning block in the DOM"
grep -q 'class="reasoning-text">I should call the weather tool</div>' "$DOM" || fail "wrong reasoning text"
grep -q 'class="content">Let me check.&lt;tool_call&gt;' "$DOM" || fail "the streamed answer is missing"
grep -q 'What is the weather in Paris?' "$DOM" || fail "the question is missing"

drive "$URL/?q=$Q&autosend=1&think=0" "$OUT/dom_plain.html" "$OUT/chat_page_plain.png" || fail "driving the page failed"
DOM="$OUT/dom_plain.html"
grep -q 'data-state="done"' "$DOM" || fail "the reply did not finish (see $DOM)"
grep -q 'class="content">Sunny in Paris today!</div>' "$DOM" || fail "the streamed answer is missing"
if grep -q 'class="reasoning"' "$DOM"; then fail "a reasoning block appeared with thinking off"; fi

# ---- the server stops cleanly ----
kill -TERM "$SERVER"
wait "$SERVER" || fail "the server exited with status $?"
trap - EXIT
echo "test_chat_page: ok (screenshots in $OUT)"
