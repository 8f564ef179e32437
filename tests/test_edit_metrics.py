"""The cross_lingual_edit metric: hand-computed scores through the plain function and through evaluate.load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from peft_mpn.metrics import CROSS_LINGUAL_EDIT, compute_cross_lingual_edit
from peft_mpn.metrics.edit_metrics import COLUMNS, MEASURES, READINGS

# Two cases edited in English; de is an augmentation language, ru unseen.
# (case_id, language, probe, predictions, references, copied)
ROWS = [
    # case 0: a year, so the German target is the English string (copied); Russian is translated
    ("0", "en", "reliability", [10, 11], [10, 11], True),  # 1
    ("0", "en", "generality", [10, 12], [10, 11], True),  # 1/2 (partially right)
    ("0", "en", "locality", [1, 2, 3, 4], [1, 2, 3, 5], False),  # post vs pre: one token flipped, 3/4
    ("0", "en", "portability", [20], [20], False),  # 1
    ("0", "de", "reliability", [10, 11], [10, 11], True),  # 1, copied
    ("0", "de", "generality", [10, 0], [10, 11], True),  # 1/2
    ("0", "ru", "reliability", [30, 31, 0], [30, 31, 32], False),  # 2/3, translated
    ("0", "ru", "edit_language_answer", [10, 11], [10, 11], False),  # 1: English answer on the ru prompt
    # case 1: every other language has its own spelling (translated)
    ("1", "en", "reliability", [40, 41, 42], [40, 41, 42], True),  # 1
    ("1", "en", "generality", [40, 41, 42], [40, 41, 42], True),  # 1   } two rephrases:
    ("1", "en", "generality", [40, 0, 0], [40, 41, 42], True),  # 1/3 } case scores 2/3, em 1/2
    ("1", "en", "locality", [7, 8], [7, 8], False),  # 1
    ("1", "de", "reliability", [50, 0], [50, 51], False),  # 1/2, translated
    ("1", "de", "edit_language_answer", [40, 41, 42], [40, 41, 42], False),  # 1
    ("1", "ru", "reliability", [60], [61], False),  # 0, translated
    ("1", "ru", "generality", [60], [60], False),  # 1
]

EXPECTED = {
    "en": {
        "reliability": (1.0, 1.0),
        "generality": ((1 / 2 + 2 / 3) / 2, (0 + 1 / 2) / 2),
        "locality": ((3 / 4 + 1) / 2, 1 / 2),
        "portability": (1.0, 1.0),
        "reliability_translated": (None, None),
        "reliability_copied": (None, None),
        "reliability_edit_language_answer": (None, None),
    },
    "de": {
        "reliability": ((1 + 1 / 2) / 2, 1 / 2),
        "generality": (1 / 2, 0.0),
        "locality": (None, None),
        "portability": (None, None),
        "reliability_translated": (1 / 2, 0.0),
        "reliability_copied": (1.0, 1.0),
        "reliability_edit_language_answer": (1.0, 1.0),
    },
    "ru": {
        "reliability": ((2 / 3 + 0) / 2, 0.0),
        "generality": (1.0, 1.0),
        "locality": (None, None),
        "portability": (None, None),
        "reliability_translated": (1 / 3, 0.0),
        "reliability_copied": (None, None),
        "reliability_edit_language_answer": (1.0, 1.0),
    },
}


def columns(rows=ROWS) -> dict[str, list]:
    return {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}


def expected_flat(lang: str) -> dict[str, float | None]:
    flat = {}
    for measure, (token, exact) in EXPECTED[lang].items():
        flat[measure], flat[f"{measure}_em"] = token, exact
        flat[f"{measure}_gen"] = flat[f"{measure}_stops"] = None  # no generation readings given
    return flat


def mean_of(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@pytest.fixture(scope="module")
def evaluate_metric(tmp_path_factory):
    """The module loaded with evaluate.load, its script copy and caches in a temporary HF_HOME."""
    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        import evaluate

        # evaluate reads HF_HOME when first imported; another test may have imported it already
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", home / "modules")
        mp.setattr(evaluate.config, "HF_METRICS_CACHE", home / "metrics")
        mp.setattr(evaluate.config, "HF_EVALUATE_CACHE", home / "evaluate")
        metric = evaluate.load(CROSS_LINGUAL_EDIT, cache_dir=str(home / "metrics"))
        copies = list((home / "modules").rglob("cross_lingual_edit.py"))
        assert copies, "evaluate should copy the script into the temporary HF_HOME"
        yield metric


@pytest.fixture(params=["function", "evaluate"])
def compute(request):
    if request.param == "function":
        return compute_cross_lingual_edit
    metric = request.getfixturevalue("evaluate_metric")
    return metric.compute


def approx_equal(got, want) -> bool:
    return got is None if want is None else got is not None and math.isclose(got, want, abs_tol=1e-9)


def test_hand_computed_scores(compute):
    result = compute(**columns(), edit_language="en", augment_languages=["de"])

    assert list(result["per_language"]) == ["en", "de", "ru"]
    for lang in ("en", "de", "ru"):
        want = expected_flat(lang)
        got = result["per_language"][lang]
        assert set(got) == set(want)
        for key, value in want.items():
            assert approx_equal(got[key], value), (lang, key, got[key], value)

    # headline numbers: the edit language's
    for measure in ("reliability", "generality", "locality", "portability"):
        for key in (measure, f"{measure}_em"):
            assert approx_equal(result[key], expected_flat("en")[key]), key
    assert result["reliability"] == 1.0
    assert approx_equal(result["generality"], 7 / 12) and result["generality_em"] == 0.25
    assert approx_equal(result["locality"], 0.875) and result["locality_em"] == 0.5

    # averages over language groups skip languages without a value
    groups = {
        "average": ["en", "de", "ru"],
        "average_cross_lingual": ["de", "ru"],
        "average_augment": ["de"],
        "average_unseen": ["ru"],
    }
    for name, langs in groups.items():
        for key in expected_flat("en"):
            want = mean_of(expected_flat(lang)[key] for lang in langs)
            assert approx_equal(result[name][key], want), (name, key)
    assert approx_equal(result["average"]["reliability"], 25 / 36)
    assert approx_equal(result["average_cross_lingual"]["reliability"], 13 / 24)
    assert approx_equal(result["average"]["reliability_translated"], 5 / 12)
    assert result["average"]["locality"] == 0.875  # only English has locality rows

    assert result["counts"]["de"] == {
        "reliability": 2,
        "generality": 1,
        "locality": 0,
        "portability": 0,
        "reliability_translated": 1,
        "reliability_copied": 1,
        "reliability_edit_language_answer": 1,
    }
    assert result["counts"]["ru"]["reliability_translated"] == 2
    # per case: the scores the per-language values average, with the copied flag outside the edit language
    assert result["per_case"]["0"]["de"] == {"reliability": [1.0, 1.0], "generality": [0.5, 0.0], "copied": True}
    assert result["per_case"]["1"]["en"]["generality"] == [pytest.approx(2 / 3), 0.5]
    assert "copied" not in result["per_case"]["1"]["en"] and result["per_case"]["1"]["ru"]["copied"] is False
    assert result["per_case"]["0"]["ru"]["edit_language_answer"] == [1.0, 1.0]
    assert result["edit_language"] == "en"
    assert result["augment_languages"] == ["de"] and result["unseen_languages"] == ["ru"]
    assert result["num_cases"] == 2

    scores = [v for lang in result["per_language"].values() for v in lang.values() if v is not None]
    assert all(0.0 <= v <= 1.0 for v in scores)


def test_before_edit_call_without_locality_rows(compute):
    before = [row for row in ROWS if row[2] != "locality"]
    result = compute(**columns(before), edit_language="en", languages=["en", "de", "ru"])
    assert result["locality"] is None and result["locality_em"] is None
    assert result["unseen_languages"] == ["de", "ru"]  # no augmentation named
    assert all(v is None for v in result["average_augment"].values())


def test_evaluate_module_declares_the_columns(evaluate_metric):
    assert set(evaluate_metric.features) == set(COLUMNS)
    assert "MzsRE" in evaluate_metric.citation or "2312.13040" in evaluate_metric.citation


def test_script_imports_only_installed_packages():
    from evaluate.loading import get_imports

    script = Path(CROSS_LINGUAL_EDIT) / "cross_lingual_edit.py"
    imports = get_imports(str(script))
    assert {kind for kind, *_ in imports} == {"library"}  # nothing relative: the script is copied alone
    assert {name for _, name, *_ in imports} <= {"datasets", "evaluate", "peft_mpn"}
    assert (Path(CROSS_LINGUAL_EDIT) / "README.md").is_file()


def _with(rows, index, **changes):
    row = dict(zip(COLUMNS, rows[index]))
    row.update(changes)
    return [*rows[:index], tuple(row[c] for c in COLUMNS), *rows[index + 1 :]]


@pytest.mark.parametrize(
    ("rows", "kwargs", "match"),
    [
        (_with(ROWS, 1, probe="paraphrase"), {}, "unknown probe 'paraphrase'"),
        (_with(ROWS, 0, predictions=[10]), {}, "1 predictions for 2 reference tokens"),
        (_with(ROWS, 0, predictions=[], references=[]), {}, "empty references"),
        (ROWS, {"edit_language": "fr"}, "edit language 'fr' has no row"),
        (ROWS, {"augment_languages": ["de", "zh"]}, r"Language\(s\) \['zh'\] of augment_languages have no row"),
        (ROWS, {"augment_languages": ["en"]}, "also listed in augment_languages"),
        (ROWS, {"languages": ["en", "de", "ru", "th"]}, r"Language\(s\) \['th'\] have no row"),
        (ROWS, {"languages": ["en", "de"]}, r"Rows in language\(s\) \['ru'\]"),
        (_with(ROWS, 7, language="en"), {}, "in the edit language 'en' it is reliability"),
        (_with(ROWS, 5, copied=False), {}, "contradicts"),
    ],
    ids=[
        "unknown-probe",
        "token-length-mismatch",
        "empty-target",
        "edit-language-missing",
        "augment-language-missing",
        "augment-is-edit-language",
        "expected-language-missing",
        "unexpected-language",
        "edit-language-answer-in-edit-language",
        "copied-contradiction",
    ],
)
def test_bad_rows_raise(compute, rows, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute(**columns(rows), **kwargs)


def test_mismatched_column_lengths_raise(compute):
    data = columns()
    data["language"] = data["language"][:-1]
    with pytest.raises(ValueError, match="Mismatch in the number|one entry per row"):
        compute(**data)


def test_no_rows_raise():
    with pytest.raises(ValueError, match="No rows"):
        compute_cross_lingual_edit([], [], case_id=[], language=[], probe=[], copied=[])


def test_measures_cover_the_per_language_keys():
    result = compute_cross_lingual_edit(**columns())
    assert list(result["per_language"]["en"]) == [m + suffix for m in MEASURES for suffix in READINGS]


@pytest.fixture(scope="module")
def tiny_rows():
    """Rows built from score_targets on a tiny decoder, as the README recipe builds them (model unedited)."""
    from tiny import make_tokenizer, tiny_model

    from peft_mpn.data import EditRequest
    from peft_mpn.metrics import score_targets

    model, tokenizer = tiny_model("llama"), make_tokenizer()
    request = EditRequest.single(
        "the capital of france is",
        "lyon",
        case_id="0",
        rephrases=("the city of france is",),
        locality_prompt="who wrote hamlet",
        locality_answer="shakespeare",
        parallel={
            "de": {"prompt": "die hauptstadt von frankreich ist", "target": "lyon"},
            "fr": {"prompt": "la capitale de france est", "target": "la ville lyon"},
        },
    )
    rows, scores_by_probe = [], {}
    for lang, view in request.views.items():
        probes = [("reliability", view.prompt, view.target)]
        probes += [("generality", rephrase, view.target) for rephrase in view.rephrases]
        if lang != request.edit_language:
            probes.append(("edit_language_answer", view.prompt, request.edit.target))
        if view.locality_prompt:
            probes.append(("locality", view.locality_prompt, view.locality_answer))
        scores = score_targets(model, tokenizer, [(prompt, target) for _, prompt, target in probes])
        for (probe, _, _), score in zip(probes, scores):
            # unedited model: the pre-edit locality predictions are its own
            references = score.predicted if probe == "locality" else score.target
            rows.append(
                (request.case_id, lang, probe, score.predicted, references, view.target == request.edit.target)
            )
            scores_by_probe[(lang, probe)] = score
    return rows, scores_by_probe


def test_rows_from_score_targets(compute, tiny_rows):
    rows, scores = tiny_rows
    result = compute(**columns(rows), edit_language="en", augment_languages=["de"])
    assert result["locality"] == 1.0 and result["locality_em"] == 1.0
    for (lang, probe), score in scores.items():
        if probe == "locality":
            continue
        measure = "reliability_edit_language_answer" if probe == "edit_language_answer" else probe
        got = result["per_language"][lang]
        assert approx_equal(got[measure], score.token_accuracy)
        assert got[f"{measure}_em"] == float(score.exact)
    assert result["counts"]["de"]["reliability_copied"] == 1  # "lyon" in German too
    assert result["counts"]["fr"]["reliability_translated"] == 1
    assert result["unseen_languages"] == ["fr"]
