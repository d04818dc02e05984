#!/usr/bin/env python3
"""Concurrent decode through any OpenAI-compatible server (q3moe serve, llama-server -np N).

N streams start together, each a /v1/completions request with its own prompt of token ids
(distinct across streams and rounds, so no server can reuse a cached prefix), max_tokens tokens
with ignore_eos, streamed. A first warm-up round (its figures printed apart) faults in the
weights a server maps lazily.
Prints the aggregate end-to-end rate (every stream's tokens over the wall time from the first
request to the last token, prefill included: the figure issue 11's target names), and the
decode-only rate (each stream's tokens after its first, over the time since its first, summed).

    serve_streams.py --url http://127.0.0.1:8080 [--streams 4] [--prompt-tokens 70] [--tokens 32]
                     [--repeat 2] [--json]

Standard library only, so it runs with any python3.
"""
import argparse
import json
import threading
import time
import urllib.request


def prompt_ids(stream, n, vocab=150000):
    # ids spread over the vocabulary by a fixed rule: the same prompts for every server
    return [(1000 + 7919 * (stream * n + i)) % vocab for i in range(n)]


def run_stream(url, ids, tokens, temperature, seed, out):
    request = {"prompt": ids, "max_tokens": tokens, "ignore_eos": True, "temperature": temperature, "stream": True}
    if temperature > 0:
        request["seed"] = seed  # streams that sample apart route apart (greedy ones may repeat one token)
    body = json.dumps(request).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    start = time.monotonic()
    stamps = []
    with urllib.request.urlopen(req, timeout=3600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                stamps.append(time.monotonic())
    out.update(start=start, stamps=stamps)


def one_round(args, k):
    results = [dict() for _ in range(args.streams)]
    threads = [threading.Thread(target=run_stream, args=(args.url, prompt_ids(k * args.streams + s, args.prompt_tokens),
                                                         args.tokens, args.temperature, k * args.streams + s,
                                                         results[s])) for s in range(args.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t0 = min(r["start"] for r in results)
    t_end = max(r["stamps"][-1] for r in results)
    # ignore_eos: every stream generates exactly `tokens` (a chunk may carry several when a
    # token ends inside a UTF-8 character, so chunks only time the stream)
    chunks = args.streams * args.tokens
    decode = sum((args.tokens - 1) / (r["stamps"][-1] - r["stamps"][0]) for r in results if len(r["stamps"]) > 1)
    ttft = max(r["stamps"][0] - r["start"] for r in results)
    return {"streams": args.streams, "chunks": chunks, "wall_s": t_end - t0, "end_to_end_tok_s": chunks / (t_end - t0),
            "decode_tok_s": decode, "max_ttft_s": ttft}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=70)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature (default 0: greedy); above 0 each stream gets its own seed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    for k in range(args.repeat + 1):
        r = one_round(args, k)
        r["warm_up"] = k == 0
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{'warm-up' if k == 0 else f'round {k}'}: {r['streams']} streams, {r['chunks']} tokens in {r['wall_s']:.2f} s: "
                  f"end to end {r['end_to_end_tok_s']:.2f} tok/s, decode {r['decode_tok_s']:.2f} tok/s, "
                  f"slowest first token {r['max_ttft_s']:.2f} s")


if __name__ == "__main__":
    main()
