"""`benchmarks/run_results.sh`: every command it lists parses and validates against the current `peft-mpn bench`.

Nothing heavy runs: the script is only asked for its commands (``--dry-run``), and each command goes through the
real CLI up to the point where it would load the data and the model.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
from tiny import REPO_ROOT, load_benchmark_script

import peft_mpn.data
import peft_mpn.models
from peft_mpn import EditRequest
from peft_mpn.cli import main
from peft_mpn.editing import EDITORS

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="run_results.sh is a bash script")
SCRIPT = REPO_ROOT / "benchmarks" / "run_results.sh"


class Validated(Exception):
    """Raised where `peft-mpn bench` would load the model: every check before it has passed."""


def listed_commands(tmp_path, *flags: str) -> list[str]:
    env = {**os.environ, "DATA": str(tmp_path / "data"), "OUT": str(tmp_path / "out")}
    env.pop("EDITS", None)
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *flags], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


@pytest.fixture
def cli(monkeypatch):
    """`peft-mpn bench ARGS` through the real parser and checks; returns what it asked the data loader for."""
    loads = []

    def load_edit_requests(data, dataset, **kwargs):
        loads.append({"data": str(data), "dataset": dataset, **kwargs})
        return [EditRequest.single("the capital of france is", "lyon", case_id="0")]  # bench refuses no cases

    def load_model(*args, **kwargs):
        raise Validated

    monkeypatch.setattr(peft_mpn.data, "load_edit_requests", load_edit_requests)
    monkeypatch.setattr(peft_mpn.models, "load_model", load_model)

    def run(line: str) -> dict:
        words = shlex.split(line)
        assert words[:2] == ["peft-mpn", "bench"], line
        with pytest.raises(Validated):
            main(words[1:])
        return loads[-1]

    return run


def option(line: str, name: str) -> str:
    words = shlex.split(line)
    return words[words.index(name) + 1]


def test_every_listed_run_is_a_valid_bench_command(tmp_path, cli):
    *lines, classifier = listed_commands(tmp_path)
    assert classifier == (
        f"python benchmarks/classifier_task.py --data {tmp_path / 'data' / 'bmike53' / 'counterfact'} "
        f"--output {tmp_path / 'out' / 'classifier_task.json'}"
    )
    parsed = load_benchmark_script("classifier_task").parse_args(shlex.split(classifier)[2:])
    assert parsed.output.endswith("classifier_task.json")
    outputs = [option(line, "--output") for line in lines]
    assert len(set(outputs)) == len(lines) == 58  # 8 methods (ungated LAFN too) x 3 x 2, + MPN disjoint, FT-M aug.
    assert {option(line, "--method") for line in lines} == set(EDITORS)
    assert all(output.startswith(str(tmp_path / "out")) and output.endswith(".json") for output in outputs)
    for line in lines:
        load = cli(line)
        assert load["data"].startswith(str(tmp_path / "data")) and option(line, "--num-edits") == "100"
        if load["dataset"] == "bmike53":
            judged = option(line, "--eval-languages")  # the first of them
            assert load["split"] in ("zsre", "counterfact") and load["languages"][0] == judged == "en"
            assert len(set(load["languages"])) == (21 if "mpn-disjoint" in line else 16)  # + cs bg fa da ca
    augmented = [line for line in lines if "ft-m-augmented" in line]
    assert len(augmented) == 6 and all("--augment-languages de fr es ru zh" in line for line in augmented)
    assert sum("--sequential" in line for line in lines) == len(lines) // 2
    ungated = [line for line in lines if "lafn-ungated" in line]
    assert len(ungated) == 6 and all("--editor-option subject_gate_depth=null" in line for line in ungated)


def test_calibration_is_ten_single_mode_mzsre_edits_per_method(tmp_path, cli):
    lines = listed_commands(tmp_path, "--calibrate")
    assert sorted(option(line, "--method") for line in lines) == sorted([*EDITORS, "lafn"])  # + ungated LAFN
    for line in lines:
        assert cli(line)["dataset"] == "mzsre"
        assert option(line, "--num-edits") == "10" and "--sequential" not in line
        assert option(line, "--output").endswith("_single.json")


def test_finished_runs_are_skipped_interrupted_ones_rerun_and_unknown_flags_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("mzsre_icl_single.json", "mzsre_icl_single.md", "mzsre_icl_single.png", "mzsre_mpn_single.json"):
        (out / name).write_text("{}")  # MPN's run stopped after its JSON, before its table and plot
    lines = listed_commands(tmp_path, "--calibrate")
    assert f"skip {out / 'mzsre_icl_single.json'} (exists)" in lines and len(lines) == len(EDITORS) + 1
    assert not any("mzsre_mpn_single" in line and line.startswith("skip") for line in lines)
    assert [option(line, "--output") for line in lines if "--method mpn" in line] == [
        str(out / "mzsre_mpn_single.json")
    ]
    done = subprocess.run(["bash", str(SCRIPT), "--dry-rum"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument: --dry-rum" in done.stderr


def test_the_headline_runs_every_method_on_thirty_counterfact_cases(tmp_path, cli):
    lines = listed_commands(tmp_path, "--headline")
    assert sorted(option(line, "--method") for line in lines) == sorted([*EDITORS, "lafn"])  # + ungated LAFN
    for line in lines:
        load = cli(line)
        assert load["split"] == "counterfact" and len(load["languages"]) == 16
        assert option(line, "--num-edits") == "30" and "--sequential" not in line
        assert option(line, "--output").startswith(str(tmp_path / "out" / "headline"))


def test_the_lifelong_streams_are_a_thousand_edits_from_both_bmike_splits_with_curves(tmp_path, cli):
    lines = listed_commands(tmp_path, "--lifelong")
    names = [option(line, "--output").rsplit("/", 1)[1] for line in lines]
    assert names == [f"bmike53-zsre+counterfact_{m}_sequential.json" for m in ("mpn", "t-patcher", "ft-m-augmented")]
    for line in lines:
        load = cli(line)
        assert load["split"] == "zsre+counterfact" and load["languages"] == "en de fr es ru zh ja ar".split()
        assert option(line, "--num-edits") == "1000" and "--sequential" in line
        assert option(line, "--curve-every") == "100" and option(line, "--judge-sample") == "50"
    assert "--method ft-m --augment-languages de fr es ru zh" in lines[2]
