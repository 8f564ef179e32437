"""The one judge: reference then rows, caching, the probes it scores, and its results read as counts."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.metrics import Judge, exact_matches, score_targets
from peft_mpn.metrics.judge import model_fingerprint


def fact(case_id: str, country: str, capital: str, locality: tuple[str, str], language: str = "en") -> EditRequest:
    """A capital-city fact in en/de/fr with one rephrase and an unrelated question in every language."""
    views = {
        "en": (f"the capital of {country} is", f"the city that is the capital of {country} is"),
        "de": (f"die hauptstadt von {country} ist", f"von {country} die hauptstadt ist"),
        "fr": (f"la capitale de la {country} est", f"la ville capitale de la {country} est"),
    }
    return EditRequest.from_dict(
        {
            "case_id": case_id,
            "edit_language": language,
            "views": {
                lang: {
                    "prompt": prompt,
                    "target": capital if lang != "fr" else f"la ville {capital}",  # fr: a translated target
                    "rephrases": [rephrase],
                    "locality_prompt": locality[0],
                    "locality_answer": locality[1],
                }
                for lang, (prompt, rephrase) in views.items()
            },
        }
    )


FACTS = [
    fact("france", "france", "lyon", ("the sky is", "blue")),
    fact("germany", "germany", "rome", ("a cat sat on the", "mat")),
]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_model("llama"), make_tokenizer()


def test_reference_then_rows_on_the_unedited_model_keeps_locality(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    judge = Judge(tokenizer, augment_languages=["de"])
    before = judge.reference(model, FACTS)
    assert {row["probe"] for row in before} == {"reliability", "generality", "edit_language_answer"}
    after = [row for request in FACTS for row in judge.rows(model, request)]
    assert [row for row in after if row["probe"] != "locality"] == before  # same model, same rows
    scores = judge.scores(after)
    assert scores["locality"] == scores["locality_em"] == 1.0
    assert all(scores["per_language"][lang]["locality"] == 1.0 for lang in ("en", "de", "fr"))
    assert scores["augment_languages"] == ["de"] and scores["unseen_languages"] == ["fr"]
    assert judge.scores(before)["locality"] is None  # "before" compares nothing with itself


def test_cached_reference_returns_identical_rows(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    first = Judge(tokenizer, cache=tmp_path / "cache")
    rows = first.reference(model, FACTS)
    stored = sorted((tmp_path / "cache").iterdir())
    assert len(stored) == len(FACTS)
    second = Judge(tokenizer, cache=tmp_path / "cache")
    assert second.reference(model, FACTS) == rows
    assert second.locality_reference == first.locality_reference
    assert sorted((tmp_path / "cache").iterdir()) == stored  # read back, nothing new written
    other = tiny_model("llama", seed=1)  # other weights: their own entries
    Judge(tokenizer, cache=tmp_path / "cache").reference(other, FACTS)
    assert len(list((tmp_path / "cache").iterdir())) == 2 * len(FACTS)


@pytest.mark.parametrize(
    "damage",
    [
        lambda entry: {**entry, "rows": entry["rows"][1:]},  # a row short: the case would lose a probe
        lambda entry: {
            **entry,
            "rows": [{k: v for k, v in row.items() if k != "predictions"} for row in entry["rows"]],
        },
        lambda entry: {key: value for key, value in entry.items() if key != "generation"},  # an older format
        None,  # truncated mid-write by another process
    ],
)
def test_a_damaged_cache_entry_is_judged_again(model_and_tokenizer, tmp_path, damage, caplog):
    model, tokenizer = model_and_tokenizer
    rows = Judge(tokenizer, cache=tmp_path).reference(model, FACTS[:1])
    (path,) = tmp_path.iterdir()
    text = path.read_text()
    path.write_text(text[: len(text) // 2] if damage is None else json.dumps(damage(json.loads(text))))
    with caplog.at_level("WARNING"):
        assert Judge(tokenizer, cache=tmp_path).reference(model, FACTS[:1]) == rows
    assert "not usable" in caplog.text and str(path) in caplog.text
    assert json.loads(path.read_text())["rows"] == rows  # rewritten whole


def test_the_cache_tells_apart_models_that_differ_in_any_tensor(model_and_tokenizer):
    model, _ = model_and_tokenizer
    twin = tiny_model("llama")
    assert model_fingerprint(twin) == model_fingerprint(model)
    with torch.no_grad():
        twin.model.layers[1].mlp.down_proj.weight[3, 5] += 0.01  # one weight of a middle layer
    assert model_fingerprint(twin) != model_fingerprint(model)


def test_mixed_edit_languages_are_refused(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    german = fact("spain", "spain", "berlin", ("the dog runs in the", "park"), language="de")
    with pytest.raises(ValueError, match="mix edit languages"):
        Judge(tokenizer).reference(model, [FACTS[0], german])
    judge = Judge(tokenizer)
    judge.reference(model, FACTS)
    with pytest.raises(ValueError, match="mix edit languages"):  # across calls too
        judge.reference_locality(model, [german])


def test_rows_need_a_reference_first(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    judge = Judge(tokenizer)
    with pytest.raises(ValueError, match="call judge.reference"):
        judge.rows(model, FACTS[0])
    with pytest.raises(ValueError, match="call judge.reference"):
        judge.scores([])


def test_locality_only_judging_of_unedited_cases(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    judge = Judge(tokenizer)
    assert judge.reference_locality(model, FACTS) is None
    rows = judge.rows(model, FACTS[1], probes={"locality"})
    assert [(row["language"], row["probe"]) for row in rows] == [(lang, "locality") for lang in ("en", "de", "fr")]
    scores = judge.scores(rows)
    assert scores["locality"] == 1.0 and scores["reliability"] is None
    with pytest.raises(ValueError, match="Unknown probe kind"):
        judge.rows(model, FACTS[1], probes={"fluency"})


def test_probes_and_row_rebuild_the_rows_from_outside_predictions(model_and_tokenizer):
    # What EditTrainer does: its own loop produces the teacher-forced predictions, the judge builds the rows.
    model, tokenizer = model_and_tokenizer
    judge = Judge(tokenizer, generation=None)  # a Trainer's loop is teacher-forced
    judge.reference_locality(model, FACTS)
    for request in FACTS:
        probes = judge.probes(request)
        scores = score_targets(model, tokenizer, [(probe.prompt, str(probe.target)) for probe in probes])
        rebuilt = [judge.row(request, probe, s.predicted, s.target) for probe, s in zip(probes, scores)]
        assert rebuilt == judge.rows(model, request)
    with pytest.raises(ValueError, match="pre-edit locality reference has"):
        locality = next(probe for probe in judge.probes(FACTS[0]) if probe.probe == "locality")
        judge.row(FACTS[0], locality, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])


def test_exact_matches_reads_the_result_as_counts_of_cases(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    judge = Judge(tokenizer)
    scores = judge.scores(judge.reference(model, FACTS))
    for lang in ("en", "de", "fr"):
        held, total = exact_matches(scores, lang)
        assert total == 2 and held == round(scores["per_language"][lang]["reliability_em"] * 2)
    assert exact_matches(scores, "fr", "reliability_translated")[1] == 2  # "la ville lyon" is not "lyon"
    assert exact_matches(scores, "de", "reliability_translated") == (0, 0)  # de copies the English target
    assert exact_matches(scores, "de", "reliability_copied")[1] == 2
    with pytest.raises(ValueError, match="No 'reliability' in 'xx'"):
        exact_matches(scores, "xx")
    half = {"counts": {"en": {"generality": 2}}, "per_language": {"en": {"generality_em": 0.25}}}
    with pytest.raises(ValueError, match="holds on 0.50 of 2 cases"):
        exact_matches(half, "en", "generality")


def test_scores_do_not_depend_on_the_batch_size(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = [Judge(tokenizer, batch_size=size).reference(model, FACTS) for size in (1, 16)]
    assert rows[0] == rows[1]


def test_evaluate_edits_judges_an_edited_peft_model_against_its_adapter_free_self(model_and_tokenizer):
    from peft import get_peft_model

    from peft_mpn import MPNConfig, MPNEditor, MPNEditorConfig, evaluate_edits

    model, tokenizer = model_and_tokenizer
    unedited = evaluate_edits(model, tokenizer, FACTS, unedited=model)
    assert unedited["locality"] == 1.0 and unedited["reliability_em"] == 0.0
    with pytest.raises(ValueError, match="not a PeftModel.*pass unedited="):
        evaluate_edits(model, tokenizer, FACTS)

    peft_model = get_peft_model(tiny_model("llama"), MPNConfig())
    editor = MPNEditor(
        peft_model,
        tokenizer,
        MPNEditorConfig(max_steps=200, learning_rate=0.05, augment_languages=["de"]),
        unrelated_texts=["the weather is nice today", "numbers go up", "hello world again"],
        progress=False,
    )
    assert editor.edit(FACTS[0]).status in ("edited", "unfixed")
    result = evaluate_edits(editor.model, tokenizer, FACTS[0], augment_languages=["de"])
    assert result["reliability_em"] == 1.0 and 0.0 <= result["reliability_gen"] <= 1.0  # generation judged too
    assert result["per_language"]["de"]["reliability_translated_em"] is None  # de's target is the English string
    assert result["augment_languages"] == ["de"] and result["unseen_languages"] == ["fr"]
    assert set(result["per_language"]) == {"en", "de", "fr"} and result["locality"] is not None
    # the same numbers as the judge gives when the reference is taken by hand before editing
    judge = Judge(tokenizer, augment_languages=["de"])
    with editor.model.disable_adapter():
        judge.reference(editor.model, [FACTS[0]])
    assert judge.scores(judge.rows(editor.model, FACTS[0])) == result
