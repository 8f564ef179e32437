"""A stream that edits the same fact twice: the later edit wins, in the adapter and in the manifest."""

from __future__ import annotations

import json

import torch
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.hub import save_edit
from peft_mpn.metrics import score_targets

PROMPT = "the capital of france is"


def answer(editor: MPNEditor, tokenizer, target: str) -> bool:
    (score,) = score_targets(editor.model, tokenizer, [(PROMPT, target)])
    return score.predicted == score.target


def editor_with_first_edit():
    tokenizer = make_tokenizer()
    config = MPNEditorConfig(augment_languages=[], neighbour_negatives=0)
    editor = MPNEditor(tiny_model("llama"), tokenizer, config, progress=False)
    editor.add_unrelated_texts(["a cat sat on the mat", "the sky is blue", "who wrote hamlet"])
    first = editor.edit(EditRequest.single(PROMPT, "lyon", case_id="first"))
    assert first.success and answer(editor, tokenizer, "lyon")
    return editor, tokenizer, first


def test_editing_a_fact_again_replaces_the_earlier_edit():
    editor, tokenizer, first = editor_with_first_edit()
    other = editor.edit(EditRequest.single("who wrote hamlet", "rome", case_id="other"))
    assert other.success
    patches_before = editor.tuner.num_patches(editor.adapter_name)
    second = editor.edit(EditRequest.single("The capital of  France is", "paris", case_id="second"))
    assert second.status == "edited" and second.replaced == ["first"]
    assert answer(editor, tokenizer, "paris") and not answer(editor, tokenizer, "lyon")
    # the earlier patches are gone: only the other edit's and the new one's remain
    assert editor.tuner.num_patches(editor.adapter_name) == patches_before - first.patches_added + second.patches_added
    (hamlet,) = score_targets(editor.model, tokenizer, [("who wrote hamlet", "rome")])
    assert hamlet.predicted == hamlet.target  # the other edit still holds


def test_a_repeated_edit_that_cannot_be_made_leaves_the_earlier_one_bit_identical():
    editor, tokenizer, _ = editor_with_first_edit()
    before = {name: tensor.clone() for name, tensor in editor.model.state_dict().items()}
    editor.config.max_steps, editor.config.warm_start = 1, False
    result = editor.edit(EditRequest.single(PROMPT, "paris", case_id="second"))
    assert result.status == "unfixed" and result.patches_added == 0 and result.replaced == []
    after = editor.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[name], before[name]) for name in before)
    assert answer(editor, tokenizer, "lyon")


def test_the_manifest_says_which_edit_a_later_one_superseded(tmp_path):
    editor, _, _ = editor_with_first_edit()
    requests = [
        EditRequest.single(PROMPT, "lyon", case_id="first"),
        EditRequest.single("who wrote hamlet", "rome", case_id="other"),
        EditRequest.single("The capital of France is", "paris", case_id="second"),
    ]
    folder = save_edit(editor.model, tmp_path / "stream", requests)
    records = json.loads((folder / "edits.json").read_text())["edits"]
    assert [record.get("superseded_by") for record in records] == ["second", None, None]
