"""The deterministic intent parser on a table of phrasings people type (no LLM needed)."""

import pytest
from ftagent.agent.chat.intents import CHANGING, parse

TABLE = [
    # start a workflow
    ("fine-tune a model for legal contracts using ./contracts.jsonl", "start_workflow",
     {"goal": "legal contracts", "data_path": "./contracts.jsonl"}),
    ("Fine-tune a model to route banking questions with tools/bundled/demo/support_intents.jsonl",
     "start_workflow", {"goal": "route banking questions",
                        "data_path": "tools/bundled/demo/support_intents.jsonl"}),
    ("train a classifier for support tickets on tickets.csv", "start_workflow",
     {"data_path": "tickets.csv"}),
    ("I want to build an assistant that answers in our company tone", "start_workflow",
     {"goal": "answers in our company tone"}),
    ("finetune smollm for customer support", "start_workflow", {"goal": "customer support"}),
    ("fine-tune Qwen/Qwen2.5-0.5B-Instruct for support replies using faq.jsonl",
     "start_workflow", {"model": "Qwen/Qwen2.5-0.5B-Instruct", "goal": "support replies",
                        "data_path": "faq.jsonl"}),
    ("make a model that extracts invoice fields from faq.parquet", "start_workflow",
     {"data_path": "faq.parquet"}),
    ("teach the model to summarise meeting notes", "start_workflow", {}),
    ("I want a model", "start_workflow", {}),
    ("create a LoRA adapter for SQL generation using sql.jsonl", "start_workflow",
     {"data_path": "sql.jsonl"}),
    # data and model
    ("use ./more_data.jsonl", "set_data", {"data_path": "./more_data.jsonl"}),
    ("the data is in /tmp/faq.jsonl", "set_data", {"data_path": "/tmp/faq.jsonl"}),
    ("train on tickets_v2.csv instead", "set_data", {"data_path": "tickets_v2.csv"}),
    ("use Qwen/Qwen2.5-1.5B-Instruct", "set_model", {"model": "Qwen/Qwen2.5-1.5B-Instruct"}),
    ("switch to smollm2-135m-instruct", "set_model", {"model": "smollm2-135m-instruct"}),
    ("try meta-llama/Llama-3.2-1B-Instruct as the base", "set_model",
     {"model": "meta-llama/Llama-3.2-1B-Instruct"}),
    # config
    ("use rank 32", "set_config", {"changes": {"lora.r": 32}}),
    ("set the learning rate to 1e-4", "set_config", {"changes": {"learning_rate": 1e-4}}),
    ("lr 5e-5 please", "set_config", {"changes": {"learning_rate": 5e-5}}),
    ("train for 5 epochs", "set_config", {"changes": {"num_epochs": 5}}),
    ("batch size 4 and rank 16", "set_config", {"changes": {"batch_size": 4, "lora.r": 16}}),
    ("lora.alpha = 64", "set_config", {"changes": {"lora.alpha": 64}}),
    ("set max_length to 1024", "set_config", {"changes": {"max_length": 1024}}),
    ("use qlora", "set_config", {"changes": {"method": "qlora"}}),
    ("switch to full fine-tuning", "set_config", {"changes": {"method": "full"}}),
    ("dropout 0.1", "set_config", {"changes": {"lora.dropout": 0.1}}),
    # gates
    ("looks good, go ahead", "approve", {}),
    ("yes", "approve", {}),
    ("LGTM", "approve", {}),
    ("approve the strategy", "approve", {"gate": "strategy"}),
    ("ship it!", "approve", {}),
    ("ok, continue", "approve", {}),
    ("no, the accuracy is too low", "reject", {"reason": "the accuracy is too low"}),
    ("reject: too slow, pick something smaller", "reject",
     {"reason": "too slow, pick something smaller"}),
    ("not good - use a permissive licence", "reject", {"reason": "use a permissive licence"}),
    ("reject the evaluation, loss is still high", "reject", {"gate": "evaluation"}),
    # control
    ("stop", "stop", {}),
    ("cancel the run", "stop", {}),
    ("abort training!", "stop", {}),
    ("status", "status", {}),
    ("how is training going?", "status", {}),
    ("what's happening", "status", {}),
    ("show my runs", "list_runs", {}),
    ("list runs", "list_runs", {}),
    ("resume 20261202-153000-support", "resume", {"run_id": "20261202-153000-support"}),
    ("open run-abc123", "resume", {"run_id": "run-abc123"}),
    # explain and diagnose
    ("explain the plan", "explain", {"topic": "plan"}),
    ("what is macro-F1?", "explain", {"topic": "macro-f1"}),
    ("what does perplexity mean", "explain", {"topic": "perplexity"}),
    ("why is validation loss going up?", "diagnose", {}),
    ("why did the accuracy get worse", "diagnose", {}),
    ("what went wrong?", "diagnose", {}),
    ("help", "help", {}),
]

# Questions and chatter: nothing changes (answered from the knowledge base or by an LLM).
NOT_ACTIONS = [
    "how much data do I need to fine-tune?",
    "should I use RAG or fine-tuning for our product docs?",
    "when is QLoRA better than LoRA",
    "can I fine-tune on a laptop",
    "do I need a bigger model?",
    "thanks",
    "hello there",
]


@pytest.mark.parametrize("text,action,args", TABLE)
def test_phrasings(text, action, args):
    intent = parse(text)
    assert intent is not None, text
    assert intent.action == action, (text, intent)
    for key, value in args.items():
        assert intent.args.get(key) == value, (text, intent.args)


@pytest.mark.parametrize("text", NOT_ACTIONS)
def test_questions_are_not_actions(text):
    intent = parse(text)
    assert intent is None or intent.action not in CHANGING, intent


@pytest.mark.parametrize("text,offer", [
    ("Would a learning rate of 5e-4 be too high for LoRA?", {"learning_rate": 5e-4}),
    ("what happens if I use 1 epoch", {"num_epochs": 1}),
    ("stop using 3 epochs, what happens if I use 1?", {}),  # two values: no guess
    ("is rank 64 overkill?", {"lora.r": 64}),
    ("should I switch to qlora?", {"method": "qlora"}),
])
def test_a_question_offers_the_change_it_is_about(text, offer):
    intent = parse(text)
    assert intent.action == "question" and intent.args["offer"] == offer


def test_table_is_large_enough_and_scores():
    hits = 0
    for text, action, args in TABLE:
        i = parse(text)
        hits += bool(i and i.action == action and all(i.args.get(k) == v
                                                       for k, v in args.items()))
    assert len(TABLE) >= 40
    assert hits == len(TABLE)
