"""The dataset registry: every benchmark declared once, and the declaration true to its loader."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from test_classification_data import xnli_tsv
from test_data import bmike_record, write, zsre_record

from peft_mpn.cli import main
from peft_mpn.data import (
    DATASETS,
    DatasetLayoutError,
    dataset_options,
    dataset_spec,
    detect_layout,
    load_edit_requests,
)


@pytest.mark.parametrize("name", DATASETS)
def test_options_are_the_loaders_keyword_arguments(name: str) -> None:
    spec = dataset_spec(name)
    parameters = list(inspect.signature(spec.load).parameters)
    assert dataset_options(name) == set(parameters[1:])  # all but the path (or XNLI's source)
    assert all(meaning for meaning in spec.options.values())


@pytest.mark.parametrize("name", DATASETS)
def test_spec_is_consistent(name: str) -> None:
    spec = dataset_spec(name)
    assert spec.name == name and spec.languages[0] == "en"
    assert spec.is_generation == (spec.task == "generation") == (not spec.labels)
    assert spec.suffixes and all(suffix.endswith(".gz") for suffix in spec.suffixes[1::2])


def test_names_and_queries() -> None:
    assert DATASETS == ("mzsre", "bmike53", "bizsre", "xnli", "xfever")
    assert dataset_spec("BMIKE-53") is dataset_spec("bmike_53") is dataset_spec("bmike53")
    assert {name for name in DATASETS if "split" in dataset_options(name)} == {"bmike53", "xnli", "xfever"}
    assert "strict" in dataset_options("bmike53") and "evidence" in dataset_options("xfever")
    assert [name for name in DATASETS if dataset_spec(name).is_generation] == ["mzsre", "bmike53", "bizsre"]
    assert dataset_spec("xnli").labels == ("entailment", "neutral", "contradiction")
    with pytest.raises(DatasetLayoutError, match="Unknown dataset 'xquad'; expected one of mzsre, bmike53"):
        dataset_options("X-QuAD")
    with pytest.raises(AttributeError):
        dataset_spec("mzsre").name = "other"  # frozen
    with pytest.raises(TypeError):
        dataset_spec("mzsre").options["new"] = "no"  # read-only


def test_cli_offers_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "{" + ",".join(DATASETS) + "}" in capsys.readouterr().out


def test_the_task_says_what_the_loader_yields(tmp_path: Path) -> None:
    mzsre = tmp_path / "mzsre"
    mzsre.mkdir()
    write(mzsre / "mzsre_test_duplicate_ende.json", [{"en": zsre_record(0, "en"), "de": zsre_record(0, "de")}])
    bmike = tmp_path / "zsre"
    bmike.mkdir()
    write(bmike / "zsre_test_de.json", [{"en": bmike_record(1, "en"), "de": bmike_record(1, "de")}])
    bizsre = write(tmp_path / "bizsre_test.json", [{"en": zsre_record(2, "en"), "zh": zsre_record(2, "zh")}])
    xnli = xnli_tsv(tmp_path / "xnli.test.tsv")
    for path in (mzsre, bmike, bizsre, xnli):
        name = detect_layout(path)
        requests = load_edit_requests(path)
        assert requests and all(request.is_generation == dataset_spec(name).is_generation for request in requests)
