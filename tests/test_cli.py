"""`peft-mpn` under bad input: one line on stderr and exit status 2; `--debug` and real bugs keep the traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench import bench_args, bench_folders

import peft_mpn.models
from peft_mpn.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return bench_folders(tmp_path_factory.mktemp("cli"))


def refused(capsys, args: list[str]) -> str:
    """The message `peft-mpn ARGS` stops with: one line, last on stderr, exit status 2, no traceback."""
    assert main(args) == 2
    error = capsys.readouterr().err
    last = error.splitlines()[-1]  # after the model's loading bar, where it got that far
    assert last.startswith("peft-mpn: error: ") and error.endswith(f"{last}\n") and "Traceback" not in error, error
    return last


def test_bad_arguments_fail_before_loading(setup, tmp_path, capsys):
    output = tmp_path / "results.json"
    for method, extra, message in [
        ("mpn", ["--output", str(tmp_path / "results.txt")], "must be a .json path"),
        ("mpn", ["--editor-option", "no_such_field=1"], "has no field"),
        ("t-patcher", ["--augment-languages", "de"], "augmentation off"),
        ("t-patcher", ["--augment-languages", "--num-edits", "50"], "lower --num-edits"),
        ("icl", ["--augment-languages", "--max-steps", "3"], r"\['max_steps'\] are not applicable to icl"),
        ("icl", ["--augment-languages", "--learning-rate", "0.1"], r"\['learning_rate'\] are not applicable to icl"),
        ("icl", ["--augment-languages", "de"], r"no use for the augmentation languages \['de'\]"),
        ("icl", ["--layer", "0"], "icl has no such block.*Drop --layer"),
        ("lafn", ["--layer", "0"], "lafn has no such block.*Drop --layer"),
        ("ft-l", ["--editor-option", "memory_weight=5"], "FTEditorConfig has no field"),
        ("lafn", ["--editor-option", "locator.topk=5"], r"LocatorConfig \(LAFNEditorConfig.locator\) has no field"),
        # the nested config checks values
        ("lafn", ["--editor-option", "locator.lowest_layer_fraction=2"], r"lowest_layer_fraction is a fraction"),
        ("mpn", ["--editor-option", "patch_plan.size=2"], r"MPNEditorConfig.patch_plan is str, not a config"),
        ("mpn", ["--data", str(tmp_path / "nowhere")], r"No file or folder at .*nowhere"),
        ("mpn", ["--model", str(tmp_path / "no-model.gguf")], r"no-model\.gguf"),
        ("mpn", ["--device", "cuda:63"], r"torch sees \d+ CUDA device\(s\)\. Use --device cpu"),
        ("mpn", ["--device", "gpu"], r"'gpu' is not a device name.*e\.g\. cpu, cuda"),
    ]:
        assert re.search(message, refused(capsys, bench_args(setup, output, method, *extra))), message
    assert not list(tmp_path.iterdir())  # nothing written


def test_debug_shows_the_traceback_and_a_bug_is_never_one_line(setup, tmp_path, monkeypatch):
    args = bench_args(setup, tmp_path / "results.json", "t-patcher", "--augment-languages", "de")
    with pytest.raises(ValueError, match="augmentation off"):
        main(["--debug", *args])
    monkeypatch.setenv("PEFT_MPN_DEBUG", "1")
    with pytest.raises(ValueError, match="augmentation off"):
        main(args)
    monkeypatch.delenv("PEFT_MPN_DEBUG")

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(peft_mpn.models, "load_model", bug)
    with pytest.raises(KeyError, match="a bug"):
        main(bench_args(setup, tmp_path / "results.json", "icl", "--augment-languages"))


def test_classification_data_is_refused_before_the_model_loads(tmp_path, capsys):
    rows = ["language\tgold_label\tsentence1\tsentence2\tpairID"]
    rows += [f"{lang}\tneutral\ta dog runs\tan animal moves\t{pair}" for pair in ("1", "2") for lang in ("en", "de")]
    (tmp_path / "xnli.test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["bench", "--method", "mpn", "--dataset", "xnli", "--data", str(tmp_path), "--augment-languages"]
    args += ["--model", str(tmp_path / "no-model"), "--output", str(tmp_path / "out" / "results.json")]
    assert re.search("class label.*generation cases.*classifier_task", refused(capsys, args))
    assert not (tmp_path / "out").exists()


def test_version_is_the_installed_distribution_s(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"peft-mpn {metadata.version('peft-mpn')}"


REPO = Path(__file__).resolve().parents[1]


def console_script(args: list[str], report: str, env: dict[str, str] | None = None) -> str:
    """Run the ``peft-mpn`` console script (``startup/peft_mpn_cli.py``) with `args` in a fresh interpreter, then
    print `report` (a Python expression); returns what it printed."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['peft-mpn', *{args!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'startup' / 'peft_mpn_cli.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('REPORT', {report})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=True
    )
    return done.stdout


def test_the_console_script_answers_help_and_version_without_importing_the_package_or_torch():
    heavy = "sorted(m for m in ('peft_mpn', 'peft', 'transformers', 'torch') if m in sys.modules)"
    for args in (["--help"], ["--online", "-h"], ["--version"]):
        out = console_script(args, heavy)
        assert out.splitlines()[-1] == "REPORT []", out
    assert "{demo,bench,edit,evaluate,push,list,compose}" in console_script(["--help"], "1")


def test_the_console_script_s_help_is_the_whole_parser_s(capsys):
    from peft_mpn.cli import build_parser, top

    with pytest.raises(SystemExit):
        top.answer(["--help"])
    assert capsys.readouterr().out == build_parser().format_help()


def test_the_console_script_turns_the_hub_off_before_huggingface_hub_reads_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    report = "__import__('huggingface_hub').constants.HF_HUB_OFFLINE"
    missing = str(tmp_path / "no-adapter")
    assert console_script(["list", missing], report, env).splitlines()[-1] == "REPORT True"
    assert console_script(["--online", "list", missing], report, env).splitlines()[-1] == "REPORT False"


def test_the_installed_command_is_the_console_script():
    from importlib import metadata

    (script,) = metadata.entry_points(group="console_scripts", name="peft-mpn")
    assert script.value == "peft_mpn_cli:main"
