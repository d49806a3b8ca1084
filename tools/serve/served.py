"""The model ids one server answers to: the model it started with, and LoRA adapters added
while it runs (a fine-tuning job's `ft:...` model, hot-loaded, no restart).

Each id maps to the engine's adapter name (None: the base model) and the tokenizer that
renders its prompts: an adapter folder that carries its own tokenizer (training may set a
chat template) encodes with that one, so a served adapter answers as it does when loaded
alone. Ids are the client's strings; the engine's adapter names are generated here, since
PEFT keys modules by them and an id such as `ft:base:x:ftjob-1` is no module name.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServedModel:
    id: str
    adapter: str | None  # the engine's adapter name; None: the model it was built with
    tokenizer: object
    created: int = field(default_factory=lambda: int(time.time()))


class ServedModels:
    """Thread-safe: routes read it from the event loop and pool threads, a fine-tuning job
    adds to it from its own thread."""

    def __init__(self, engine, base_id: str):
        self.engine = engine
        self._lock = threading.Lock()
        # adapter None: the model as the engine was built (a base, or base + its adapter)
        self._models = {base_id: ServedModel(base_id, None, engine.tokenizer)}
        self._added = 0
        self.base_id = base_id

    def get(self, model_id: str) -> ServedModel | None:
        with self._lock:
            return self._models.get(model_id)

    def all(self) -> list[ServedModel]:
        with self._lock:
            return list(self._models.values())

    def ids(self) -> list[str]:
        return [m.id for m in self.all()]

    def add_adapter(self, model_id: str, folder: str | Path, created: int | None = None) -> None:
        """Serve the LoRA adapter in `folder` as `model_id` from now on (weights load on
        first use). Adding an id already served does nothing."""
        folder = Path(folder)
        with self._lock:
            if model_id in self._models:
                return
            self._added += 1
            name = f"served_adapter_{self._added}"
        tokenizer = self.engine.tokenizer
        if (folder / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        self.engine.add_adapter(name, folder)
        with self._lock:
            self._models.setdefault(model_id, ServedModel(
                model_id, name, tokenizer, created or int(time.time())))
