"""The local backend: the bundled SmolLM2 as a langchain-core chat model, so chat works
offline; the assistant phrases knowledge-base answers with it and cites the sources."""

import pytest


@pytest.fixture(scope="module")
def local(bundled_model):
    from ftagent.agent.chat.local_llm import LocalChatModel

    return LocalChatModel.load("smollm2-135m-instruct", max_new_tokens=40)


def test_invoke_and_stream_give_the_same_greedy_answer(local):
    from langchain_core.messages import HumanMessage

    msgs = [HumanMessage("Name one colour of the rainbow.")]
    whole = local.invoke(msgs)
    pieces = [str(c.content) for c in local.stream(msgs)]
    assert whole.content.strip()
    assert len(pieces) > 1  # it really streams
    assert "".join(pieces).strip() == whole.content.strip()
    assert whole.usage_metadata["output_tokens"] > 0


def test_the_assistant_phrases_answers_with_the_local_model_and_cites(tmp_path, local):
    from ftagent.agent.chat.assistant import Assistant
    from ftagent.agent.chat.llm import LLMSettings
    from ftagent.agent.chat.tools import ChatContext

    bot = Assistant(ChatContext(runs_root=tmp_path), LLMSettings(backend="local"),
                    chat_model=local)
    out = "".join(bot.reply("What learning rate should I use for LoRA?"))
    assert "Sources:" in out and "hyperparameters.md §" in out
    assert bot.actions == ["search_knowledge"]
    assert ctx_free(bot)


def ctx_free(bot) -> bool:
    return bot.ctx.run_dir is None  # a question starts nothing
