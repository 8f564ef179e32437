"""The studies in benchmarks/ judge with the Judge: their tables are its counts, on a tiny model."""

from __future__ import annotations

import json

import pytest
from test_examples import FACTS
from tiny import load_benchmark_script, make_tokenizer, tiny_model

from peft_mpn.locating import LocatorConfig
from peft_mpn.metrics import exact_matches


@pytest.fixture(scope="module")
def lafn_study():
    return load_benchmark_script("lafn_study")


def test_lafn_study_tables_format_the_judges_scores(lafn_study):
    locator = LocatorConfig(top_k=16, language_vote=0.5)
    editing = lafn_study.study_editing(
        tiny_model("llama"),
        make_tokenizer(),
        FACTS[:3],
        FACTS[3:],
        FACTS[3:],
        ["de"],
        locator,
        False,
        lafn_max_steps=5,
    )
    editing = json.loads(json.dumps(editing))  # what --tables-from reads back
    results = editing["results"]
    assert list(results) == ["before", lafn_study.MULTILINGUAL, "LAFN (en + aug)", "MPN (en + aug)"]
    assert results["before"]["scores"]["locality"] is None and results["before"]["cases"] == {}
    assert all(results[m]["cases"].keys() == {"france", "germany", "italy"} for m in list(results)[1:])
    languages = lafn_study.judged_languages(editing)
    assert languages == ["en", "de", "fr"]

    table = lafn_study.editing_table(editing, languages, ["de"])
    mpn = results["MPN (en + aug)"]["scores"]
    held, total = exact_matches(mpn, "en")
    assert table.splitlines()[2].endswith(f"| {held}/{total} |")  # the en row, MPN's column
    copied = exact_matches(mpn, "de", "reliability_copied")
    assert table.splitlines()[3].endswith(f"| 0/0 ({copied[0]}/{copied[1]}) |")  # every de target is copied
    assert f"| {mpn['average']['locality']:.3f} |" in table.splitlines()[-2]
    summary = lafn_study.summary_table(editing, languages, ["de"])
    assert summary.splitlines()[2].startswith("| before | 0/3 (0%) |")  # the unedited model wins nowhere


def test_patch_plans_judges_the_facts_and_the_unrelated_sets():
    plans = load_benchmark_script("patch_plans")
    unrelated = plans.as_unrelated(FACTS[4])
    assert unrelated.languages == ["en"] and unrelated.edit.locality_prompt == FACTS[4].edit.prompt
    results = plans.compare_plans(
        tiny_model("llama"), make_tokenizer(), FACTS[:2], FACTS[2:4], {"prompts": [unrelated]}, ["de"]
    )
    assert list(results) == ["edit", "per_language"]
    for plan, result in results.items():
        assert set(result["locality"]) == {"own", "prompts"}
        assert all(0.0 <= value <= 1.0 for value in result["locality"].values())
        held, total = exact_matches(result["scores"], "en")
        lines = plans.report(plan, result).splitlines()
        assert lines[0] == f"## patch_plan={plan!r}" and lines[-1].startswith(f"en {held}/{total} | de 0/0 (")
