"""Known base models (family, size, context, chat template, licence, LoRA targets),
kept as data in `prompts/models.yaml` so the planner can reason about models that are
not downloaded."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml
from ftagent.tools.plan.estimate import Shape, shape_from_config
from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    family: str
    params_b: float
    context: int
    chat_template: str
    licence: str
    licence_kind: str  # permissive | restricted | unknown
    architecture: str
    shape: Shape
    local: str | None = None  # an alias that resolves without the hub
    specialty: str | None = None  # e.g. "code"

    @property
    def params(self) -> int:
        return self.shape.params

    @property
    def label(self) -> str:
        return f"{self.id} ({_size(self.params)}, {self.family}, {self.licence})"


def _size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


@cache
def _data() -> dict:
    from ftagent.prompts import load

    return yaml.safe_load(load("models.yaml"))


def known_models() -> list[ModelCard]:
    cards = []
    for entry in _data()["models"]:
        shape = shape_from_config(entry["shape"])
        cards.append(ModelCard(**{k: v for k, v in entry.items() if k != "shape"}, shape=shape))
    return cards


def lookup(name: str) -> ModelCard | None:
    """A registry card by hub id, alias or bare name, case-insensitive."""
    key = name.strip().lower().rstrip("/")
    for card in known_models():
        names = {card.id.lower(), card.id.split("/")[-1].lower(), (card.local or "").lower()}
        if key in names:
            return card
    return None


def lora_targets(architecture: str, scope: str = "all_linear") -> list[str] | None:
    """LoRA target module names for an architecture; None when it is not known."""
    arch = _data()["architectures"].get(architecture)
    return list(arch[scope]) if arch else None


def card_from_folder(path: str | Path, name: str | None = None) -> ModelCard:
    """A card for any local HF folder, from its config.json and tokenizer files; the
    registry fills licence and family when the folder is a known model."""
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    known = lookup(name) if name else None
    shape = shape_from_config(cfg)
    return ModelCard(
        id=known.id if known else (name or str(path)),
        family=known.family if known else cfg.get("model_type", "unknown"),
        params_b=round(shape.params / 1e9, 3),
        context=cfg.get("max_position_embeddings") or (known.context if known else 2048),
        chat_template=known.chat_template
        if known
        else ("present" if has_chat_template(path) else "missing"),
        licence=known.licence if known else "unknown (check the model card)",
        licence_kind=known.licence_kind if known else "unknown",
        architecture=(cfg.get("architectures") or ["unknown"])[0],
        shape=shape,
        local=known.local if known else None,
        specialty=known.specialty if known else None,
    )


def has_chat_template(path: str | Path) -> bool:
    """A chat template in the tokenizer files (tokenizer_config.json or a .jinja file)."""
    path = Path(path)
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    tok = path / "tokenizer_config.json"
    if tok.is_file():
        return bool(json.loads(tok.read_text()).get("chat_template"))
    return False
