"""ftagent's own clients against ftagent's own OpenAI-compatible server (SmolLM2 on
loopback, with an API key): the chat agent's HTTP path (streaming, a wrong key), the LLM
settings check, and the pairwise LLM judge."""

import pytest

KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(bundled_model):
    from ftagent.tools.serve.app import start_server_process

    with start_server_process(bundled_model.path, api_key=KEY, model_name="smol") as handle:
        yield handle


def settings(server, key_env="FTAGENT_TEST_KEY"):
    from ftagent.agent.chat.llm import LLMSettings

    return LLMSettings(backend="openai", base_url=server.base_url, model="smol",
                       api_key_env=key_env, timeout_s=120, max_retries=0, max_tokens=32)


def test_chat_streams_a_cited_answer_over_http(server, tmp_path, monkeypatch):
    from ftagent.agent.chat.assistant import Assistant
    from ftagent.agent.chat.tools import ChatContext

    monkeypatch.setenv("FTAGENT_TEST_KEY", KEY)
    # ftagent serve refuses `tools` (400): the assistant then uses the endpoint to phrase
    # answers from the knowledge base, and actions come from the intent parser.
    bot = Assistant(ChatContext(runs_root=tmp_path), settings(server))
    pieces = list(bot.reply("What learning rate should I use for LoRA?"))
    out = "".join(pieces)
    assert "does not take tools" in out and not bot.tool_calling
    assert len(pieces) > 3  # streamed in pieces over SSE
    assert "LLM unavailable" not in out and "Sources:" in out


def test_a_wrong_key_says_so_and_the_chat_still_answers(server, tmp_path, monkeypatch):
    from ftagent.agent.chat.assistant import Assistant
    from ftagent.agent.chat.llm import LLMUnavailable, check
    from ftagent.agent.chat.tools import ChatContext

    monkeypatch.setenv("FTAGENT_TEST_KEY", "wrong")
    s = settings(server)
    with pytest.raises(LLMUnavailable, match="refused the API key"):
        check(s)
    bot = Assistant(ChatContext(runs_root=tmp_path), s, tool_calling=False)
    out = "".join(bot.reply("What learning rate should I use for LoRA?"))
    assert "refused the API key (401): set FTAGENT_TEST_KEY" in out
    assert "§" in out  # the knowledge base answered instead


def test_settings_check_gets_an_answer(server, monkeypatch):
    from ftagent.agent.chat.llm import check

    monkeypatch.setenv("FTAGENT_TEST_KEY", KEY)
    assert check(settings(server)).strip()


def test_pairwise_judge_over_http_asks_both_orders(server):
    from ftagent.tools.evaluate.judge import JudgeEndpoint, judge_pairs

    e = JudgeEndpoint(base_url=server.base_url, model="smol", api_key=KEY, max_items=2,
                      max_tokens=16)
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}],
               [{"role": "user", "content": "Name a primary colour."}]]
    r = judge_pairs(e, prompts, ["5", "green"], ["4", "red"], ["4", "red"])
    assert r.error == "" and r.n == 2
    assert r.tuned_wins + r.base_wins + r.ties == 2
    # A 135M judge rarely follows the verdict format; whatever it said was parsed or
    # counted as unparsed, never guessed.
    for p in r.pairs:
        assert p.base_first in ("A", "B", "tie", None) and p.tuned_first in ("A", "B", "tie",
                                                                               None)
