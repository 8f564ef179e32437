"""Classification benchmarks: XNLI (TSV, datasets objects, save_to_disk), XFEVER, and CounterFact fact verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from test_data import bmike_record, truncate, write, write_text

from peft_mpn.data import (
    DatasetLayoutError,
    EditRequest,
    build_fact_verification,
    dataset_to_requests,
    detect_layout,
    fact_verification_requests,
    load_bmike53,
    load_edit_requests,
    load_xfever,
    load_xnli,
)

XNLI_HEADER = (
    "language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
    "sentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\t"
    "sentence1_tokenized\tsentence2_tokenized\tmatch"
)
PAIRS = [("11", "neutral"), ("12", "contradiction"), ("13", "entailment")]


def xnli_tsv(path: Path, languages=("ar", "de", "en"), pairs=PAIRS) -> Path:
    lines = [XNLI_HEADER]
    for lang in languages:  # grouped by language, as published
        for pair_id, label in pairs:
            premise, hypothesis = f"[{lang}] premise {pair_id}.", f'[{lang}] "hypothesis" {pair_id}'  # a bare quote
            lines.append("\t".join([lang, label, "", "", "", "", premise, hypothesis, "1", pair_id, "fiction"]))
    return write_text(path, "\n".join(lines) + "\n")


XNLI_FEATURES = Features(
    {
        "premise": Value("string"),
        "hypothesis": Value("string"),
        "label": ClassLabel(names=["entailment", "neutral", "contradiction"]),
    }
)


def xnli_config(lang: str, labels=(1, 2, 0, 1)) -> Dataset:
    """Like ``load_dataset("facebook/xnli", lang, split="test")``."""
    rows = [{"premise": f"{lang} p{i}", "hypothesis": f"{lang} h{i}", "label": y} for i, y in enumerate(labels)]
    return Dataset.from_list(rows, features=XNLI_FEATURES)


# ------------------------------------------------------------------------------------------------ XNLI


@pytest.mark.parametrize("name", ["xnli.test.tsv", "xnli.test.tsv.gz"])
def test_xnli_tsv_aligned_by_pair_id(tmp_path: Path, name: str) -> None:
    xnli_tsv(tmp_path / name)
    requests = load_xnli(tmp_path)
    assert [r.case_id for r in requests] == ["11", "12", "13"]
    first = requests[0]
    assert first.languages == ["en", "ar", "de"] and not first.is_generation
    assert first.edit.prompt == '[en] premise 11.\n[en] "hypothesis" 11'  # premise, newline, hypothesis
    assert {v.target for v in first.views.values()} == {1}  # neutral
    assert [r.edit.target for r in requests] == [1, 2, 0]
    # locality: the next case's input in the same language (the last case takes the first's)
    assert first.views["de"].locality_prompt == requests[1].views["de"].prompt
    assert requests[2].edit.locality_prompt == first.edit.prompt
    assert first.edit.locality_answer is None
    assert detect_layout(tmp_path) == "xnli"
    assert load_edit_requests(tmp_path, languages="de", start=1, limit=1)[0].languages == ["en", "de"]


def test_xnli_tsv_splits_and_template(tmp_path: Path) -> None:
    xnli_tsv(tmp_path / "xnli.test.tsv")
    xnli_tsv(tmp_path / "xnli.dev.tsv", pairs=[("7", "entailment")])
    assert [r.case_id for r in load_xnli(tmp_path, split="dev")] == ["7"]
    assert load_xnli(tmp_path, split="validation")[0].edit.locality_prompt is None  # a single case: no neighbour
    (request,) = load_xnli(tmp_path / "xnli.test.tsv", "en", limit=1, template="P: {premise} H: {hypothesis}")
    assert request.edit.prompt == 'P: [en] premise 11. H: [en] "hypothesis" 11'
    with pytest.raises(DatasetLayoutError, match="not 'train'"):
        load_xnli(tmp_path, split="train")


def test_xnli_tsv_errors(tmp_path: Path) -> None:
    path = xnli_tsv(tmp_path / "xnli.test.tsv")
    with pytest.raises(DatasetLayoutError, match="no 'fr' version; available: en, ar, de"):
        load_xnli(path, ["fr"])
    # a pair missing in one language, and a pair labelled differently in another: misaligned
    rows = path.read_text(encoding="utf-8").splitlines()
    write_text(path, "\n".join(r for r in rows if not (r.startswith("de\t") and "\t12\t" in r)) + "\n")
    load_xnli(path, ["ar"])  # the other languages still load
    with pytest.raises(DatasetLayoutError, match=r"case '12' has no 'de' version; the languages are not aligned"):
        load_xnli(path)
    write_text(path, "\n".join(r.replace("ar\tneutral", "ar\tentailment") for r in rows) + "\n")
    with pytest.raises(DatasetLayoutError, match="different labels across languages"):
        load_xnli(path)
    write_text(path, "\n".join(r.replace("ar\tneutral", "ar\tmaybe") for r in rows) + "\n")
    with pytest.raises(DatasetLayoutError, match="unknown label 'maybe'; expected one of entailment, neutral"):
        load_xnli(path)
    write_text(path, "language\tsentence1\n")
    with pytest.raises(DatasetLayoutError, match=r"no column\(s\) \['gold_label', 'sentence2', 'pairID'\]"):
        load_xnli(path)
    with pytest.raises(DatasetLayoutError, match=r"No xnli\.dev\.tsv"):
        load_xnli(tmp_path, split="dev")


def test_xnli_datasets_objects(tmp_path: Path) -> None:
    configs = {lang: xnli_config(lang) for lang in ("en", "de", "fr")}
    requests = load_xnli(configs, ["de"], start=1, limit=2)
    assert [r.case_id for r in requests] == ["1", "2"] and requests[0].languages == ["en", "de"]
    assert requests[0].views["de"].prompt == "de p1\nde h1" and requests[0].edit.target == 2
    assert requests[0].edit.locality_prompt == "en p2\nen h2"
    # a DatasetDict keyed by language, by split (of language dicts), and the same saved to disk
    assert load_xnli(DatasetDict(configs)) == load_xnli(configs)
    DatasetDict(configs).save_to_disk(tmp_path / "saved")
    assert load_xnli(tmp_path / "saved") == load_xnli(configs)
    with pytest.raises(DatasetLayoutError, match="different lengths"):
        load_xnli({"en": configs["en"], "de": xnli_config("de", labels=(1, 2))})
    with pytest.raises(DatasetLayoutError, match="case '0' has different labels"):
        load_xnli({"en": configs["en"], "de": xnli_config("de", labels=(0, 2, 0, 1))})
    with pytest.raises(DatasetLayoutError, match="does not say its language"):
        load_xnli(configs["en"])
    with pytest.raises(DatasetLayoutError, match="no 'ru' version"):
        load_xnli(configs, "ru")


def test_xnli_all_languages_config() -> None:
    """The ``all_languages`` config: premise per language, hypothesis as a variable-language translation."""
    from datasets import Translation, TranslationVariableLanguages

    features = Features(
        {
            "premise": Translation(languages=["de", "en"]),
            "hypothesis": TranslationVariableLanguages(languages=["de", "en"]),
            "label": XNLI_FEATURES["label"],
        }
    )
    rows = [
        {
            "premise": {"en": f"p{i}", "de": f"de p{i}"},
            "hypothesis": {"en": f"h{i}", "de": f"de h{i}"},
            "label": i,
        }
        for i in range(3)
    ]
    split = DatasetDict({"test": Dataset.from_list(rows, features=features)})
    requests = load_xnli(split)
    assert [r.languages for r in requests] == [["en", "de"]] * 3
    assert requests[2].views["de"].prompt == "de p2\nde h2" and requests[2].edit.target == 2
    with pytest.raises(DatasetLayoutError, match="No split 'validation'"):
        load_xnli(split, split="validation")


# ---------------------------------------------------------------------------------------------- XFEVER


def fever_line(i: int, lang: str, label: str, **over: object) -> dict:
    tag = "" if lang == "en" else f"[{lang}] "
    line = {
        "id": 100 + i,
        "claim": f"{tag}Claim -LRB-number {i}-RRB- .",
        "evidence": f"{tag}Evidence {i}",
        "page": f"Page_{i}",
        "label": label,
    }
    line.update(over)
    return line


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


LABELS = ["SUPPORTS", "REFUTES", "NOT ENOUGH INFO", "S"]  # the last: XFEVER's code reads the first letter


@pytest.fixture
def xfever_dir(tmp_path: Path) -> Path:
    """As published: ``<lang>/<split>.jsonl``; Japanese gzip'd and in another order."""
    root = tmp_path / "xfever"
    for lang, suffix in (("en", ".jsonl"), ("es", ".jsonl"), ("ja", ".jsonl.gz")):
        lines = [fever_line(i, lang, label) for i, label in enumerate(LABELS)]
        write_jsonl(root / lang / f"test{suffix}", lines[::-1] if lang == "ja" else lines)
        write_jsonl(root / lang / "dev.jsonl", lines[:1])
    return root


def test_xfever_published_layout(xfever_dir: Path) -> None:
    requests = load_xfever(xfever_dir)
    assert [r.case_id for r in requests] == ["100", "101", "102", "103"]  # the English order
    assert [r.edit.target for r in requests] == [0, 1, 2, 0]
    first = requests[0]
    assert first.languages == ["en", "es", "ja"]
    assert first.edit.prompt == "Claim (number 0) .\nPage 0 : Evidence 0"  # claim, "<page> : <evidence>"
    assert first.views["ja"].prompt == "[ja] Claim (number 0) .\nPage 0 : [ja] Evidence 0"
    assert first.views["es"].locality_prompt == requests[1].views["es"].prompt
    assert load_xfever(xfever_dir, "ja", evidence=False)[1].views["ja"].prompt == "[ja] Claim (number 1) ."
    assert [r.case_id for r in load_xfever(xfever_dir, split="dev")] == ["100"]
    assert detect_layout(xfever_dir) == "xfever"
    assert len(load_edit_requests(xfever_dir, languages=["es"], limit=2)) == 2


def test_xfever_flat_split_folder_and_single_file(tmp_path: Path) -> None:
    for lang in ("en", "fr"):
        write_jsonl(tmp_path / "test" / f"{lang}.jsonl.gz", [fever_line(i, lang, "REFUTES") for i in range(2)])
    requests = load_xfever(tmp_path / "test")
    assert requests[1].views["fr"].target == 1 and requests[1].languages == ["en", "fr"]
    assert detect_layout(tmp_path / "test") == "xfever"
    assert load_xfever(tmp_path / "test" / "en.jsonl")[0].languages == ["en"]  # the .gz found by its plain name


def test_xfever_errors(xfever_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no 'de' version; available: en, es, ja"):
        load_xfever(xfever_dir, ["de"])
    lines = [fever_line(i, "es", label) for i, label in enumerate(LABELS)]
    write_jsonl(xfever_dir / "es" / "test.jsonl", lines[:2] + [fever_line(9, "es", "REFUTES")] + lines[3:])
    load_xfever(xfever_dir, ["ja"])  # the other languages still load
    with pytest.raises(DatasetLayoutError, match="case '102' has no 'es' version; the languages are not aligned"):
        load_xfever(xfever_dir)
    write_jsonl(xfever_dir / "es" / "test.jsonl", lines[:1] + [fever_line(1, "es", "SUPPORTS")] + lines[2:])
    with pytest.raises(DatasetLayoutError, match=r"case '101' has different labels across languages"):
        load_xfever(xfever_dir)
    write_jsonl(xfever_dir / "es" / "test.jsonl", lines + [fever_line(7, "es", "REFUTES")])
    with pytest.raises(DatasetLayoutError, match=r"1 id\(s\) not in the English file \(first: 107\)"):
        load_xfever(xfever_dir)
    write_jsonl(xfever_dir / "es" / "test.jsonl", [fever_line(0, "es", "TRUE")])
    with pytest.raises(DatasetLayoutError, match="unknown label 'TRUE'"):
        load_xfever(xfever_dir)
    write_text(xfever_dir / "es" / "test.jsonl", '{"id": 1, "claim": "x", "label": "S"}\n{not json\n')
    with pytest.raises(DatasetLayoutError, match=r"test\.jsonl, line 2: not a JSON object"):
        load_xfever(xfever_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"No XFEVER files .* <lang>/test\.jsonl"):
        load_xfever(tmp_path / "empty")


def test_a_truncated_or_non_utf8_file_is_named_with_the_fix(xfever_dir: Path, tmp_path: Path) -> None:
    truncate(xfever_dir / "ja" / "test.jsonl.gz")
    with pytest.raises(DatasetLayoutError, match=r"test\.jsonl\.gz is truncated.*re-download"):
        load_xfever(xfever_dir)
    (xfever_dir / "es" / "test.jsonl").write_bytes(b'{"id": 1, "claim": "\xff"}\n')
    with pytest.raises(DatasetLayoutError, match=r"test\.jsonl is not UTF-8.*re-download"):
        load_xfever(xfever_dir, ["es"])
    truncate(xnli_tsv(tmp_path / "xnli.test.tsv.gz"))
    with pytest.raises(DatasetLayoutError, match=r"xnli\.test\.tsv\.gz is truncated.*re-download"):
        load_xnli(tmp_path)


def test_unknown_layout_lists_the_classification_layouts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetLayoutError) as err:
        detect_layout(tmp_path)
    assert all(s in str(err.value) for s in ("notes.txt", "xnli.dev.tsv", "<lang>/<split>.jsonl", "xnli, xfever"))


# ----------------------------------------------------------------------------------- fact verification


@pytest.fixture
def counterfact_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "counterfact"
    folder.mkdir()
    ids = [4, 8, 15, 16, 23, 42]
    rows = [{"en": bmike_record(c, "en"), "de": bmike_record(c, "de", rephrase=f"[de] Other {c}?")} for c in ids]
    write(folder / "counterfact_test_de.json.gz", rows)
    return folder


def test_fact_verification_statements(counterfact_dir: Path) -> None:
    requests = fact_verification_requests(load_bmike53(counterfact_dir))
    assert [r.case_id for r in requests[:4]] == ["4-true", "4-false", "8-true", "8-false"]
    true, false = requests[0], requests[1]
    assert true.edit.prompt == "Question 4? old 4" and true.edit.target == 1  # src completed with old
    assert false.edit.prompt == "Question 4? new 4" and false.edit.target == 0  # ... with alt
    assert true.views["de"].prompt == "[de] Question 4? [de] old 4" and true.views["de"].target == 1
    assert false.views["de"].rephrases == ("[de] Other 4? [de] new 4",)
    # locality: the next case's statement with the same truth value
    assert true.edit.locality_prompt == "Question 8? old 8"
    assert false.views["de"].locality_prompt == "[de] Question 8? [de] new 8"
    assert requests[-2].edit.locality_prompt == true.edit.prompt


def test_fact_verification_splits_are_deterministic_by_case(counterfact_dir: Path) -> None:
    cases = load_bmike53(counterfact_dir)
    task = build_fact_verification(cases, ["de"], test_fraction=0.5, seed=3)
    assert set(task) == {"train", "test"} and len(task["train"]) == len(task["test"]) == 6
    train_cases = {cid.split("-")[0] for cid in task["train"]["case_id"]}
    test_cases = {cid.split("-")[0] for cid in task["test"]["case_id"]}
    assert not train_cases & test_cases and len(train_cases | test_cases) == 6
    assert build_fact_verification(cases, ["de"], seed=3)["test"]["case_id"] == task["test"]["case_id"]
    reordered = build_fact_verification(cases[::-1], ["de"], seed=3)["test"]["case_id"]
    assert {cid.split("-")[0] for cid in reordered} == test_cases  # by case id, not by position
    test = dataset_to_requests(task["test"])
    assert all(not r.is_generation for r in test)
    test_prompts = {r.edit.prompt for r in test}
    assert all(r.edit.locality_prompt in test_prompts for r in test)  # locality stays inside the split
    row = task["train"][0]
    assert row["views"]["en"]["target"] in (0, 1) and row["views"]["de"]["prompt"].startswith("[de] Question")


def test_fact_verification_errors(counterfact_dir: Path, tmp_path: Path) -> None:
    cases = load_bmike53(counterfact_dir)
    with pytest.raises(DatasetLayoutError, match="no 'fr' version"):
        fact_verification_requests(cases, ["fr"])
    zsre = [EditRequest.single("Q?", "A", case_id="1")]
    with pytest.raises(DatasetLayoutError, match="no true answer in \\['en'\\].*CounterFact"):
        fact_verification_requests(zsre)
    with pytest.raises(ValueError, match="test_fraction"):
        build_fact_verification(cases, test_fraction=1.0)
    same = [{"en": bmike_record(1, "en", alt="old 1")}, {"en": bmike_record(2, "en")}]
    write(tmp_path / "counterfact_test.json", same)
    with pytest.warns(UserWarning, match="Dropped 1 case"):
        assert [r.case_id for r in fact_verification_requests(load_bmike53(tmp_path))] == ["2-true", "2-false"]


@pytest.mark.parametrize("template", ["{premise} {label}", "no fields", "{premise"])
def test_a_bad_template_is_refused_before_reading(tmp_path: Path, template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        load_xnli(tmp_path / "missing.tsv", "en", template=template)
    with pytest.raises(ValueError, match="template"):
        load_xfever(tmp_path / "missing", "en", template=template.replace("premise", "claim"))
