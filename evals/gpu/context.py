"""What every section reads: where to write, the device, the run's sizes, and the
random-weight models (built on first use, once)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from evals.gpu import models


@dataclass(frozen=True)
class Size:
    """How big each section runs. FULL fits the issue's 8 minutes on one H100 (sections
    are ordered so the budget trims the least important last ones); TINY is the CPU dry
    run of the test suite: the same code paths, seconds each."""

    train_model: str  # the four training methods, and their memory estimate
    throughput_models: tuple[str, ...]
    small_model: str  # OOM back-off, generation, serving
    steps: int  # optimizer steps per training method
    batch: int
    dpo_batch: int
    max_length: int
    throughput_steps: int
    ceiling_s: float  # seconds per dtype of the matmul ceiling
    oom_batch: int  # the oversized micro-batch
    gen_prompts: tuple[int, int]  # (intent prompts, free-text prompts)
    max_new_tokens: int
    serve_requests: int  # per client; 8 clients
    serve_no_batching: bool  # also the one-at-a-time baseline (a second server start)


FULL = Size(train_model="llama-1b", throughput_models=("smollm2-135m", "llama-1b"),
            small_model="smollm2-135m", steps=8, batch=8, dpo_batch=4, max_length=1024,
            throughput_steps=30, ceiling_s=2.0, oom_batch=64, gen_prompts=(32, 16),
            max_new_tokens=32, serve_requests=4, serve_no_batching=True)
TINY = Size(train_model=models.TINY, throughput_models=(models.TINY,),
            small_model=models.TINY, steps=4, batch=4, dpo_batch=2, max_length=256,
            throughput_steps=3, ceiling_s=0.2, oom_batch=8, gen_prompts=(4, 2),
            max_new_tokens=4, serve_requests=1, serve_no_batching=False)


@dataclass
class Context:
    out: Path
    work: Path
    device: str
    size: Size
    tokenizer_dir: Path
    budget_s: float
    started: float = field(default_factory=time.monotonic)
    built: dict[str, dict] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def deadline(self) -> float:
        return self.started + self.budget_s

    def left_s(self, floor: float = 60.0) -> float:
        """Seconds left in the budget, at least `floor`: a child's timeout, so a hung
        child cannot hold the machine past the call's limit."""
        return max(floor, self.deadline - time.monotonic())

    def model(self, name: str) -> Path:
        if name not in self.built:
            out = self.work / "models" / name
            self.built[name] = models.build(name, self.tokenizer_dir, out, self.device)
        return Path(self.built[name]["path"])
