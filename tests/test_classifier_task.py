"""benchmarks/classifier_task.py end to end on a tiny BERT classifier and a tiny CounterFact folder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_data import write
from tiny import load_benchmark_script, make_tokenizer, tiny_model

FACTS = [  # (English question, German question, true answer, counterfactual answer)
    ("the capital of france is", "die hauptstadt von frankreich ist", "paris", "lyon"),
    ("the capital of germany is", "die hauptstadt von deutschland ist", "berlin", "rome"),
    ("the capital of italy is", "die hauptstadt von italy ist", "rome", "madrid"),
    ("the capital of spain is", "die hauptstadt von spain ist", "madrid", "paris"),
    ("who wrote hamlet", "who wrote hamlet", "shakespeare", "berlin"),
    ("what colour is the sky", "what colour ist the sky", "blue", "rain"),
    ("where flows the river", "where flows die river", "north", "south"),
    ("a cat sat on the", "a cat sat on die", "mat", "table"),
]


def record(i: int, question: str, old: str, alt: str) -> dict:
    return {"case_id": i, "subject": "s", "src": question, "rephrase": f"{question} now", "old": old, "alt": alt}


@pytest.fixture
def counterfact(tmp_path: Path) -> Path:
    folder = tmp_path / "counterfact"
    folder.mkdir()
    rows = [
        {"en": record(i, en, old, alt), "de": record(i, de, old, alt)} for i, (en, de, old, alt) in enumerate(FACTS)
    ]
    write(folder / "counterfact_test_de.json.gz", rows)
    return folder


@pytest.fixture
def tiny_classifier(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-bert"
    tiny_model("bert", num_labels=2).save_pretrained(folder)
    make_tokenizer(encoder=True).save_pretrained(folder)
    return folder


def test_classifier_task_end_to_end(counterfact: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    script = load_benchmark_script("classifier_task")
    output = tmp_path / "out" / "task.json"
    argv = [
        *("--model", str(tiny_classifier), "--data", str(counterfact), "--languages", "de"),
        *("--augment-languages", "de", "--epochs", "1", "--batch-size", "4", "--lora-rank", "2"),
        *(
            "--num-edits",
            "2",
            "--max-steps",
            "200",
            "--edit-learning-rate",
            "0.05",
            "--locality-pool",
            "2",
            "--max-length",
            "16",
        ),
        *("--cache-dir", str(tmp_path / "cache"), "--output", str(output)),
    ]
    report = script.main(argv)

    assert report["classifier"]["cached"] is False and report["test_statements"] == 8
    cache = tmp_path / "cache" / "classifiers"
    (folder,) = cache.iterdir()  # one finished folder, no temp leftovers
    assert (folder / "config.json").is_file() and (folder / "peft_mpn_classifier.json").is_file()
    assert set(report["classifier"]["test_accuracy"]) == {"en", "de"}
    assert [e["editor"] for e in report["editors"]] == ["t-patcher", "mpn"]
    for result in report["editors"]:
        assert 1 <= result["edits"] <= 2
        for key in ("success", "reliability", "generality", "locality_en", "locality_all", "clg_seen"):
            assert 0.0 <= result[key] <= 1.0
        assert result["clg_unseen"] is None and set(result["clg"]) == {"de"}
        assert result["scores"]["counts"]["en"]["locality"] == result["edits"]
    unedited = report["unedited"]  # the classifier before editing, on the same statements
    assert unedited["edits"] == report["editors"][0]["edits"] and unedited["reliability"] == 0.0
    assert unedited["locality_all"] == 1.0 and set(unedited["clg"]) == {"de"}
    mpn = report["editors"][1]
    assert mpn["reliability"] == 1.0 and mpn["success"] == 1.0  # the edits hold in English
    assert json.loads(output.read_text(encoding="utf-8"))["editors"][1]["editor"] == "mpn"
    table = output.with_suffix(".md").read_text(encoding="utf-8")
    assert table.startswith("| editor | edits |") and "| mpn |" in table and "CLG de" in table
    assert table.index("| unedited |") < table.index("| t-patcher |")

    kept = tmp_path / "kept"  # the results page reads the report kept gzip'd next to the bench runs
    kept.mkdir()
    (kept / "classifier_task.json.gz").write_bytes(gzip.compress(output.read_bytes()))
    results = load_benchmark_script("results")
    section = "\n".join(results.classifier_section(results.load_classifier_report(kept)))
    assert section.startswith("## Classifier editing") and table.strip() in section

    again = script.main(argv)  # the trained classifier comes from the cache
    assert again["classifier"]["cached"] is True and again["classifier"]["folder"] == str(folder)
    assert again["classifier"]["test_accuracy"] == report["classifier"]["test_accuracy"]


def test_classifier_task_rejects_unknown_augment_language(counterfact: Path) -> None:
    with pytest.raises(SystemExit):
        load_benchmark_script("classifier_task").parse_args(
            ["--data", str(counterfact), "--languages", "de", "--augment-languages", "fr"]
        )
