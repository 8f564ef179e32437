"""Edit adapters under bad input: damaged `edits.json`, wrong types, parallel appends, folders missing a file, a
source that fails to load while composing, a Hub revision that does not exist."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from hub_server import FakeHub
from peft import get_peft_model
from tiny import logits, run_fresh, sample_inputs, tiny_model

import peft_mpn
from peft_mpn import LAFNConfig, MPNConfig
from peft_mpn.hub import (
    AdapterCompositionError,
    EditManifestError,
    compose_adapters,
    list_edits,
    write_edit_manifest,
)

BASE = "tiny-random/gpt2"
RECORD = {
    "case_id": "france",
    "edit_language": "en",
    "prompt": "the capital of france is",
    "target": "lyon",
    "languages": ["en"],
    "method": "mpn",
    "date": "2025-01-01T00:00:00+00:00",
}


def base_model():
    model = tiny_model("gpt2")
    model.name_or_path = BASE
    return model


def adapter_folder(folder: Path) -> Path:
    """A saved MPN adapter (no patches yet) with a manifest of one record."""
    get_peft_model(base_model(), MPNConfig()).save_pretrained(folder, save_embedding_layers=False)
    write_edit_manifest(folder, [RECORD])
    return folder


def manifest(edits: object) -> bytes:
    return json.dumps({"format": "peft-mpn/edits", "version": 1, "edits": edits}).encode()


DAMAGED = [
    (manifest([RECORD]).replace(b"lyon", b"ly\xffon"), "is not UTF-8"),
    (b"[" * 100_000, "nested too deeply"),
    (manifest(["france", "river"]), "edit #0 is a str, not a record object"),
    (manifest([RECORD, {**RECORD, "prompt": 5}]), "edit #1's prompt is int, not a str"),
    (manifest([{**RECORD, "target": None}]), "edit #0's target is NoneType, not a str or an int label"),
    (manifest([{**RECORD, "languages": "en"}]), "edit #0's languages is str, not a list of str"),
]


IDS = ["not-utf8", "deep", "strings", "int-prompt", "no-target", "str-languages"]


@pytest.mark.parametrize("content, problem", DAMAGED, ids=IDS)
def test_a_damaged_manifest_is_refused_naming_its_file(tmp_path, content, problem):
    folder = tmp_path / "edit"
    folder.mkdir()
    (folder / "edits.json").write_bytes(content)
    for read in (list_edits, lambda folder: write_edit_manifest(folder, [RECORD], method="mpn", append=True)):
        with pytest.raises(EditManifestError) as error:
            read(folder)
        message = str(error.value)
        assert str(folder / "edits.json") in message and problem in message, message
        assert "write_edit_manifest" in message and "\n" not in message


@pytest.mark.parametrize("content, problem", DAMAGED[2:], ids=IDS[2:])
def test_compose_adapters_refuses_a_damaged_manifest_naming_its_file(tmp_path, content, problem):
    good, damaged = adapter_folder(tmp_path / "good"), adapter_folder(tmp_path / "damaged")
    (damaged / "edits.json").write_bytes(content)
    with pytest.raises(EditManifestError) as error:
        compose_adapters(base_model(), [good, damaged])
    assert str(damaged / "edits.json") in str(error.value) and problem in str(error.value)


def test_records_of_the_wrong_type_are_refused_before_they_are_written(tmp_path):
    folder = adapter_folder(tmp_path / "edit")
    before = (folder / "edits.json").read_bytes()
    for record, problem in (
        ({**RECORD, "prompt": 5}, "Edit #0's prompt is int, not a str"),
        ({**RECORD, "target": True}, "Edit #0's target is bool, not a str or an int label"),
        ({**RECORD, "languages": [b"en"]}, "Edit #0's languages is a list of bytes, not a list of str"),
    ):
        with pytest.raises(EditManifestError, match=problem):
            write_edit_manifest(folder, [record], append=True)
    assert (folder / "edits.json").read_bytes() == before


def _append(folder: str, worker: int, count: int) -> None:
    for i in range(count):
        write_edit_manifest(folder, [{**RECORD, "case_id": f"{worker}-{i}"}], method="mpn", append=True)


def test_appends_from_several_processes_keep_every_record(tmp_path):
    folder = tmp_path / "edit"
    folder.mkdir()
    fork = multiprocessing.get_context("fork")  # the children only append: nothing to import again
    workers = [fork.Process(target=_append, args=(str(folder), worker, 30)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
    assert [process.exitcode for process in workers] == [0] * 4
    case_ids = [record["case_id"] for record in list_edits(folder)]
    assert sorted(case_ids) == sorted(f"{worker}-{i}" for worker in range(4) for i in range(30))
    for worker in range(4):  # each process's records in the order it appended them
        assert [c for c in case_ids if c.startswith(f"{worker}-")] == [f"{worker}-{i}" for i in range(30)]
    assert [path.name for path in folder.iterdir()] == ["edits.json"]  # no lock or temporary file left behind


LOADS = {
    "from_pretrained": lambda folder: peft_mpn.from_pretrained(base_model(), folder),
    "from_pretrained(str)": lambda folder: peft_mpn.from_pretrained(base_model(), str(folder)),
    "compose_adapters": lambda folder: compose_adapters(base_model(), [folder.parent / "good", folder]),
}


@pytest.mark.parametrize("load", LOADS.values(), ids=LOADS)
def test_an_adapter_folder_missing_a_file_says_which_and_how_to_fix_it(tmp_path, load):
    adapter_folder(tmp_path / "good")
    folder = adapter_folder(tmp_path / "edit")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load(folder)
    message = str(error.value)
    assert str(folder) in message and "adapter_model.safetensors" in message and "save_edit" in message, message
    (folder / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load(folder)
    message = str(error.value)
    assert str(folder) in message and "no adapter_config.json" in message and "save_edit" in message, message


def test_compose_adapters_failing_on_a_later_source_leaves_the_base_model_as_it_was(tmp_path):
    for name, neurons, seed in (("first", {0: [3, 17]}, 1), ("second", {2: [5]}, 2)):
        torch.manual_seed(seed)
        model = get_peft_model(base_model(), LAFNConfig(neurons=neurons, init_lafn_weights=False))
        model.save_pretrained(tmp_path / name, save_embedding_layers=False)
        write_edit_manifest(tmp_path / name, [{**RECORD, "case_id": name}])
    (tmp_path / "second" / "adapter_model.safetensors").write_bytes(b"not safetensors")  # damaged weights
    base = base_model()
    inputs = sample_inputs("gpt2")
    before = logits(base, inputs)
    with pytest.raises(AdapterCompositionError) as error:
        compose_adapters(base, [tmp_path / "first", tmp_path / "second"])
    message = str(error.value)
    assert str(tmp_path / "second") in message and "as it was" in message, message
    # the first adapter is neither attached nor active: the caller's model computes and trains as before
    assert torch.equal(logits(base, inputs), before)
    assert not hasattr(base, "peft_config") and all(param.requires_grad for param in base.parameters())
    assert type(base.transformer.h[0].mlp) is type(base_model().transformer.h[0].mlp)
    alone = compose_adapters(base, [tmp_path / "first"])  # and it takes an adapter as a fresh model does
    reference = compose_adapters(base_model(), [tmp_path / "first"])
    assert torch.equal(logits(alone, inputs), logits(reference, inputs))
    assert not torch.equal(logits(alone, inputs), before)


MISSING_REVISION = """
import json, sys
sys.path.insert(0, sys.argv[1])
import peft_mpn
from huggingface_hub import list_repo_refs
from peft import get_peft_model
from peft_mpn import MPNConfig
from peft_mpn.hub import compose_adapters, list_edits, push_edit_to_hub
from test_manifest import RECORD, base_model

push_edit_to_hub(get_peft_model(base_model(), MPNConfig()), "tester/edit", edits=[RECORD], revision="v1")
loads = {
    "from_pretrained": lambda: peft_mpn.from_pretrained(base_model(), "tester/edit", revision="v2"),
    "compose_adapters": lambda: compose_adapters(base_model(), ["tester/edit"], revision="v2"),
    "list_edits": lambda: list_edits("tester/edit", revision="v2"),
}
result = {}
for name, load in loads.items():
    try:
        load()
        result[name] = "loaded"
    except Exception as error:
        result[name] = str(error)
result["refs"] = [ref.name for ref in list_repo_refs("tester/edit").branches]  # what the message says to run
print(json.dumps(result))
"""


def test_a_hub_revision_that_does_not_exist_is_named_with_how_to_list_them(tmp_path):
    hub = FakeHub(tokens={"hf_test"}).start()
    online = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test"}
    try:
        result = run_fresh(MISSING_REVISION, env={**online, "HF_HUB_DISABLE_TELEMETRY": "1"})
    finally:
        hub.stop()
    assert result.pop("refs") == ["main", "v1"]
    for load, message in result.items():
        assert "Revision 'v2' does not exist in the Hub repo 'tester/edit'" in message, (load, message)
        assert "list_repo_refs('tester/edit')" in message and "adapter_config.json" not in message, (load, message)
