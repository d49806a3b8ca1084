"""A transformers chat model in-process as a langchain-core chat model, so the assistant can
phrase answers offline (default: the bundled SmolLM2-135M-Instruct).

A model this small cannot call tools reliably: with it, actions come from the intent parser
and the model only phrases answers from retrieved knowledge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "user"}


def to_chat(messages: list[BaseMessage]) -> list[dict]:
    return [{"role": ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]


class LocalChatModel(BaseChatModel):
    model_name: str = "smollm2-135m-instruct"
    temperature: float = 0.0
    max_new_tokens: int = 256
    model_config = ConfigDict(arbitrary_types_allowed=True)
    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)

    @classmethod
    def load(cls, name: str = "smollm2-135m-instruct", **kw) -> LocalChatModel:
        import torch
        from ftagent.tools.evaluate.compare import require_safetensors
        from ftagent.tools.models import resolve_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(name).path
        require_safetensors(path)  # pickled weights are refused, with a clear message
        self = cls(model_name=name, **kw)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, use_safetensors=True).eval()
        return self

    @property
    def _llm_type(self) -> str:
        return "ftagent-local-transformers"

    def _inputs(self, messages: list[BaseMessage]):
        enc = self._tokenizer.apply_chat_template(
            to_chat(messages), add_generation_prompt=True, return_tensors="pt",
            return_dict=True)
        return enc

    def _gen_kwargs(self, enc, stop_ids, **kw) -> dict:
        from ftagent.tools.evaluate.generation import eos_ids, pad_id

        sample = self.temperature > 0
        return dict(
            **enc,
            max_new_tokens=kw.get("max_tokens") or self.max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=None, top_k=None,
            eos_token_id=eos_ids(self._model, self._tokenizer) + stop_ids,
            pad_token_id=pad_id(self._model, self._tokenizer),
        )

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kw) -> ChatResult:
        import torch

        enc = self._inputs(messages)
        with torch.inference_mode():
            out = self._model.generate(**self._gen_kwargs(enc, [], **kw))
        new = out[0, enc["input_ids"].shape[1]:]
        text = _cut(self._tokenizer.decode(new, skip_special_tokens=True).strip(), stop)
        usage = {"input_tokens": int(enc["input_ids"].shape[1]),
                 "output_tokens": int(new.numel()),
                 "total_tokens": int(enc["input_ids"].shape[1] + new.numel())}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=text, usage_metadata=usage))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kw) -> Iterator[ChatGenerationChunk]:
        import threading

        import torch
        from transformers import TextIteratorStreamer

        enc = self._inputs(messages)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True,
                                        skip_special_tokens=True)

        def work():
            with torch.inference_mode():
                self._model.generate(**self._gen_kwargs(enc, [], **kw), streamer=streamer)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        said = ""
        for piece in streamer:
            if not piece:
                continue
            said += piece
            if stop and any(s in said for s in stop):
                break
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        thread.join()


def _cut(text: str, stop: list[str] | None) -> str:
    for s in stop or []:
        if s in text:
            text = text[: text.index(s)]
    return text
