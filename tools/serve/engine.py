"""Continuous batching for text generation: one background thread owns the model.

Requests wait in a queue. The engine thread takes whatever is waiting (up to
`max_batch_size`; when idle it first waits `batch_wait_s` for company), prefills the
newcomers together (left-padded with `tools.evaluate.generation.left_pad`), merges their KV cache
into the running batch and then decodes every running request one token per step. A
request that finishes leaves at once and a newcomer joins between two steps, so a short
answer never waits for a long one. Padding is masked and position ids count only real
tokens, so every row computes what it would compute alone: greedy outputs equal
`tools.evaluate.generation.generate_one_by_one` up to floating point (in fp32, equal in practice).

Several LoRA adapters can be served on one base model (`add_adapter`, any time, no
restart): each request names its adapter (None: the base model), and a batch only ever
holds requests of one adapter, because the running KV cache was computed with one set of
weights. Waiting requests are admitted in arrival order: when the oldest waiting request
wants another adapter, the running batch takes no newcomers, drains, and the engine
switches (PEFT's named adapters; loaded on the engine thread the first time they are
used, between two steps, so no forward pass ever sees weights change under it).

Pure torch + transformers (+ PEFT for adapters). The HTTP layer (`tools/serve/routes.py`)
calls `submit` with a callback that receives `Event`s on the engine thread.
"""

from __future__ import annotations

import inspect
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from ftagent.tools.evaluate.generation import eos_ids, left_pad, pad_id
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)


class EngineBusy(RuntimeError):
    """The queue is full: the caller should answer 429 and let the client retry."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0  # 0: greedy (argmax), like the evaluator
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Event:
    """What the engine reports: new text, and on the last event why it ended."""

    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" on the last event
    completion_tokens: int = 0
    error: str | None = None  # set on the last event when generation failed


@dataclass
class GenerationRequest:
    prompt: list[int]
    params: SamplingParams
    on_event: Callable[[Event], None]
    adapter: str | None = None  # the named adapter to generate with; None: the bare base
    cancelled: bool = False
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        """Leave the batch at the next step (a client that hung up)."""
        self.cancelled = True


class TextStream:
    """Token ids in, text deltas out, as they are decoded.

    Decodes a short window of ids with the previous ids as context (the TGI/vLLM
    scheme): byte-level BPE splits one character over several tokens and a lone piece
    decodes to U+FFFD, and SentencePiece drops a leading space when a token is decoded
    alone. Text that might be the start of a stop sequence is held back until it is
    known not to be one, so a stop string never reaches the client.
    """

    def __init__(self, tokenizer, stop: tuple[str, ...] = ()):
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.prefix_offset = self.read_offset = 0
        self.text = ""  # everything decoded so far
        self.sent = 0  # chars of `text` already handed out

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> tuple[str, bool]:
        """The text that is safe to send now, and whether a stop sequence was hit."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix_offset : self.read_offset])
        now = self._decode(self.ids[self.prefix_offset :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.text += now[len(before) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        # A stop cannot start in text already sent: a possible start is always held back.
        hits = [i for i in (self.text.find(s, self.sent) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return self._take(len(self.text)), True
        hold = max(
            (k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])),
            default=0,
        )
        return self._take(len(self.text) - max(hold, 0)), False

    def flush(self) -> str:
        """At the end: held-back text and any undecodable tail bytes."""
        tail = self._decode(self.ids[self.prefix_offset :])
        head = self._decode(self.ids[self.prefix_offset : self.read_offset])
        self.text += tail[len(head) :]
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        end = max(end, self.sent)
        out, self.sent = self.text[self.sent : end], end
        return out


class _Row:
    """One running request: its generated ids, text stream and sampler."""

    def __init__(self, req: GenerationRequest, tokenizer):
        self.req, self.tokens = req, []
        self.stream = TextStream(tokenizer, req.params.stop)
        seed = req.params.seed if req.params.seed is not None else random.getrandbits(63)
        self.generator = torch.Generator().manual_seed(seed)


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """One token from a row of logits: temperature, then nucleus (top-p) filtering."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    order = None
    if params.top_p < 1.0:
        probs, order = probs.sort(descending=True)
        # keep the smallest head whose mass reaches top_p (always the most likely token)
        probs = probs[: int(((probs.cumsum(-1) - probs) < params.top_p).sum())]
    # argmax(p / Exp(1) noise) draws from p: one pass, no cumulative table over the vocab
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    pick = int((probs / noise).argmax())
    return pick if order is None else int(order[pick])


class BatchingEngine:
    """Owns the model on one thread; `max_batch_size=1` is the no-batching baseline."""

    def __init__(self, model, tokenizer, max_batch_size: int = 8, batch_wait_s: float = 0.01,
                 max_queue: int = 256):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch_size, self.batch_wait_s = max(1, max_batch_size), batch_wait_s
        self.max_queue = max_queue
        self.stops = set(eos_ids(model, tokenizer))
        self.pad = pad_id(model, tokenizer)
        self.context_length = context_length(model, tokenizer)
        self.device = next(model.parameters()).device
        # Merging and trimming caches assumes every layer keeps all positions.
        if any(type(x) is not DynamicLayer for x in DynamicCache(config=model.config).layers):
            raise ValueError("batched serving supports full-attention models only "
                             "(this one has sliding-window or recurrent layers)")
        forward = getattr(model, "get_base_model", lambda: model)().forward
        # Only the last position's logits are needed: skip the vocab projection elsewhere.
        self._keep_kw = (
            {"logits_to_keep": 1}
            if "logits_to_keep" in inspect.signature(forward).parameters else {}
        )
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._waiting: deque[GenerationRequest] = deque()  # taken off the queue, not admitted
        # Adapters: name -> folder, registered from any thread, loaded on the engine thread.
        self._adapter_dirs: dict[str, Path] = {}
        self._loaded: set[str] = set(getattr(model, "peft_config", None) or ())
        self._current: str | None = getattr(model, "active_adapter", None) \
            if self._loaded else None  # the adapter the model computes with now
        self.start_adapter = self._current  # the adapter it was built with, if any
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (rows, cached positions); 0 = padding
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats = {"max_batch_seen": 0, "steps": 0, "prefills": 0, "requests_done": 0,
                       "tokens_generated": 0, "errors": 0, "adapter_switches": 0}

    # ---- public API (any thread) -------------------------------------------------------

    def start(self) -> BatchingEngine:
        self._thread = threading.Thread(target=self._loop, name="ftagent-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def add_adapter(self, name: str, folder: str | Path) -> None:
        """Serve a LoRA adapter (safetensors only) under `name` from now on; its weights are
        loaded on the engine thread when a request first asks for it. `name` must be a
        plain identifier (PEFT keys modules by it)."""
        from ftagent.tools.evaluate.compare import require_safetensors_adapter

        if not name.isidentifier():
            raise ValueError(f"adapter name {name!r} must be a plain identifier")
        require_safetensors_adapter(folder)
        self._adapter_dirs.setdefault(name, Path(folder))

    def submit(self, prompt: list[int], params: SamplingParams,
               on_event: Callable[[Event], None],
               adapter: str | None = None) -> GenerationRequest:
        """Queue a request; events arrive on the engine thread through `on_event`. Without
        `adapter` it runs on the model as the engine was built (a base, or a base + the
        adapter it was loaded with)."""
        if not prompt:
            raise ValueError("empty prompt")
        adapter = self.start_adapter if adapter is None else adapter
        if adapter is not None and adapter not in self._loaded | set(self._adapter_dirs):
            raise ValueError(f"no adapter named {adapter!r}")
        if len(prompt) + params.max_tokens > self.context_length:
            raise ValueError("prompt + max_tokens exceed the model context")
        if self._stopping.is_set():
            raise EngineBusy("shutting down")
        if self._queue.qsize() >= self.max_queue:
            raise EngineBusy(f"{self.max_queue} requests already waiting")
        req = GenerationRequest(list(prompt), params, on_event, adapter)
        self._queue.put(req)
        return req

    def stats(self) -> dict:
        return {**self._stats, "running": len(self._rows),
                "waiting": self._queue.qsize() + len(self._waiting),
                "max_batch_size": self.max_batch_size, "adapters_loaded": len(self._loaded)}

    # ---- engine thread ---------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                new = self._take_new(wait=not self._rows)
                try:
                    if new:
                        if not self._rows:  # a new batch: compute with its adapter
                            self._use(new[0].req.adapter)
                        self._prefill(new)
                    elif self._rows:
                        self._decode_step()
                except Exception as exc:  # a failed step fails its requests, not the server
                    log.exception("generation step failed")
                    self._stats["errors"] += 1
                    for row in self._rows + [r for r in new if r not in self._rows]:
                        _send(row.req, Event(error=f"{type(exc).__name__}: {exc}"))
                    self._rows, self._cache, self._mask = [], None, None
        for row in self._rows:
            _send(row.req, Event(error="server shutting down"))
        self._drain()
        for req in self._waiting:
            _send(req, Event(error="server shutting down"))

    def _drain(self) -> None:
        """Move everything queued so far to `_waiting`, in arrival order."""
        while True:
            try:
                self._waiting.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _take_new(self, wait: bool) -> list[_Row]:
        """Newcomers that fit in the batch, all of the batch's adapter; when idle with
        nothing waiting, block for one, then wait briefly for more so that requests sent
        together start together."""
        room = self.max_batch_size - len(self._rows)
        if wait and not self._waiting:
            while not self._stopping.is_set():
                try:
                    self._waiting.append(self._queue.get(timeout=0.1))
                    break
                except queue.Empty:
                    continue
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._waiting) < room and (left := deadline - time.monotonic()) > 0:
                try:
                    self._waiting.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        self._drain()
        self._waiting = deque(r for r in self._waiting if not r.cancelled)
        if room <= 0 or not self._waiting:
            return []
        adapter = self._waiting[0].adapter
        if self._rows and adapter != self._current:
            return []  # the oldest waiting request wants other weights: let the batch drain
        taken = [r for r in self._waiting if r.adapter == adapter][:room]
        chosen = {id(r) for r in taken}
        self._waiting = deque(r for r in self._waiting if id(r) not in chosen)
        return [_Row(req, self.tokenizer) for req in taken]

    def _use(self, adapter: str | None) -> None:
        """Compute with `adapter` (None: the base model), loading it on first use. Called
        only between batches, so no running KV cache mixes two sets of weights."""
        if adapter == self._current:
            return
        if adapter is not None and adapter not in self._loaded:
            self._load(adapter)
        if adapter is None:
            self.model.base_model.disable_adapter_layers()
        else:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(adapter)
        self._current = adapter
        self._stats["adapter_switches"] += 1

    def _load(self, name: str) -> None:
        from peft import PeftModel

        folder = self._adapter_dirs[name]
        with torch.inference_mode(False), torch.no_grad():  # real parameters, not inference ones
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(folder, adapter_name=name, use_safetensors=True)
            else:  # the first adapter wraps the base model (LoRA layers injected in place)
                self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name,
                                                       use_safetensors=True)
                self._current = name
            self.model.eval()
        self._loaded.add(name)

    def _prefill(self, new: list[_Row]) -> None:
        ids, mask = left_pad([r.req.prompt for r in new], self.pad)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), past_key_values=cache,
                         use_cache=True, **self._keep_kw)
        self._stats["prefills"] += 1
        self._merge(new, cache, mask.to(self.device))
        self._advance(new, out.logits[:, -1, :], offset=len(self._rows) - len(new))

    def _merge(self, new: list[_Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append the newcomers' rows to the running batch, left-padding the shorter side
        of the KV cache and mask (padded slots are masked, so their zeros are never read)."""
        if self._cache is None:
            self._rows, self._cache, self._mask = list(new), cache, mask
        else:
            old_t, new_t = self._mask.shape[1], mask.shape[1]
            width = max(old_t, new_t)
            for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([_pad_left(mine.keys, width - old_t, -2),
                                       _pad_left(theirs.keys, width - new_t, -2)])
                mine.values = torch.cat([_pad_left(mine.values, width - old_t, -2),
                                         _pad_left(theirs.values, width - new_t, -2)])
            self._mask = torch.cat([_pad_left(self._mask, width - old_t, -1),
                                    _pad_left(mask, width - new_t, -1)])
            self._rows += new
        self._stats["max_batch_seen"] = max(self._stats["max_batch_seen"], len(self._rows))

    def _decode_step(self) -> None:
        rows = self._rows
        last = torch.tensor([[r.tokens[-1]] for r in rows], device=self.device)
        # the input token's position = real tokens before it (padding does not count)
        positions = torch.tensor([[len(r.req.prompt) + len(r.tokens) - 1] for r in rows],
                                 device=self.device)
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        out = self.model(input_ids=last, attention_mask=self._mask, position_ids=positions,
                         past_key_values=self._cache, use_cache=True)
        self._stats["steps"] += 1
        self._advance(rows, out.logits[:, -1, :], offset=0)

    def _advance(self, rows: list[_Row], logits: torch.Tensor, offset: int) -> None:
        """Pick each row's next token, report it, and drop the rows that are done.
        `rows` are `self._rows[offset:]` (prefill: the newcomers; decode: everyone)."""
        tokens = logits.argmax(-1).tolist()
        done: set[int] = set()
        for i, row in enumerate(rows):
            params = row.req.params
            if row.req.cancelled:
                done.add(offset + i)
                continue
            token = tokens[i] if params.temperature <= 0 else sample(
                logits[i], params, row.generator)
            row.tokens.append(token)
            self._stats["tokens_generated"] += 1
            finish = None
            if token in self.stops:
                text, finish = row.stream.flush(), "stop"
            else:
                text, hit = row.stream.push(token)
                if hit:
                    finish = "stop"
                elif (len(row.tokens) >= params.max_tokens
                      or len(row.req.prompt) + len(row.tokens) >= self.context_length):
                    text, finish = text + row.stream.flush(), "length"
            if finish:
                done.add(offset + i)
                self._stats["requests_done"] += 1
                _send(row.req, Event(text, finish, completion_tokens=len(row.tokens)))
            elif text:
                _send(row.req, Event(text, completion_tokens=len(row.tokens)))
        if done:
            self._drop(done)

    def _drop(self, done: set[int]) -> None:
        keep = [i for i in range(len(self._rows)) if i not in done]
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        self._mask = self._mask[index]
        # columns that are padding in every remaining row are dead weight: cut them
        first = int((self._mask.sum(0) > 0).nonzero()[0])
        self._mask = self._mask[:, first:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]


def _pad_left(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _send(req: GenerationRequest, event: Event) -> None:
    try:
        req.on_event(event)
    except Exception:  # a listener that is gone (closed event loop) must not stop the engine
        log.debug("event listener failed", exc_info=True)


def context_length(model, tokenizer) -> int:
    """The model's context window: the config's positions, else the tokenizer's limit."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    n = getattr(config, "max_position_embeddings", None)
    if not n:
        n = getattr(tokenizer, "model_max_length", None)
        n = n if n and n < 10**8 else 2048  # tokenizers without a limit report 1e30
    return int(n)
