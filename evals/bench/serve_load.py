"""Load on `ftagent serve`: continuous batching against `--no-batching`, same run, same prompts.

.venv/bin/python evals/bench/serve_load.py [--clients 8] [--requests 4] [--max-tokens 32]
    [--model smollm2-135m-instruct] [--time-limit 240] [--threads N]

For each mode, starts the server as a subprocess on a free loopback port, warms it up with
one request, then `--clients` threads (this process) each send `--requests` greedy chat
requests one after another with the openai client (distinct customer messages from
tools/bundled/demo/support_intents.jsonl, fixed max_tokens). Prints requests/s, generated tokens/s
(the servers' own `usage.completion_tokens`), p50/p95 latency and the ratio, and the
server's largest batch. Bounded: `--clients` x `--requests` requests per mode, and clients
start no request after `--time-limit` seconds (each may then run `--time-limit` more).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ftagent.tools.serve.app import start_server_process  # noqa: E402

INTENTS = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in INTENTS.read_text(encoding="utf-8").splitlines()]
    users = [r["messages"][-2]["content"] for r in rows]
    return [users[i % len(users)] for i in range(n)]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def load(args, no_batching: bool) -> dict:
    import httpx
    import openai

    extra = ["--threads", str(args.threads)] if args.threads else []
    handle = start_server_process(args.model, no_batching=no_batching, extra_args=extra)
    try:
        client = openai.OpenAI(base_url=handle.base_url, api_key="unused", max_retries=0,
                               timeout=args.time_limit)
        texts = prompts(args.clients * args.requests)

        def ask(text: str):
            t0 = time.perf_counter()
            r = client.chat.completions.create(
                model=handle.model_id, messages=[{"role": "user", "content": text}],
                max_tokens=args.max_tokens, temperature=0)
            return time.perf_counter() - t0, r.usage.completion_tokens

        ask(texts[0])  # warm-up: first-call costs on both sides
        load_before = os.getloadavg()[0]
        latencies, tokens, lock = [], 0, threading.Lock()
        start = time.perf_counter()
        deadline = start + args.time_limit

        def client_loop(c: int):
            nonlocal tokens
            for j in range(args.requests):
                if time.perf_counter() > deadline:
                    return
                secs, n = ask(texts[c * args.requests + j])
                with lock:
                    latencies.append(secs)
                    tokens += n

        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        stats = httpx.get(handle.base_url.removesuffix("/v1") + "/stats").json()
    finally:
        handle.stop()
    return {"requests": len(latencies), "tokens": tokens, "wall": wall,
            "rps": len(latencies) / wall, "tps": tokens / wall,
            "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
            "max_batch": stats["max_batch_seen"],
            # the machine's 1-min load average: other work on the CPUs skews a mode's numbers
            "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4, help="sequential requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--time-limit", type=float, default=240.0, help="seconds per mode")
    ap.add_argument("--threads", type=int, default=0, help="server torch threads (0: default)")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    runs = {"batching": load(args, no_batching=False),
            "no batching": load(args, no_batching=True)}
    on, off = runs["batching"], runs["no batching"]
    table = Table(title=f"ftagent serve, {args.model}, {args.clients} concurrent clients x "
                  f"{args.requests} chat requests, max_tokens={args.max_tokens}, greedy")
    for col in ("mode", "requests", "seconds", "requests/s", "tokens", "tokens/s",
                "p50 s", "p95 s", "max batch", "load avg"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, r in runs.items():
        table.add_row(name, str(r["requests"]), f"{r['wall']:.1f}", f"{r['rps']:.2f}",
                      str(r["tokens"]), f"{r['tps']:.1f}", f"{r['p50']:.2f}", f"{r['p95']:.2f}",
                      str(r["max_batch"]), r["load"])
    table.add_row("ratio", "", "", f"{on['rps'] / off['rps']:.2f}x", "",
                  f"{on['tps'] / off['tps']:.2f}x", f"{on['p50'] / off['p50']:.2f}x",
                  f"{on['p95'] / off['p95']:.2f}x", "", "")
    Console(width=130).print(table)
    print(f"tokens/s ratio (batching / no batching): {on['tps'] / off['tps']:.2f}x "
          f"on {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
