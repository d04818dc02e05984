"""q3moe serve at its HTTP edges, as an attacker or a careless client would meet them (issue 13),
on the bundled demo model, over raw sockets:

  - idle and slow-header connections cannot lock others out: /health stays reachable, other
    requests get 503 JSON past --max-connections, a head must arrive within --header-timeout (408);
  - a request that would outgrow the KV cache (--cache-lens) is refused at admission (400) or ends
    with finish_reason "length", never a 500 that loses the output;
  - a client that half-closes after its request (shutdown(SHUT_WR), as `nc -N` does) gets its answer;
  - heads libmicrohttpd would answer itself (431, 414, 505, Content-Length -1 or 1e20) get one
    well-formed JSON response each, counted in /metrics; a malformed chunked body (libmicrohttpd's
    own answer, see src/server/gate.h) still gets exactly one response and is counted;
  - two Content-Length fields, or Transfer-Encoding with Content-Length, are refused (400) and the
    request does not run;
  - CORS: --cors-origin adds Access-Control-Allow-Origin, OPTIONS answers the preflight.
The server keeps serving after each of them."""
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as harness  # noqa: E402

# The server's --header-timeout, and how much later than due a timeout may fire on a loaded
# 2-core machine (its poll loop, the scheduler) before the test calls it broken.
HEADER_TIMEOUT = 3
SLACK = 4

PROMPT = "import os\n\n\ndef read_lines(path):\n"


def exchange(port, data, half_close=False, timeout=30):
    """Sends data, reads until the server closes; returns the bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def responses(data):
    """[(status, {header: value}, body)] of every final response in data (interim 1xx skipped),
    parsed strictly: a second status line where a body should end is a second response."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"no end of head in {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if status.startswith("1"):
            data = rest
            continue
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        else:
            body, data = rest, b""
        out.append((int(status), headers, body))
    return out


def one_response(data):
    got = responses(data)
    assert len(got) == 1, f"{len(got)} responses in {data!r}"
    return got[0]


def request(method, path, body=b"", headers=()):
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n" + "".join(f"{h}\r\n" for h in headers)
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def completion(**fields):
    return json.dumps({"prompt": PROMPT, "max_tokens": 4, **fields}).encode()


class HttpEdgesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(harness.DEMO_MODEL, "--max-connections", "8",
                                 "--header-timeout", str(HEADER_TIMEOUT),
                                 "--cache-lens", "1024", "--cors-origin", "https://chat.example")

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0, "".join(cls.srv.log)

    def code_count(self, code):
        return self.srv.metrics().get(f'q3moe_http_requests_total{{code="{code}"}}', 0)

    def assert_still_serving(self):
        status, _, r = self.srv.post("/v1/completions", json.loads(completion()))
        self.assertEqual(status, 200, r)

    # ---- connection slots ----

    def test_idle_connections_do_not_lock_out(self):
        """40 silent connections (past the limit of 8 and the 16 kept for /health): /health answers at
        once, a completion is refused with 503 JSON, and the silent ones are closed after the header
        timeout, after which completions are served again."""
        idle = [socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) for _ in range(40)]
        try:
            t0 = time.time()
            self.assertEqual(self.srv.request("GET", "/health", timeout=5)[0], 200)
            # Answered before any header timeout could have fired: not queued behind the idle ones.
            self.assertLess(time.time() - t0, HEADER_TIMEOUT - 0.5)
            status, headers, r = self.srv.post("/v1/completions", json.loads(completion()))
            self.assertEqual((status, r["error"]["code"]), (503, "too_many_connections"))
            self.assertEqual(headers.get("Retry-After"), "1")
            for s in idle:  # closed by the server, without a word: they never sent anything
                self.assertEqual(s.recv(100), b"")
            self.assertLess(time.time() - t0, HEADER_TIMEOUT + SLACK)
        finally:
            for s in idle:
                s.close()
        deadline = time.time() + 5
        while self.srv.post("/v1/completions", json.loads(completion()))[0] != 200:
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)

    def test_slow_header_gets_408(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\n")
            t0, got = time.time(), b""
            # One header line every half second keeps it busy, not alive.
            while time.time() - t0 < HEADER_TIMEOUT + SLACK + 1:
                try:
                    s.sendall(b"X-Drip: 1\r\n")
                except OSError:
                    break
                s.settimeout(0.5)
                try:
                    chunk = s.recv(4096)
                    got += chunk
                    if not chunk or got.endswith(b"}"):
                        break
                except socket.timeout:
                    pass
            status, headers, body = one_response(got)
            self.assertEqual((status, json.loads(body)["error"]["code"]), (408, "request_timeout"))
            self.assertLess(time.time() - t0, HEADER_TIMEOUT + SLACK)
        finally:
            s.close()
        self.assert_still_serving()

    # ---- the KV cache ----

    def test_kv_cache_admission(self):
        """--cache-lens 1024, a ~900-token prompt: max_tokens 500 is refused up front; left open,
        max_tokens becomes what the cache leaves and the reply ends with "length"."""
        text = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(70))
        status, _, tok = self.srv.post("/tokenize", {"prompt": text})
        n = tok["count"]
        self.assertTrue(850 <= n <= 1000, n)
        before = self.code_count(500)
        status, _, r = self.srv.post("/v1/completions", {"prompt": text, "max_tokens": 500, "ignore_eos": True})
        self.assertEqual((status, r["error"]["code"], r["error"]["param"]), (400, "context_length_exceeded", "max_tokens"))
        status, _, r = self.srv.post("/v1/completions", {"prompt": text, "ignore_eos": True})
        self.assertEqual(status, 200, r)
        self.assertEqual((r["choices"][0]["finish_reason"], r["usage"]["completion_tokens"]), ("length", 1024 - n))
        self.assertEqual(self.code_count(500), before)

    # ---- half-closed clients ----

    def test_half_close_gets_the_answer(self):
        for stream in (False, True):
            got = exchange(self.srv.port, request("POST", "/v1/completions", completion(max_tokens=40, stream=stream,
                                                                                         ignore_eos=True)),
                           half_close=True)
            status, _, body = one_response(got)
            self.assertEqual(status, 200, got)
            if stream:
                events, done = harness.sse_events(body)
                self.assertTrue(done)
                self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")
            else:
                r = json.loads(body)
                self.assertEqual((r["usage"]["completion_tokens"], r["choices"][0]["finish_reason"]), (40, "length"))

    # ---- heads libmicrohttpd would answer itself ----

    def test_protocol_errors_are_json(self):
        cases = [
            (b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
            (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
            (b"GET /health HTTP/2.5\r\nHost: t\r\n\r\n", 505),
            (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 1e20\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        ]
        for data, want in cases:
            before = self.code_count(want)
            status, headers, body = one_response(exchange(self.srv.port, data))
            self.assertEqual(status, want, data[:60])
            self.assertEqual(headers["content-type"], "application/json")
            self.assertEqual(headers["access-control-allow-origin"], "https://chat.example")
            err = json.loads(body)
            if b"/v1/messages" in data:  # Anthropic's shape on Anthropic's path
                self.assertEqual((err["type"], err["error"]["type"]), ("error", "invalid_request_error"))
            else:
                self.assertEqual(set(err["error"]), {"message", "type", "param", "code"})
            self.assertEqual(self.code_count(want), before + 1)
        self.assert_still_serving()

    def test_bad_chunk_is_one_response(self):
        """A malformed chunked body is libmicrohttpd's to answer (HTML): one response, counted."""
        before = self.code_count(400)
        status, _, _ = one_response(exchange(self.srv.port, b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"))
        self.assertEqual(status, 400)
        self.assertEqual(self.code_count(400), before + 1)
        body = completion()
        chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        self.assertEqual(one_response(exchange(self.srv.port, chunked))[0], 200)

    def test_smuggling_patterns_refused(self):
        body = completion()
        generated = self.srv.metrics()["q3moe_generation_tokens_total"]
        for framing in ([f"Content-Length: {len(body)}", f"Content-Length: {len(body)}"],
                        [f"Content-Length: {len(body)}", "Content-Length: 2"],
                        [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"],
                        ["Transfer-Encoding: chunked", f"Content-Length: {len(body)}"]):
            head = "POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + "".join(f + "\r\n" for f in framing) + "\r\n"
            status, _, r = one_response(exchange(self.srv.port, head.encode() + body))
            self.assertEqual((status, json.loads(r)["error"]["code"]), (400, "ambiguous_length"))
        self.assertEqual(self.srv.metrics()["q3moe_generation_tokens_total"], generated)
        self.assert_still_serving()

    # ---- CORS ----

    def test_cors(self):
        status, headers, _ = one_response(exchange(self.srv.port, request(
            "OPTIONS", "/v1/chat/completions", headers=["Origin: https://chat.example",
                                                        "Access-Control-Request-Method: POST",
                                                        "Access-Control-Request-Headers: authorization, content-type"])))
        self.assertEqual(status, 204)
        self.assertEqual(headers["access-control-allow-origin"], "https://chat.example")
        self.assertIn("POST", headers["access-control-allow-methods"])
        self.assertEqual(headers["access-control-allow-headers"], "authorization, content-type")
        status, headers, _ = self.srv.request("POST", "/v1/completions", completion(),
                                              headers={"Origin": "https://chat.example"})
        self.assertEqual((status, headers.get("Access-Control-Allow-Origin")), (200, "https://chat.example"))


if __name__ == "__main__":
    harness.start_watchdog()
    unittest.main(verbosity=2)
