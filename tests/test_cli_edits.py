"""`peft-mpn edit | list | evaluate | compose | push`: an adapter's life from the shell, on a tiny model and the
loopback Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from hub_server import FakeHub
from test_bench import bench_folders

from peft_mpn.cli import main

TOKEN = "hf_cli_token"
FACTS = [
    {
        "prompt": "the capital of france is",
        "target": "lyon",
        "parallel": {"de": ["die hauptstadt von frankreich ist", "lyon"]},
        "case_id": "france",
        "locality_prompt": "a cat sat on the",
        "locality_answer": "mat",
    },
    {"prompt": "the river flows", "target": "south", "case_id": "river"},
]
TUNED = ["--editor-option", "learning_rate=0.05", "--prompt-format", "raw", "--no-progress"]  # tiny vocabulary: raw


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    root, model_dir, _ = bench_folders(tmp_path_factory.mktemp("cli_edits"))
    facts = root / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(fact) for fact in FACTS) + "\n", encoding="utf-8")
    unrelated = root / "unrelated.txt"
    unrelated.write_text("the weather is nice today\nnumbers go up\nhello world again\n", encoding="utf-8")
    return {"root": root, "model": str(model_dir), "facts": str(facts), "unrelated": str(unrelated)}


def run(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def run_online(hub: FakeHub, home, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)  # the command decides: push and org/name ids go online
    return subprocess.run(
        [sys.executable, "-m", "peft_mpn.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_edit_list_evaluate_compose_push_list(shell, capsys, tmp_path):
    model, out = shell["model"], tmp_path / "out"
    edited = run(
        capsys, "edit", "--model", model, "--facts", shell["facts"], "--unrelated", shell["unrelated"],
        "--augment-languages", "de", "--evaluate", "--output", str(out / "capitals"), *TUNED,
    )  # fmt: skip
    assert "france: " in edited and "river: " in edited and "wrote " in edited
    assert "en (edit)" in edited and "reliability tok / EM / generated" in edited  # --evaluate's table
    card = (out / "capitals" / "README.md").read_text(encoding="utf-8")
    assert "model-index" in card  # --evaluate puts the scores in the card's metadata
    from peft_mpn.hub import list_edits

    # the manifest keeps the user's prompt and the format it was put to the model in, which evaluate reads back
    assert [(r["prompt"], r["prompt_format"]) for r in list_edits(out / "capitals")][0] == (
        FACTS[0]["prompt"],
        "{prompt}",
    )
    listed = run(capsys, "list", str(out / "capitals"))
    assert "france\ten\tmpn\tthe capital of france is -> lyon" in listed and listed.rstrip().endswith("2 edits")

    judged = run(capsys, "evaluate", str(out / "capitals"), "--model", model, "--output", str(tmp_path / "s.json"))
    scores = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert scores["num_cases"] == 2 and scores["reliability_em"] is not None and "en (edit)" in judged

    one = run(
        capsys, "edit", "--model", model, "--prompt", "the sky is", "--target", "north", "--unrelated",
        shell["unrelated"], "--output", str(out / "sky"), *TUNED,
    )  # fmt: skip
    assert "'the sky is': " in one
    composed = run(
        capsys, "compose", str(out / "capitals"), str(out / "sky"), "--model", model, "--output", str(out / "all")
    )
    assert "3 edits from 2 adapters" in composed
    assert run(capsys, "list", str(out / "all")).rstrip().endswith("3 edits")

    hub, home = FakeHub(tokens={TOKEN}).start(), tmp_path / "hf_home"
    try:
        refused = run_online(hub, home, "push", str(out / "all"), "tester/all", "--model", model)
        assert refused.returncode == 2 and "--base-model org/name" in refused.stderr.splitlines()[-1]
        pushed = run_online(
            hub, home, "push", str(out / "all"), "tester/all", "--model", model, "--base-model", "tiny-random/gemma3",
            "--revision", "v1", "--no-progress",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert "pushed " in pushed.stdout and "tester/all@v1" in pushed.stdout
        remote = run_online(hub, home, "list", "tester/all", "--revision", "v1")
        assert remote.returncode == 0, remote.stderr
        card = hub.file("tester/all", "README.md", revision="v1").decode()
        config = json.loads(hub.file("tester/all", "adapter_config.json", revision="v1"))
    finally:
        hub.stop()
    assert remote.stdout.rstrip().endswith("3 edits") and "-\ten\tmpn\tthe sky is -> north" in remote.stdout
    assert yaml.safe_load(card.split("---")[1])["base_model"] == "tiny-random/gemma3"
    assert config["base_model_name_or_path"] == "tiny-random/gemma3"


def test_bad_facts_fail_in_one_line_before_the_model_loads(shell, capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "the sky is"}\n', encoding="utf-8")
    for args, message in [
        (["--facts", str(bad)], "fact 1: give 'prompt' and 'target'"),
        (["--facts", str(tmp_path / "none.json")], "No facts file at"),
        ([], "Nothing to edit: give --prompt and --target"),
        (["--facts", str(bad), "--prompt", "x", "--target", "y"], "either with --facts FILE or with --prompt"),
    ]:
        assert main(["edit", "--model", str(tmp_path / "no-model"), "--output", str(tmp_path / "o"), *args]) == 2
        assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_online_only_where_the_hub_is_named():
    from peft_mpn.cli.top import names_hub as _names_hub

    assert _names_hub(["push", "out/all", "me/all"]) and _names_hub(["list", "me/capitals"])
    assert _names_hub(
        ["edit", "--model", "google/gemma-3-270m", "--output", "out/x", "--prompt", "p", "--target", "t"]
    )
    assert not _names_hub(["edit", "--output", "out/x", "--prompt", "AC/DC", "--target", "t"])
    assert not _names_hub(["bench", "--method", "mpn", "--data", "../shared/data/mzsre", "--output", "r/x.json"])
