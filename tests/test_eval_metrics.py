"""Task metrics on cases small enough to check by hand: the expected numbers are worked
out in the comments, so a library upgrade that changes a definition fails here."""

import json
import math
import subprocess
import sys

import pytest
from ftagent.tools.evaluate.metrics import (
    UNPARSABLE,
    classification_metrics,
    exact_match,
    infer_schema,
    json_compliance,
    json_match,
    length_stats,
    matches_schema,
    metrics_for,
    normalize,
    parse_label,
    text_metrics,
)

# --- exact match ------------------------------------------------------------------------


def test_exact_match_ignores_case_spacing_and_surrounding_punctuation():
    preds = ["Yes.", "  hello \n  world ", "«Paris»", "a.b"]
    refs = ["yes", "Hello World", "paris", "ab"]
    assert normalize("  «Hello,   World!» ") == "hello, world"  # inner punctuation stays
    assert exact_match(preds, refs) == 3 / 4  # "a.b" != "ab"


def test_exact_match_checks_lengths_and_empty():
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError):
        exact_match(["a"], ["a", "b"])


# --- labels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "labels", "expected"),
    [
        ("  POSITIVE! ", ["positive", "negative"], "positive"),  # exact after normalising
        ("The answer is billing.", ["billing", "shipping"], "billing"),  # inside a sentence
        ("This is a billing dispute", ["billing", "billing dispute"], "billing dispute"),
        ("dog, not cat", ["cat", "dog"], "dog"),  # equally long: the first in the answer wins
        ("It is not spam", ["spam", "not_spam"], "not_spam"),  # underscore as a space; longer
        ("Category: unknown", ["cat", "dog"], None),  # "cat" only as a whole word
        ("", ["cat"], None),
        ("I cannot tell", ["cat", "dog"], None),
    ],
)
def test_parse_label(answer, labels, expected):
    assert parse_label(answer, labels) == expected


def test_classification_three_classes_by_hand():
    labels = ["cat", "dog", "bird", "fish"]  # fish: neither a reference nor a prediction
    refs = ["cat", "cat", "cat", "dog", "dog", "bird"]
    preds = ["cat", "Cat.", "dog", "It's a dog", "no idea", "bird"]
    # parsed: cat cat dog dog <unparsable> bird
    # cat:  TP 2, FP 0, FN 1 -> P 1,   R 2/3, F1 2*(2/3)/(5/3) = 0.8
    # dog:  TP 1, FP 1 (ref cat), FN 1 (the unparsable) -> P 1/2, R 1/2, F1 0.5
    # bird: TP 1, FP 0, FN 0 -> P 1, R 1, F1 1
    # macro-F1 = (0.8 + 0.5 + 1) / 3 = 0.7667 (fish is not averaged in); accuracy 4/6
    m = classification_metrics(preds, refs, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert m["n_unparsable"] == 1
    assert set(m["per_class"]) == {"cat", "dog", "bird"}
    cat, dog = m["per_class"]["cat"], m["per_class"]["dog"]
    assert (cat["precision"], cat["recall"], cat["f1"], cat["support"]) == pytest.approx(
        (1.0, 2 / 3, 0.8, 3)
    )
    assert (dog["precision"], dog["recall"], dog["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert UNPARSABLE not in m["per_class"]


def test_unparsable_answers_are_never_correct():
    m = classification_metrics(["no idea", "maybe"], ["cat", "dog"], ["cat", "dog"])
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0 and m["n_unparsable"] == 2


def test_a_predicted_label_without_support_counts_in_the_macro_mean():
    # refs cat cat; preds cat fish -> cat P 1 R 1/2 F1 2/3; fish P 0 R 0 F1 0; macro 1/3
    m = classification_metrics(["cat", "fish"], ["cat", "cat"], ["cat", "fish"])
    assert m["macro_f1"] == pytest.approx(1 / 3)
    assert m["accuracy"] == 0.5


def test_a_reference_outside_the_labels_is_kept_and_counted():
    m = classification_metrics(["cat", "cow"], ["cat", "cow"], ["cat"])
    assert m["n_ref_outside_labels"] == 1
    assert m["accuracy"] == 1.0


# --- JSON -------------------------------------------------------------------------------

TRAIN = [
    '{"name": "Ann", "age": 31, "tags": [], "note": null}',
    '{"name": "Bo", "age": 40.5, "city": "Oslo", "tags": ["a"], "note": "vip"}',
    '{"name": "Cy", "age": 7, "tags": ["b"], "note": null',  # malformed: ignored
]


def test_schema_is_inferred_from_the_keys_all_training_answers_share():
    schema = infer_schema(TRAIN)
    # city is in one answer only; age is 31 and 40.5 -> number; note is null or a string
    assert schema == {
        "type": "object",
        "required": ["name", "age", "tags", "note"],
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "number"},
            "tags": {"type": "array"},
            "note": {"type": ["null", "string"]},
        },
    }
    assert infer_schema(["plain text", "more text"]) is None
    assert infer_schema(["1", "2.5"]) == {"type": "number"}


def test_json_compliance_against_the_inferred_schema():
    preds = [
        '{"name": "Di", "age": 3, "tags": [], "note": null}',  # ok: integer is a number
        '{"name": "Di", "age": "3", "tags": [], "note": null}',  # age has the wrong type
        '{"name": "Di", "tags": [], "note": null}',  # age missing
        '{"name": "Di", "age": 3, "tags": [], "note": null,}',  # malformed (trailing comma)
        '```json\n{"name": "Di", "age": 3, "tags": [], "note": null}\n```',  # fenced: not JSON
        "[1, 2]",  # JSON, but not an object
    ]
    assert json_compliance(preds, train_answers=TRAIN) == pytest.approx(1 / 6)
    assert json_compliance(preds) == pytest.approx(4 / 6)  # no schema: parsing alone
    assert json_compliance([], train_answers=TRAIN) == 0.0


def test_json_compliance_with_a_given_schema():
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    preds = ['{"id": 1, "extra": true}', '{"id": 1.5}', '{"id": true}', "{}"]
    assert json_compliance(preds, schema=schema) == 0.25  # extra keys are allowed
    assert matches_schema([1, 2], {"type": "array", "items": {"type": "integer"}})
    assert not matches_schema([1, "2"], {"type": "array", "items": {"type": "integer"}})


def test_json_match_ignores_key_order_and_spacing_but_not_values():
    refs = ['{"a": 1, "b": "x"}', '{"a": 1}', '{"a": 1}', '{"a": true}']
    preds = ['{"b":"x","a":1}', '{"a": 2}', "not json", '{"a": 1}']
    assert json_match(preds, refs) == 0.25  # true is not 1
    assert json_match(['{"a": [1.0, null]}'], ['{"a": [1, null]}']) == 1.0


# --- free text --------------------------------------------------------------------------


def test_bleu_and_chrf_of_identical_text_are_100():
    s = ["the cat sat on the mat", "a quick brown fox jumps"]
    m = text_metrics(s, s)
    assert m["bleu"] == pytest.approx(100.0)
    assert m["chrf"] == pytest.approx(100.0)
    assert m["rouge_l"] == pytest.approx(1.0)


def test_bleu_by_hand():
    # pred "the cat sat on the mat" vs ref "the cat sat on a mat", both 6 words (BP 1)
    # 1-grams 5/6 (second "the" unmatched), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.5373
    m = text_metrics(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert m["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)


def test_bleu_of_short_identical_answers_is_0_but_chrf_is_not():
    m = text_metrics(["yes ok"], ["yes ok"])  # no 3- or 4-grams: standard corpus BLEU is 0
    assert m["bleu"] == 0.0 and m["chrf"] == pytest.approx(100.0)


def test_rouge_l_of_known_pairs():
    # ref "the cat sat on the mat", pred "the cat was on the mat": LCS "the cat on the mat"
    # = 5 words -> P = R = 5/6 -> F 5/6.  pred "the cat": LCS 2 -> P 1, R 1/3, F 0.5.
    refs = ["the cat sat on the mat", "the cat sat on the mat"]
    m = text_metrics(["the cat was on the mat", "The cat!"], refs)
    assert m["rouge_l"] == pytest.approx((5 / 6 + 0.5) / 2)


def test_rouge_l_scores_non_latin_scripts():
    # rouge-score's own tokeniser keeps [a-z0-9] only and would give 0 here
    m = text_metrics(["привет мир", "χαίρε κόσμε"], ["привет мир", "χαίρε"])
    assert m["rouge_l"] == pytest.approx((1.0 + 2 / 3) / 2)  # second: P 1/2, R 1, F 2/3


def test_chrf_orders_partial_overlap_between_none_and_all():
    ref = ["the weather is sunny today"]
    none = text_metrics(["000 111"], ref)["chrf"]
    part = text_metrics(["the weather was rainy"], ref)["chrf"]
    assert none == 0.0 and 0.0 < part < 100.0


def test_length_stats_by_hand():
    preds = ["a", "a b", "a b c", " ".join("w" * 10)]  # 1, 2, 3, 10 words
    refs = ["a b", "a b", "a b c", "a b c d e"]  # 2, 2, 3, 5 words
    m = length_stats(preds, refs)
    assert m["pred_words_mean"] == 4.0
    assert m["pred_words_median"] == 2.5
    assert m["pred_words_p90"] == pytest.approx(7.9)  # linear: 3 + 0.7 * (10 - 3)
    assert m["ref_words_mean"] == 3.0
    assert m["length_ratio_mean"] == pytest.approx((0.5 + 1 + 1 + 2) / 4)


# --- per task ---------------------------------------------------------------------------


def test_metrics_for_classification():
    m = metrics_for("classification", ["cat", "dog"], ["cat", "cat"], labels=["cat", "dog"])
    assert m["primary_metric"] == "macro_f1"
    assert {"accuracy", "macro_f1", "exact_match", "n_unparsable", "pred_words_mean"} <= set(m)
    assert m["accuracy"] == 0.5 and m["exact_match"] == 0.5
    assert "bleu" not in m
    # labels default to the references
    assert metrics_for("classification", ["dog"], ["dog"])["accuracy"] == 1.0


def test_metrics_for_json_answers():
    refs = [json.dumps({"name": "Ann", "age": 31}), json.dumps({"name": "Bo", "age": 4})]
    preds = ['{"age": 31, "name": "Ann"}', '{"name": "Bo"}']
    m = metrics_for("extraction", preds, refs, train_answers=TRAIN[:2])
    assert m["primary_metric"] == "json_match"
    assert m["json_valid"] == 1.0
    assert m["json_compliance"] == 0.0  # both lack the trained "tags" and "note"
    assert m["json_match"] == 0.5 and m["exact_match"] == 0.0
    # without training answers the references' schema is used: the second lacks "age"
    assert metrics_for("extraction", preds, refs)["json_compliance"] == 0.5
    assert "rouge_l" not in m and "ref_words_mean" in m


@pytest.mark.parametrize(
    ("task", "primary"),
    [("summarization", "rouge_l"), ("chat", "rouge_l"), ("style", "rouge_l"), ("code", "chrf")],
)
def test_metrics_for_text_tasks(task, primary):
    m = metrics_for(task, ["the cat sat on the mat"], ["the cat sat on the mat"])
    assert m["primary_metric"] == primary
    assert {"rouge_l", "bleu", "chrf", "exact_match", "length_ratio_mean"} <= set(m)
    assert all(math.isfinite(m[k]) for k in ("rouge_l", "bleu", "chrf"))


def test_extraction_with_plain_text_answers_gets_text_metrics():
    m = metrics_for("extraction", ["Ann Smith"], ["Ann Smith"])
    assert m["primary_metric"] == "rouge_l" and m["exact_match"] == 1.0


def test_import_is_light():
    """The CLI imports tools.*; scikit-learn and sacrebleu load only when scoring."""
    code = ("import sys, ftagent.tools.evaluate.metrics; "
            "print({'sklearn', 'sacrebleu'} & set(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()"


def test_a_classifier_has_room_for_its_longest_label(bundled_model):
    from ftagent.tools.evaluate.compare import answer_tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.path)

    def count(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    longest = "balance_not_updated_after_cheque_or_cash_deposit"  # a BANKING77 intent
    assert count(longest) > 16  # the old fixed budget could never produce it
    assert answer_tokens("classification", ["card_arrival", longest], count) == count(longest) + 4
    assert answer_tokens("classification", ["spam", "ham"], count) == 16
    assert answer_tokens("generation", [longest], count) == 128
    # without a tokenizer (a provider's model) two characters a token: still room for it
    assert answer_tokens("classification", [longest]) >= count(longest) + 4
