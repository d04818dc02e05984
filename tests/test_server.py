"""q3moe serve against real clients on 127.0.0.1: the `openai` package, curl, raw HTTP.

Runs the demo model (models/qwen3-moe-demo-py.gguf, or one converted into $Q3_TMP) and checks the
OpenAI semantics (chat, completions, streaming, usage, logprobs, seeds, tools in the prompt),
concurrency (8 streaming clients, a bounded load with no growth of memory or KV pages, batch
invariance), every bad-input status, and the server options (API key, body and connection limits,
queue limit, timeout). Tool calls and the reasoning split are exercised end to end with a
scripted model in test_server_tools.py; this file also holds the harness that test uses.

Everything is bounded: each request has a timeout, and a watchdog ends the whole run (servers
included) if it ever takes longer than WATCHDOG_S (three times that under AddressSanitizer)."""
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.environ["Q3_BIN"]
ROOT = os.environ.get("Q3_ROOT", os.path.join(os.path.dirname(__file__), ".."))
TMP = os.environ.get("Q3_TMP") or tempfile.mkdtemp()
os.makedirs(TMP, exist_ok=True)
WATCHDOG_S = 300
REQUEST_TIMEOUT_S = 60

_servers = []


def start_watchdog():
    def expire():
        sys.stderr.write("test_server: watchdog expired, stopping\n")
        for s in list(_servers):
            s.kill()
        os._exit(3)

    # AddressSanitizer builds run several times slower, the more so on a shared, loaded machine.
    t = threading.Timer(WATCHDOG_S * (3 if sanitized() else 1), expire)
    t.daemon = True
    t.start()


def sanitized():
    """True when the q3moe binary is built with AddressSanitizer."""
    with open(BIN, "rb") as f:
        return b"__asan_init" in f.read()


DEMO_MODEL = os.path.join(ROOT, "models", "qwen3-moe-demo-py.gguf")  # the bundled demo, as shipped


class Server:
    """One `q3moe serve` process on a free port of 127.0.0.1."""

    def __init__(self, model, *args, key=None, config=None):
        """args: more options; key: the API key (clients send it too); config: {key: value} passed
        as a YAML run config (--config) instead of options."""
        self.key = key
        cmd = [BIN, "serve", "-m", model, "--host", "127.0.0.1", "--port", "0", "--threads", "2", *args]
        if config is not None:
            fd, path = tempfile.mkstemp(suffix=".yaml", dir=TMP)
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{k}: {v}\n" for k, v in {**config, "api_key": key}.items() if v is not None))
            cmd += ["--config", path]
        elif key:
            cmd += ["--api-key", key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _servers.append(self)
        self.log = []
        found = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        deadline = time.time() + 30
        while self.request("GET", "/health")[0] != 200:
            if time.time() > deadline:
                raise RuntimeError("server never became healthy")
            time.sleep(0.1)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw):
        from openai import OpenAI

        return OpenAI(base_url=self.base_url + "/v1", api_key=self.key or "none", max_retries=0,
                      timeout=REQUEST_TIMEOUT_S, **kw)

    def request(self, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT_S):
        """(status, headers, body bytes); body may be bytes, str or a JSON-able object."""
        h = {"Content-Type": "application/json"}
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        except (ConnectionError, OSError) as e:
            return 0, {}, str(e).encode()
        finally:
            conn.close()

    def post(self, path, body, **kw):
        status, headers, data = self.request("POST", path, body, **kw)
        return status, headers, json.loads(data) if data.startswith(b"{") else data

    def metrics(self):
        """{"name" or "name{labels}": value} from /metrics."""
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def wait_metric(self, name, pred, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.metrics().get(name, 0)
            if pred(v):
                return v
            time.sleep(0.05)
        raise AssertionError(f"{name} never satisfied the condition (last {self.metrics().get(name)})")

    def stop(self):
        """SIGTERM, then the exit status (0 expected)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self in _servers:
            _servers.remove(self)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def chat_body(content="def add(a, b):", **kw):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 16}
    body.update(kw)
    return body


def sse_events(data):
    """The JSON objects of an SSE body, and whether it ended with [DONE]."""
    events, done = [], False
    for block in data.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                if line[6:] == "[DONE]":
                    done = True
                else:
                    events.append(json.loads(line[6:]))
    return events, done


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = DEMO_MODEL
        cls.srv = Server(cls.model, "--batch-size", "4", "--max-queue", "64")
        cls.client = cls.srv.client()
        cls.name = os.path.basename(cls.model).removesuffix(".gguf")

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        assert rc == 0, f"server exited with {rc}:\n" + "".join(cls.srv.log)

    def chat(self, **kw):
        return self.client.chat.completions.create(**{"model": self.name, **kw})

    def complete(self, **kw):
        return self.client.completions.create(**{"model": self.name, **kw})

    def prompt_tokens(self, body):
        fields = {k: body[k] for k in ("messages", "tools", "chat_template_kwargs") if k in body}
        status, _, r = self.srv.post("/tokenize", fields)
        self.assertEqual(status, 200, r)
        return r["tokens"]

    # ---- endpoints ----

    def test_health_models_metrics(self):
        status, _, data = self.srv.request("GET", "/health")
        self.assertEqual((status, json.loads(data)), (200, {"status": "ok"}))
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [self.name])
        self.assertEqual(self.client.models.retrieve(self.name).id, self.name)
        status, _, r = self.srv.request("GET", "/v1/models/other")
        self.assertEqual(status, 404)
        m = self.srv.metrics()
        for name in ("q3moe_prompt_tokens_total", "q3moe_generation_tokens_total", "q3moe_requests_waiting",
                     "q3moe_requests_running", "q3moe_kv_pages_used", "q3moe_kv_pages_free",
                     'q3moe_time_to_first_token_seconds_bucket{le="+Inf"}',
                     'q3moe_inter_token_latency_seconds_bucket{le="+Inf"}', "q3moe_time_to_first_token_seconds_count"):
            self.assertIn(name, m)
        self.assertTrue(any(k.startswith('q3moe_http_requests_total{code="200"}') for k in m))

    def test_tokenize_detokenize(self):
        status, _, r = self.srv.post("/tokenize", {"content": "def f(x):\n    return x"})
        self.assertEqual(status, 200)
        self.assertEqual(r["count"], len(r["tokens"]))
        status, _, back = self.srv.post("/detokenize", {"tokens": r["tokens"]})
        self.assertEqual((status, back["content"], back["prompt"]), (200, "def f(x):\n    return x", "def f(x):\n    return x"))
        status, _, r2 = self.srv.post("/tokenize", {"prompt": "def f(x):\n    return x"})
        self.assertEqual(r2["tokens"], r["tokens"])
        status, _, r = self.srv.post("/detokenize", {"tokens": [1, -1]})
        self.assertEqual((status, r["error"]["param"]), (400, "tokens"))

    # ---- OpenAI semantics ----

    def test_chat_usage_and_finish(self):
        body = chat_body(max_tokens=12, seed=1)
        r = self.chat(messages=body["messages"], max_tokens=12, seed=1)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, self.name)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(r.usage.prompt_tokens, len(self.prompt_tokens(body)))
        self.assertLessEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        # With the end-of-sequence token out of the way, max_tokens is exactly what comes back.
        r = self.chat(messages=body["messages"], max_completion_tokens=7,
                                                extra_body={"ignore_eos": True})
        self.assertEqual((r.usage.completion_tokens, r.choices[0].finish_reason), (7, "length"))

    def test_completions(self):
        r = self.complete(prompt="import os\n\n\ndef read_lines(path):\n",
                                           max_tokens=10, temperature=0, logprobs=2, extra_body={"ignore_eos": True})
        self.assertEqual(r.object, "text_completion")
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), r.usage.completion_tokens)
        self.assertEqual(len(lp.token_logprobs), 10)
        self.assertEqual(len(lp.text_offset), 10)
        self.assertTrue(all(len(t) == 2 for t in lp.top_logprobs))
        self.assertEqual("".join(lp.tokens), r.choices[0].text)  # greedy, whole characters
        status, _, data = self.srv.post("/tokenize", {"prompt": "import os\n\n\ndef read_lines(path):\n"})
        ids = data["tokens"]
        by_ids = self.complete(prompt=ids, max_tokens=10, temperature=0,
                                                extra_body={"ignore_eos": True})
        self.assertEqual(by_ids.choices[0].text, r.choices[0].text)
        self.assertEqual(by_ids.usage.prompt_tokens, len(ids))

    def test_streaming_chat(self):
        messages = chat_body()["messages"]
        stream = self.chat(messages=messages, max_tokens=20, seed=7, temperature=0.8,
                                                     stream=True, stream_options={"include_usage": True},
                                                     logprobs=True, top_logprobs=3)
        text, tokens, finish, usage, roles = "", 0, None, None, 0
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage:
                self.assertEqual(chunk.choices, [])
                usage = chunk.usage
                continue
            choice = chunk.choices[0]
            roles += choice.delta.role == "assistant"
            text += choice.delta.content or ""
            if choice.logprobs and choice.logprobs.content:
                tokens += len(choice.logprobs.content)
                self.assertEqual(len(choice.logprobs.content[0].top_logprobs), 3)
            finish = choice.finish_reason or finish
        self.assertEqual(roles, 1)
        self.assertIn(finish, ("stop", "length"))
        self.assertEqual(usage.completion_tokens, tokens)
        self.assertEqual(usage.prompt_tokens, len(self.prompt_tokens({"messages": messages})))
        # The same request whole gives the same text: the seed fixes the draws.
        whole = self.chat(messages=messages, max_tokens=20, seed=7, temperature=0.8)
        self.assertEqual(whole.choices[0].message.content, text)
        self.assertEqual(whole.usage.completion_tokens, tokens)

    def test_stream_chunks_count_tokens(self):
        """One chunk per generated token, logprobs or not."""
        stream = self.complete(prompt="class Stack:\n", max_tokens=9, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_body={"ignore_eos": True})
        chunks = [c for c in stream]
        self.assertEqual(chunks[-1].usage.completion_tokens, 9)
        token_chunks = [c for c in chunks if c.choices and c.choices[0].finish_reason is None]
        self.assertEqual(len(token_chunks), 9)
        self.assertEqual(chunks[-2].choices[0].finish_reason, "length")

    def test_thinking_toggle(self):
        """enable_thinking false pre-fills an empty think block (Qwen3's template), both spellings;
        the reply is then content with no reasoning."""
        messages = chat_body()["messages"]
        on = self.prompt_tokens({"messages": messages})
        for off_body in ({"messages": messages, "chat_template_kwargs": {"enable_thinking": False}},
                         {"messages": messages, "enable_thinking": False}):
            status, _, r = self.srv.post("/tokenize", off_body)
            off = r["tokens"]
            self.assertEqual(off[:len(on)], on)
            status, _, tail = self.srv.post("/detokenize", {"tokens": off[len(on):]})
            self.assertEqual(tail["content"], "<think>\n\n</think>\n\n")
        r = self.chat(messages=messages, max_tokens=8,
                                                extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        self.assertEqual(r.usage.prompt_tokens, len(off))
        self.assertIsNone(getattr(r.choices[0].message, "reasoning_content", None))

    def test_tools_in_prompt(self):
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                   "parameters": {"type": "object",
                                                                  "properties": {"city": {"type": "string"}}}}}]
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        r = self.chat(messages=messages, tools=tools, max_tokens=8)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length", "tool_calls"))
        ids = self.prompt_tokens({"messages": messages, "tools": tools})
        self.assertEqual(r.usage.prompt_tokens, len(ids))
        status, _, text = self.srv.post("/detokenize", {"tokens": ids})
        self.assertIn("<tools>\n" + json.dumps(tools[0]) + "\n</tools>", text["content"])
        # tool_choice "none" leaves the tools out.
        r = self.chat(messages=messages, tools=tools, tool_choice="none", max_tokens=4)
        self.assertEqual(r.usage.prompt_tokens, len(self.prompt_tokens({"messages": messages})))

    def test_logprobs(self):
        r = self.chat(messages=chat_body()["messages"], max_tokens=6, temperature=0,
                                                logprobs=True, top_logprobs=5, extra_body={"ignore_eos": True})
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 6)
        for entry in content:
            self.assertLessEqual(entry.logprob, 0)
            tops = [t.logprob for t in entry.top_logprobs]
            self.assertEqual(len(tops), 5)
            self.assertEqual(tops, sorted(tops, reverse=True))
            self.assertEqual(entry.top_logprobs[0].token, entry.token)  # greedy takes the top one
            self.assertAlmostEqual(entry.top_logprobs[0].logprob, entry.logprob, places=5)
            if not entry.token.startswith("bytes:"):
                self.assertEqual(bytes(entry.bytes).decode(), entry.token)

    def test_seed_determinism_and_stop(self):
        kw = dict(messages=chat_body()["messages"], max_tokens=24, temperature=1.0, top_p=0.95,
                  extra_body={"top_k": 50, "min_p": 0.01, "repetition_penalty": 1.1})
        a = self.chat(seed=1234, **kw).choices[0].message.content
        b = self.chat(seed=1234, **kw).choices[0].message.content
        self.assertEqual(a, b)
        r = self.complete(prompt="import os\n\n\ndef read_lines(path):\n", max_tokens=40,
                                           temperature=0, extra_body={"ignore_eos": True})
        full = r.choices[0].text
        cut = full[3:8]
        for stop in (cut, [cut, "@@never@@"]):
            r = self.complete(prompt="import os\n\n\ndef read_lines(path):\n", max_tokens=40,
                                               temperature=0, stop=stop, extra_body={"ignore_eos": True})
            self.assertEqual(r.choices[0].finish_reason, "stop")
            self.assertEqual(r.choices[0].text, full[:full.index(cut)])

    def test_curl(self):
        url = self.srv.base_url + "/v1/chat/completions"
        out = subprocess.run(["curl", "-sS", "--max-time", "60", url, "-H", "Content-Type: application/json",
                              "-d", json.dumps(chat_body(max_tokens=5))], capture_output=True, timeout=90)
        r = json.loads(out.stdout)
        self.assertEqual(r["object"], "chat.completion")
        out = subprocess.run(["curl", "-sSN", "--max-time", "60", url, "-d",
                              json.dumps(chat_body(max_tokens=5, stream=True, ignore_eos=True))],
                             capture_output=True, timeout=90)
        events, done = sse_events(out.stdout)
        self.assertTrue(done)
        self.assertTrue(out.stdout.endswith(b"data: [DONE]\n\n"))
        self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(len(events), 1 + 5 + 1)  # role, one per token, finish

    # ---- concurrency ----

    def test_concurrent_streams(self):
        prompts = ["def add(a, b):", "class Node:", "import sys", "for i in range(10):", "def main():",
                   "# read a file", "with open(path) as f:", "try:"]

        def one(i):
            messages = [{"role": "user", "content": prompts[i]}]
            stream = self.chat(messages=messages, max_tokens=12 + i, stream=True,
                                                         stream_options={"include_usage": True},
                                                         extra_body={"ignore_eos": True})
            chunks = [c for c in stream]
            tokens = sum(1 for c in chunks if c.choices and c.choices[0].finish_reason is None
                         and c.choices[0].delta.role is None)
            return i, tokens, chunks[-1].usage, len(self.prompt_tokens({"messages": messages}))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for i, tokens, usage, n_prompt in pool.map(one, range(8)):
                self.assertEqual(usage.completion_tokens, 12 + i)
                self.assertEqual(tokens, 12 + i)
                self.assertEqual(usage.prompt_tokens, n_prompt)

    def test_batch_invariance(self):
        """A greedy and a seeded request give the same tokens alone and beside other requests."""
        greedy = dict(prompt="def parse_args(argv):\n", max_tokens=24, temperature=0,
                      extra_body={"ignore_eos": True})
        seeded = dict(prompt="class Config:\n", max_tokens=24, temperature=0.9, seed=99,
                      extra_body={"ignore_eos": True})
        alone = [self.complete(**greedy).choices[0].text,
                 self.complete(**seeded).choices[0].text]
        others = []
        for i in range(3):
            t = threading.Thread(target=lambda i=i: others.append(self.complete(
                prompt=f"# helper {i}\nimport os\n", max_tokens=400, extra_body={"ignore_eos": True})))
            t.start()
            others.append(t)
        self.srv.wait_metric("q3moe_requests_running", lambda v: v >= 3)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            busy = list(pool.map(lambda kw: self.complete(**kw).choices[0].text, [greedy, seeded]))
        self.assertEqual(busy, alone)
        for t in [o for o in others if isinstance(o, threading.Thread)]:
            t.join(REQUEST_TIMEOUT_S)

    def test_bounded_load(self):
        """40 requests, 4 at a time: no errors, and neither resident memory nor KV pages grow."""
        def request(i):
            kind = i % 3
            if kind == 0:
                r = self.chat(messages=[{"role": "user", "content": f"task {i % 5}"}],
                                                        max_tokens=16, extra_body={"ignore_eos": True})
                return r.usage.completion_tokens
            if kind == 1:
                r = self.complete(prompt=f"def f{i % 5}(x):\n", max_tokens=16,
                                                   extra_body={"ignore_eos": True})
                return r.usage.completion_tokens
            stream = self.complete(prompt=f"# step {i % 5}\n", max_tokens=16, stream=True,
                                                    stream_options={"include_usage": True},
                                                    extra_body={"ignore_eos": True})
            return [c for c in stream][-1].usage.completion_tokens

        def run(n):
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                self.assertEqual(list(pool.map(request, range(n))), [16] * n)
            return time.time() - t0

        run(20)  # warm up: allocator arenas, prefix cache
        self.srv.wait_metric("q3moe_requests_running", lambda v: v == 0)
        rss0, pages0 = self.srv.rss_kb(), self.srv.metrics()["q3moe_kv_pages_used"]
        errors0 = sum(v for k, v in self.srv.metrics().items() if k.startswith('q3moe_http_requests_total{code="5'))
        elapsed = run(40)
        self.assertLess(elapsed, 60)
        self.srv.wait_metric("q3moe_requests_running", lambda v: v == 0)
        m = self.srv.metrics()
        self.assertEqual(m["q3moe_requests_waiting"], 0)
        self.assertLessEqual(m["q3moe_kv_pages_used"], pages0 + 2)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith('q3moe_http_requests_total{code="5')), errors0)
        rss1 = self.srv.rss_kb()
        if not sanitized():  # AddressSanitizer keeps freed memory in quarantine: RSS tells nothing
            self.assertLess(rss1, rss0 + max(8192, rss0 // 10), f"RSS grew from {rss0} kB to {rss1} kB")

    def test_disconnect_cancels(self):
        body = json.dumps({"prompt": "import os\n", "max_tokens": 3000, "ignore_eos": True, "stream": True})
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        got = b""
        while b"data: " not in got:
            got += s.recv(4096)
        self.srv.wait_metric("q3moe_requests_running", lambda v: v >= 1)
        s.close()
        self.srv.wait_metric("q3moe_requests_running", lambda v: v == 0, timeout=5)
        # Non-streamed requests are cancelled too.
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        body = json.dumps({"prompt": "import os\n", "max_tokens": 3000, "ignore_eos": True})
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        self.srv.wait_metric("q3moe_requests_running", lambda v: v >= 1)
        s.close()
        self.srv.wait_metric("q3moe_requests_running", lambda v: v == 0, timeout=5)

    # ---- bad input ----

    def assert_error(self, status, r, want_status, param=None, code=None):
        self.assertEqual(status, want_status, r)
        self.assertEqual(set(r["error"]), {"message", "type", "param", "code"})
        self.assertTrue(r["error"]["message"])
        self.assertEqual(r["error"]["type"], "invalid_request_error" if want_status < 500 else "server_error")
        if param is not None:
            self.assertEqual(r["error"]["param"], param)
        if code is not None:
            self.assertEqual(r["error"]["code"], code)

    def test_bad_input(self):
        post = self.srv.post
        chat = "/v1/chat/completions"
        self.assert_error(*post(chat, "{bad json")[::2], 400)
        self.assert_error(*post(chat, "[1, 2]")[::2], 400)
        self.assert_error(*post(chat, {"messages": "hi"})[::2], 400, "messages")
        self.assert_error(*post(chat, {"max_tokens": 5})[::2], 400, "messages")
        self.assert_error(*post(chat, {"messages": [{"role": "wizard", "content": "x"}]})[::2], 400, "messages")
        self.assert_error(*post(chat, chat_body(temperature="hot"))[::2], 400, "temperature")
        self.assert_error(*post(chat, chat_body(max_tokens="ten"))[::2], 400, "max_tokens")
        self.assert_error(*post(chat, chat_body(stream="yes"))[::2], 400, "stream")
        self.assert_error(*post(chat, chat_body(stop=5))[::2], 400, "stop")
        self.assert_error(*post(chat, chat_body(top_logprobs=3))[::2], 400, "top_logprobs")
        self.assert_error(*post(chat, chat_body(seed=1.5))[::2], 400, "seed")
        self.assert_error(*post(chat, chat_body(model="gpt-4"))[::2], 404, "model", "model_not_found")
        self.assert_error(*post(chat, chat_body(max_tokens=0))[::2], 400, "max_tokens")
        self.assert_error(*post(chat, chat_body(max_tokens=-5))[::2], 400, "max_tokens")
        self.assert_error(*post(chat, chat_body(n=17))[::2], 400, "n")  # up to 16 choices
        self.assert_error(*post(chat, chat_body(stream_options={"include_usage": True}))[::2], 400, "stream_options")
        self.assert_error(*post(chat, chat_body(content="word " * 5000))[::2], 400, "messages",
                          "context_length_exceeded")
        self.assert_error(*post("/v1/completions", {"prompt": [1] * 5000})[::2], 400, "prompt",
                          "context_length_exceeded")
        self.assert_error(*post("/v1/completions", {"prompt": "x", "max_tokens": 5000})[::2], 400, "max_tokens",
                          "context_length_exceeded")
        self.assert_error(*post("/v1/completions", {"prompt": [[1], [2]]})[::2], 400, "prompt")
        self.assert_error(*post("/v1/completions", {"prompt": [1, 999999999]})[::2], 400, "prompt")
        self.assert_error(*post(chat, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')[::2], 400)
        self.assert_error(*post(chat, b'{"messages": [{"role": "user", "content": "\\ud800"}]}')[::2], 400)
        status, _, r = self.srv.request("GET", "/v1/nothing")
        self.assert_error(status, json.loads(r), 404)
        status, headers, r = self.srv.request("GET", chat)
        self.assert_error(status, json.loads(r), 405)
        self.assertEqual(headers.get("Allow"), "POST")
        status, _, r = self.srv.request("DELETE", "/health")
        self.assertEqual(status, 405)
        # The openai package sees the same errors as exceptions with the status.
        from openai import BadRequestError, NotFoundError

        with self.assertRaises(NotFoundError):
            self.client.chat.completions.create(model="nope", messages=chat_body()["messages"])
        with self.assertRaises(BadRequestError):
            self.chat(messages=chat_body()["messages"], n=100)
        # ... and everyone else is still served.
        r = self.chat(messages=chat_body()["messages"], max_tokens=3)
        self.assertEqual(r.choices[0].message.role, "assistant")


class ServerOptionsTest(unittest.TestCase):
    """--api-key, --max-body, --max-connections, --max-queue and --timeout, on a second server that
    takes them from a YAML run config (--config)."""

    @classmethod
    def setUpClass(cls):
        cls.model = DEMO_MODEL
        cls.name = os.path.basename(cls.model).removesuffix(".gguf")
        cls.srv = Server(cls.model, key="sekret",
                         config={"max_batch_size": 1, "max_queue": 1, "max_body": 4096, "max_connections": 4,
                                 "timeout": 3})

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_api_key(self):
        status, _, r = self.srv.post("/v1/chat/completions", chat_body(max_tokens=2), headers={"Authorization": ""})
        self.assertEqual((status, r["error"]["code"]), (401, "invalid_api_key"))
        status, _, r = self.srv.post("/v1/chat/completions", chat_body(max_tokens=2),
                                     headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)
        status, _, _ = self.srv.request("GET", "/v1/models", headers={"Authorization": ""})
        self.assertEqual(status, 401)
        self.assertEqual(self.srv.request("GET", "/health", headers={"Authorization": ""})[0], 200)
        self.assertEqual(self.srv.request("GET", "/", headers={"Authorization": ""})[0], 200)
        # Anthropic's clients send x-api-key, and get Anthropic's error shape
        message = {"max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
        status, _, r = self.srv.post("/v1/messages", message, headers={"Authorization": ""})
        self.assertEqual((status, r["type"], r["error"]["type"]), (401, "error", "authentication_error"))
        status, _, r = self.srv.post("/v1/messages", message, headers={"Authorization": "", "x-api-key": "sekret"})
        self.assertEqual((status, r["type"]), (200, "message"))
        with self.srv.client() as client:
            r = client.chat.completions.create(model=self.name, messages=chat_body()["messages"], max_tokens=2)
        self.assertEqual(r.choices[0].message.role, "assistant")

    def test_max_body(self):
        status, _, r = self.srv.post("/v1/chat/completions", chat_body(content="x" * 5000))
        self.assertEqual((status, r["error"]["code"]), (413, "request_too_large"))
        self.assertEqual(self.srv.post("/v1/chat/completions", chat_body(max_tokens=1))[0], 200)

    def test_max_connections(self):
        """Past --max-connections requests are answered 503, but /health stays reachable."""
        def models_until(want):
            deadline = time.time() + 5  # the server notices opened and closed sockets soon, not at once
            while True:
                status, _, r = self.srv.request("GET", "/v1/models")
                if status == want or time.time() > deadline:
                    return status, r
                time.sleep(0.05)

        idle = [socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) for _ in range(4)]
        try:
            status, r = models_until(503)
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(r)["error"]["code"], "too_many_connections")
            self.assertEqual(self.srv.request("GET", "/health")[0], 200)
        finally:
            for s in idle:
                s.close()
        self.assertEqual(models_until(200)[0], 200)

    def test_queue_full_and_timeout(self):
        """One sequence runs, one waits, the third is refused with 503 + Retry-After; --timeout 3
        ends both long ones (4000 tokens take the demo model over 10 s here) with "length"."""
        results = []
        long = {"prompt": "import os\n", "max_tokens": 4000, "ignore_eos": True}

        def run():
            t0 = time.time()
            results.append(self.srv.post("/v1/completions", long) + (time.time() - t0,))

        first = threading.Thread(target=run)
        first.start()
        self.srv.wait_metric("q3moe_requests_running", lambda v: v == 1)
        second = threading.Thread(target=run)
        second.start()
        self.srv.wait_metric("q3moe_requests_waiting", lambda v: v == 1)
        status, headers, r = self.srv.post("/v1/completions", long)
        self.assertEqual((status, r["error"]["code"]), (503, "server_overloaded"))
        self.assertEqual(headers.get("Retry-After"), "1")
        first.join(30)
        second.join(30)
        for status, _, r, seconds in results:
            self.assertEqual(status, 200)
            self.assertEqual(r["choices"][0]["finish_reason"], "length")
            self.assertLess(seconds, 3 + 2)


if __name__ == "__main__":
    start_watchdog()
    unittest.main(verbosity=2)
