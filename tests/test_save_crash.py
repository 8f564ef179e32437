"""`save_edit` killed at any step: the folder holds the complete old or the complete new save, never a mix, and the
next save removes what the killed one left behind."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from tiny import logits, sample_inputs, tiny_model

import peft_mpn
from peft_mpn import LAFNConfig
from peft_mpn.hub import list_edits, save_edit

BASE = "tiny-random/gpt2"
DATE = "2025-01-01T00:00:00+00:00"


def base_model():
    model = tiny_model("gpt2")
    model.name_or_path = BASE
    return model


def record(case_id: str) -> dict:
    return {"case_id": case_id, "edit_language": "en", "prompt": "the sky is", "target": "blue", "date": DATE}


def lafn(neurons: dict[int, list[int]], seed: int):
    torch.manual_seed(seed)
    return get_peft_model(base_model(), LAFNConfig(neurons=neurons, init_lafn_weights=False))


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


@pytest.fixture(scope="module")
def saves(tmp_path_factory):
    """An old and a new adapter (different config, weights and manifest) and the folders a whole save gives."""
    root = tmp_path_factory.mktemp("saves")
    old, new = lafn({0: [3, 17]}, seed=1), lafn({0: [5], 2: [8, 9]}, seed=2)
    save_edit(old, root / "old", [record("old")])
    save_edit(new, root / "new", [record("new")])
    return {"old": old, "new": new, "old_files": files(root / "old"), "new_files": files(root / "new")}


def save_killed_at(step: int, model, folder: Path, edits: list) -> bool:
    """Run `save_edit` in a forked child that SIGKILLs itself just before its `step`-th rename, replace, unlink or
    rmdir (no clean-up runs, as with a real kill). Whether it was killed (False: it finished before that step)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            calls = itertools.count(1)

            def killing(call):
                def wrapper(*args, **kwargs):
                    if next(calls) == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return call(*args, **kwargs)

                return wrapper

            for name in ("rename", "replace", "unlink", "rmdir"):
                setattr(os, name, killing(getattr(os, name)))
            save_edit(model, folder, edits)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"the save failed at step {step}"
    return os.WIFSIGNALED(status)


def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_folder(saves, tmp_path):
    folder = tmp_path / "edit"
    save_edit(saves["old"], folder, [record("old")])
    inputs = sample_inputs("gpt2")
    found = []
    for step in itertools.count(1):
        killed = save_killed_at(step, saves["new"], folder, [record("new")])
        # as a loader finds it: the manifest, the adapter, and every file of one complete save
        [edit] = list_edits(folder)
        loaded = peft_mpn.from_pretrained(base_model(), folder)
        state = {name: data for name, data in files(folder).items() if not name.endswith(".lock")}
        assert state in (saves["old_files"], saves["new_files"]), f"killed before step {step}: a mixed folder"
        which = "new" if state == saves["new_files"] else "old"
        assert edit["case_id"] == which, step
        assert torch.equal(logits(loaded, inputs), logits(saves[which], inputs)), step
        found.append(which)
        # the next save removes what the killed one left: staging folders, the old folder, lock files
        save_edit(saves["old"], folder, [record("old")])
        assert sorted(path.name for path in tmp_path.iterdir()) == ["edit"], f"left behind by a kill at step {step}"
        assert files(folder) == saves["old_files"]
        if not killed:
            break
    assert found[-1] == "new" and "old" in found and found.count("new") > 1, found  # killed before and after the swap


def test_a_save_keeps_other_files_and_removes_temporary_folders_of_old_killed_saves(saves, tmp_path):
    folder = tmp_path / "edit"
    save_edit(saves["old"], folder, [record("old")])
    (folder / "notes.txt").write_text("mine")
    (folder / "plots").mkdir()
    (folder / "plots" / "loss.png").write_bytes(b"png")
    (folder / "adapter_model.bin").write_bytes(b"stale weights")  # would shadow nothing, but belongs to no save
    legacy = tmp_path / ".edit.k2j3h4x_"  # the temporary folder a killed save of peft-mpn 0.1.0 left
    (legacy / "other").mkdir(parents=True)
    (legacy / "other" / "adapter_config.json").write_text("{}")
    (legacy / "README.md").write_text("card")
    user = tmp_path / ".edit.settings"  # named like one, but not a save's
    user.mkdir()
    (user / "config.toml").write_text("x = 1")
    save_edit(saves["new"], folder, [record("new")])
    assert sorted(path.name for path in tmp_path.iterdir()) == [".edit.settings", "edit"]
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "plots" / "loss.png").read_bytes() == b"png"
    assert {name: data for name, data in files(folder).items() if name != "notes.txt"} == saves["new_files"]


def test_a_save_through_a_symlink_replaces_the_folder_it_points_to(saves, tmp_path):
    real = tmp_path / "real"
    save_edit(saves["old"], real, [record("old")])
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    save_edit(saves["new"], tmp_path / "link", [record("new")])
    assert (tmp_path / "link").is_symlink() and files(real) == saves["new_files"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "real"]
