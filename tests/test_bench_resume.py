"""A sequential benchmark interrupted mid-stream resumes without redoing finished edits, to the same results."""

from __future__ import annotations

import pytest
import torch
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.bench import run_benchmark
from peft_mpn.editing import FTEditor, ICLEditor, LAFNEditor, LAFNEditorConfig, MPNEditor, MPNEditorConfig
from peft_mpn.locating import LocatorConfig

FACTS = [
    ("the capital of france is", "lyon", "france"),
    ("the capital of germany is", "rome", "germany"),
    ("who wrote hamlet", "paris", "hamlet"),
    ("the river flows", "south", "river"),
    ("the bird sings in the", "rain", "bird"),
    ("a cat sat on the", "mat", "cat"),
]


def requests() -> list[EditRequest]:
    return [
        EditRequest.single(prompt, target, subject=subject, case_id=subject, locality_prompt="the sky is",
                           locality_answer="blue")
        for prompt, target, subject in FACTS
    ]  # fmt: skip


def run(checkpoint, **kwargs) -> dict:
    return run_benchmark(
        tiny_model("llama"), make_tokenizer(), requests(), method="mpn", num_edits=4, memory_cases=2,
        sequential=True, prompt_format="raw", generation=None, checkpoint=checkpoint, checkpoint_every=1,
        progress=False, **kwargs,
    )  # fmt: skip


def without_seconds(results: dict) -> tuple:
    edits = [{k: v for k, v in record.items() if k != "seconds"} for record in results["edits"]]
    return edits, results["metrics"], results["per_language"], results["per_case"]


def interrupted_run(checkpoint, monkeypatch, at_edit: int, **kwargs) -> list:
    """Run until the `at_edit`-th edit starts, then stop as a Ctrl-C would; the case ids of the edits begun."""
    calls = []
    original = MPNEditor.edit_batch

    def stops(self, batch):
        calls.append(batch[0].case_id)
        if len(calls) == at_edit:
            raise KeyboardInterrupt
        return original(self, batch)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(MPNEditor, "edit_batch", stops)
        run(checkpoint, **kwargs)
    return calls


def test_an_interrupted_stream_resumes_to_the_results_of_an_uninterrupted_one(tmp_path, monkeypatch):
    uninterrupted = run(tmp_path / "once.pt")
    assert all(record["steps"] >= 0 and record["patches_added"] >= 0 for record in uninterrupted["edits"])
    assert not (tmp_path / "once.pt").exists()  # removed when the run finished

    checkpoint = tmp_path / "resumed.pt"
    calls = interrupted_run(checkpoint, monkeypatch, at_edit=3)
    assert checkpoint.exists()
    original = MPNEditor.edit_batch
    edited_again = []
    monkeypatch.setattr(
        MPNEditor, "edit_batch", lambda self, b: edited_again.append(b[0].case_id) or original(self, b)
    )
    resumed = run(checkpoint)
    assert calls[:2] == uninterrupted["case_ids"][:2]
    assert edited_again == uninterrupted["case_ids"][2:]  # only the edits that had not finished
    assert without_seconds(resumed) == without_seconds(uninterrupted)
    assert not checkpoint.exists()


def test_a_checkpoint_of_another_run_is_refused_not_mixed_in(tmp_path, monkeypatch):
    checkpoint = tmp_path / "other.pt"
    interrupted_run(checkpoint, monkeypatch, at_edit=2)
    with pytest.raises(ValueError, match="belongs to another run"):
        run(checkpoint, seed=7)


@pytest.mark.parametrize("editor_class", [MPNEditor, FTEditor, ICLEditor, LAFNEditor])
def test_an_editor_restored_from_its_state_edits_on_exactly_like_the_original(editor_class):
    tokenizer = make_tokenizer()
    facts = requests()

    def build():
        model = tiny_model("llama")
        if editor_class is MPNEditor:
            editor = MPNEditor(model, tokenizer, MPNEditorConfig(augment_languages=[]), progress=False)
            editor.add_unrelated_from_requests(facts[4:])
            return editor
        if editor_class is LAFNEditor:  # the facts have no paraphrases: locate on each prompt alone
            locator = LocatorConfig(top_k=16, require_paraphrases=False)
            config = LAFNEditorConfig(max_steps=60, learning_rate=0.05, locator=locator)
            return LAFNEditor(model, tokenizer, config, unrelated_texts=["the sky is blue"], progress=False)
        return editor_class(model, tokenizer, progress=False)

    first = build()
    first.edit_stream(facts[:2])
    state = first.state_dict()
    if editor_class is LAFNEditor:
        assert state["neurons"] and all(d["down"].abs().sum() > 0 for d in state["deltas"].values())
    second = build()
    second.load_state_dict(state)
    assert first.edit(facts[2]).status == second.edit(facts[2]).status
    a = first.model.state_dict() if editor_class is not ICLEditor else {}
    b = second.model.state_dict() if editor_class is not ICLEditor else {}
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    if editor_class is ICLEditor:
        assert [f.text for f in first.model.facts] == [f.text for f in second.model.facts]
