"""The scripts in examples/ run end to end on a tiny saved model with facts its word-level tokenizer knows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import FakeHub
from tiny import REPO_ROOT, make_tokenizer, tiny_model

from peft_mpn import EditRequest

EXAMPLES = REPO_ROOT / "examples"


def fact(case_id: str, country: dict[str, str], capital: str, locality: tuple[str, str]) -> EditRequest:
    """A capital-city fact in en/de/fr, each with a rephrase (LAFN locates over them) and a locality question."""
    prompts = {
        "en": (f"the capital of {country['en']} is", f"the city that is the capital of {country['en']} is"),
        "de": (f"die hauptstadt von {country['de']} ist", f"von {country['de']} die hauptstadt ist"),
        "fr": (f"la capitale de la {country['fr']} est", f"la ville capitale de la {country['fr']} est"),
    }
    views = {
        language: {
            "prompt": prompt,
            "target": capital,
            "rephrases": [rephrase],
            "locality_prompt": locality[0],
            "locality_answer": locality[1],
        }
        for language, (prompt, rephrase) in prompts.items()
    }
    return EditRequest.from_dict({"case_id": case_id, "edit_language": "en", "views": views})


FACTS = [
    fact("france", {"en": "france", "de": "frankreich", "fr": "france"}, "lyon", ("the sky is", "blue")),
    fact("germany", {"en": "germany", "de": "deutschland", "fr": "germany"}, "rome", ("a cat sat on the", "mat")),
    fact("italy", {"en": "italy", "de": "italy", "fr": "italy"}, "madrid", ("the dog runs in the", "park")),
    fact("spain", {"en": "spain", "de": "spain", "fr": "spain"}, "berlin", ("the sun shines over the", "hills")),
    fact("city", {"en": "the river", "de": "the river", "fr": "river"}, "paris", ("the bird sings in the", "morning")),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A saved tiny Llama, a saved tiny BERT classifier (3 labels), and the facts as JSON."""
    root = tmp_path_factory.mktemp("examples")
    tiny_model("llama").save_pretrained(root / "llama")
    make_tokenizer().save_pretrained(root / "llama")
    tiny_model("bert", num_labels=3).save_pretrained(root / "bert")
    make_tokenizer(encoder=True).save_pretrained(root / "bert")
    (root / "facts.json").write_text(json.dumps([request.to_dict() for request in FACTS]))
    return root


def run_example(
    name: str, workspace: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``examples/<name>`` in a fresh process (one thread, offline unless ``env`` says otherwise); return it
    and its ``--report`` JSON."""
    report = workspace / f"{name}.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(EXAMPLES / name), "--facts", str(workspace / "facts.json"), "--report", str(report)]
    proc = subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=workspace, timeout=300)
    if check:
        assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc, json.loads(report.read_text())
    return proc, {}


def test_edit_one_fact_edits_saves_and_reloads(workspace):
    proc, report = run_example(
        "edit_one_fact.py", workspace,
        "--model", "llama", "--augment-languages", "de", "--learning-rate", "0.05", "--output", "one-fact-adapter",
    )  # fmt: skip
    assert report["status"] == "edited" and report["patches_added"] >= 1
    assert report["before"] == {"en": False, "de": False, "fr": False}
    assert report["after"]["en"] and report["after"]["de"]  # the edit language and the seen one
    assert report["reloaded"] == report["after"]
    config = json.loads((workspace / "one-fact-adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "MPN" and config["num_patches"] == report["patches_added"]
    assert "| en | edit | - | lyon | no | yes | yes |" in proc.stdout
    assert "reloaded answers match: yes" in proc.stdout


def test_edit_stream_compares_t_patcher_and_mpn(workspace):
    proc, report = run_example(
        "edit_stream.py", workspace, "--model", "llama", "--num-facts", "2", "--augment-languages", "de",
        "--learning-rate", "0.05",
    )  # fmt: skip
    metrics, streams = report["metrics"], report["streams"]
    assert list(metrics) == ["before", "T-Patcher", "MPN"]
    assert metrics["before"]["reliability_em"] == 0.0 and metrics["before"]["locality"] is None
    for method in ("T-Patcher", "MPN"):
        assert metrics[method]["reliability_em"] == 1.0  # both edits still hold after the whole stream
        assert 0.0 <= metrics[method]["locality"] <= 1.0
        assert streams[method]["held_right_after"] == 2 and streams[method]["patches"] >= 2
    # only MPN trained on German: it holds there; fr is unseen by both
    assert metrics["MPN"]["average_augment"]["reliability_copied_em"] == 1.0
    assert metrics["MPN"]["unseen_languages"] == ["fr"]
    assert "| exact match | before | T-Patcher | MPN |" in proc.stdout


def test_lafn_edit_locates_and_edits(workspace):
    proc, report = run_example(
        "lafn_edit.py", workspace, "--model", "llama", "--augment-languages", "de", "--top-k", "16",
        "--language-vote", "0.5", "--learning-rate", "0.05", "--output", "lafn-adapter",
    )  # fmt: skip
    assert report["status"] == "edited" and report["train_languages"] == ["en", "de"]
    assert report["after"]["en"] and report["after"]["de"]
    config = json.loads((workspace / "lafn-adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LAFN"
    assert {int(k): sorted(v) for k, v in config["neurons"].items()} == {
        int(k): sorted(v) for k, v in report["neurons"].items()
    }
    assert "language-agnostic neurons" in proc.stdout  # the locator's summary


def test_classifier_edit_flips_the_label_in_the_trained_languages(workspace):
    proc, report = run_example(
        "classifier_edit.py", workspace, "--model", "bert", "--augment-languages", "de", "--learning-rate", "0.05",
    )  # fmt: skip
    assert report["status"] == "edited"
    assert report["label"] != report["before"]["en"]
    assert report["after"]["en"] == report["after"]["de"] == report["label"]
    # judged on the other facts' inputs not in the memory bank: 2 facts x 3 languages
    locality = report["locality"]
    assert locality["total"] == 6
    assert f"Locality: {locality['kept']}/6 other inputs keep their label" in proc.stdout


def test_trainer_edit_fixes_the_facts_together_and_saves_a_shareable_adapter(workspace):
    proc, report = run_example(
        "trainer_edit.py", workspace, "--model", "llama", "--num-facts", "4", "--augment-languages", "de",
        "--batch-size", "4", "--max-steps", "80", "--output", "trainer-adapter",
    )  # fmt: skip
    assert report["steps"] == 80 and report["patches"] >= 4  # at least one patch per fact
    assert report["before"]["reliability_em"] == 0.0
    assert report["after"]["reliability_em"] == 1.0  # every fact, in the edit language
    assert report["after"]["per_language"]["de"]["reliability_em"] == 1.0  # and in the trained language
    assert 0.0 <= report["after"]["locality_em"] <= 1.0
    adapter = workspace / "trainer-adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "MPN" and config["num_patches"] == report["patches"]
    manifest = json.loads((adapter / "edits.json").read_text())
    assert [edit["case_id"] for edit in manifest["edits"]] == ["france", "germany", "italy", "spain"]
    assert "| edit language: reliability | 0.00 | 1.00 |" in proc.stdout


def check_shared_edits(workspace: Path, report: dict) -> None:
    """Two separate edit folders with their manifests, composed into one adapter in which both edits hold."""
    assert report["status"] == {"france": "edited", "germany": "edited"}
    folders = [workspace / folder for folder in report["folders"]]  # relative to the example's working folder
    assert [folder.name for folder in folders] == ["edit-france", "edit-germany"]
    for folder, case in zip(folders, ("france", "germany")):
        assert [edit["case_id"] for edit in json.loads((folder / "edits.json").read_text())["edits"]] == [case]
        assert "## Evaluation" in (folder / "README.md").read_text()  # the card carries the metric table
    for case in ("france", "germany"):
        assert report["before"][case]["en"] is False
        assert report["after"][case]["en"] and report["after"][case]["de"]
    assert report["composed"]["sources"] == report["folders"]  # each composed edit names its source folder


def test_share_edit_saves_lists_and_composes_two_edits(workspace):
    proc, report = run_example(
        "share_edit.py", workspace, "--model", "llama", "--augment-languages", "de", "--learning-rate", "0.05",
        "--output", "shared",
    )  # fmt: skip
    check_shared_edits(workspace, report)
    assert report["pushed"] is None
    assert "Both edits hold in the composed adapter: yes" in proc.stdout


def test_share_edit_pushes_the_composed_adapter_to_a_hub(workspace, tmp_path):
    hub = FakeHub(tokens={"hf_test_token"}).start()
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path), "HF_TOKEN": "hf_test_token"}
    try:
        proc, report = run_example(
            "share_edit.py", workspace, "--model", "llama", "--augment-languages", "de", "--learning-rate", "0.05",
            "--output", "shared-push", "--push", "tester/capitals", "--revision", "v1", env=online,
        )  # fmt: skip
        weights = hub.file("tester/capitals", "adapter_model.safetensors", revision="v1")
        card = hub.file("tester/capitals", "README.md", revision="v1").decode()
    finally:
        hub.stop()
    check_shared_edits(workspace, report)
    assert report["pushed"]["edits"] == ["france", "germany"]  # list_edits read back from the Hub, revision v1
    assert len(weights) > 0
    assert 'PeftModel.from_pretrained(base, "tester/capitals", revision="v1")' in card
    assert "Pushed to tester/capitals (revision v1)" in proc.stdout


def test_share_edit_refuses_to_push_offline(workspace):
    proc, _ = run_example("share_edit.py", workspace, "--push", "tester/capitals", check=False)
    assert proc.returncode != 0 and "HF_HUB_OFFLINE" in proc.stderr


def test_examples_refuse_a_missing_facts_file(workspace, tmp_path):
    proc, _ = run_example("edit_one_fact.py", tmp_path, "--model", str(workspace / "llama"), check=False)
    assert proc.returncode != 0
    assert "no such file" in proc.stderr and "EditRequest.to_dict()" in proc.stderr
