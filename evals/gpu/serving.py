"""Batched generation (the evaluator's `generate` against its one-by-one reference) and
`ftagent serve` under 8 concurrent clients (evals/bench/serve_load.py's load, reused),
on the small model. Both record the device the model really ran on: the evaluator's and
the server's loaders choose it themselves, and a GPU that sits idle is a finding."""

from __future__ import annotations

import time
from types import SimpleNamespace

CLIENTS = 8


def generation(ctx) -> dict:
    from ftagent.tools.evaluate.compare import load_plain
    from ftagent.tools.evaluate.generation import generate, generate_one_by_one

    from evals.bench.generation import load_prompts

    model, tok = load_plain(ctx.model(ctx.size.small_model))
    loader_device = str(model.device)
    model = model.to(ctx.device)
    convs = load_prompts(*ctx.size.gen_prompts)
    new = ctx.size.max_new_tokens
    generate(model, tok, convs[:2], max_new_tokens=2)  # warm-up: first-call costs
    runs = {}
    for name, fn, kw in (("one-by-one", generate_one_by_one, {}),
                         ("batched", generate, {"batch_size": 16})):
        stats: dict = {}
        t0 = time.perf_counter()
        out = fn(model, tok, convs, max_new_tokens=new, stats=stats, **kw)
        if ctx.cuda:
            import torch

            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        runs[name] = {"outputs": out, "s": secs, "new_tokens": stats["new_tokens"],
                      "tokens_per_s": stats["new_tokens"] / secs}
    same = sum(a == b for a, b in zip(runs["one-by-one"]["outputs"], runs["batched"]["outputs"],
                                      strict=True))
    ratio = runs["one-by-one"]["s"] / runs["batched"]["s"]
    summary = [f"- {ctx.size.small_model} (fp32, as the evaluator loads it), {len(convs)} "
               f"prompts, max_new_tokens {new}; the evaluator's loader put it on "
               f"{loader_device}, measured on {model.device}",
               *[f"- {k}: {v['s']:.2f} s, {v['tokens_per_s']:.0f} generated tokens/s"
                 for k, v in runs.items()],
               f"- batched is {ratio:.2f}x one-by-one; identical outputs {same}/{len(convs)}"]
    for v in runs.values():
        v.pop("outputs")
    return {"prompts": len(convs), "loader_device": loader_device,
            "measured_on": str(model.device), "runs": runs, "speedup": ratio,
            "identical": same, "checks": {"generated": all(v["new_tokens"] for v in
                                                           runs.values())},
            "summary": summary}


def server_gpu_mb(model) -> float:
    """GPU memory a started server holds (free memory before and while it is up): 0 means
    it serves from the CPU."""
    import torch
    from ftagent.tools.serve.app import start_server_process

    before = torch.cuda.mem_get_info()[0]
    with start_server_process(model):
        during = torch.cuda.mem_get_info()[0]
    return max(0.0, (before - during) / 2**20)


def serve(ctx) -> dict:
    from evals.bench.serve_load import load

    model = ctx.model(ctx.size.small_model)
    args = SimpleNamespace(clients=CLIENTS, requests=ctx.size.serve_requests,
                           max_tokens=ctx.size.max_new_tokens, model=str(model),
                           time_limit=min(120.0, ctx.left_s(30)), threads=0)
    modes = {"batching": load(args, no_batching=False)}
    if ctx.size.serve_no_batching:
        modes["no batching"] = load(args, no_batching=True)
    gpu_mb = server_gpu_mb(model) if ctx.cuda else None
    summary = [f"- {ctx.size.small_model}, {CLIENTS} concurrent clients x {args.requests} "
               f"chat requests, max_tokens {args.max_tokens}"
               + (f"; the server holds {gpu_mb:.0f} MB of GPU memory"
                  + (" (it serves from the CPU)" if gpu_mb < 64 else "")
                  if gpu_mb is not None else "")]
    for name, r in modes.items():
        summary.append(f"- {name}: {r['requests']} requests in {r['wall']:.1f} s, "
                       f"{r['rps']:.2f} requests/s, {r['tps']:.0f} tokens/s, p50 "
                       f"{r['p50']:.2f} s, p95 {r['p95']:.2f} s, largest batch {r['max_batch']}")
    if "no batching" in modes:
        summary.append(f"- batching / no batching tokens/s: "
                       f"{modes['batching']['tps'] / modes['no batching']['tps']:.2f}x")
    return {"modes": modes, "server_gpu_mb": gpu_mb,
            "checks": {"all_requests_answered": all(
                r["requests"] == CLIENTS * args.requests for r in modes.values())},
            "summary": summary}
