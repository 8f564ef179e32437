"""LAFN with subject gates: an edit's neurons act only once the text has mentioned the edit's subject."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from tiny import capital, make_tokenizer, tiny_model

from peft_mpn.editing import LAFNEditor, LAFNEditorConfig
from peft_mpn.locating import LocatorConfig
from peft_mpn.metrics import score_targets

UNRELATED = ["the weather is nice today", "a cat sat on the mat", "hello world again", "the sky is blue"]


FRANCE = capital("france", "lyon", "frankreich")
NEIGHBOURS = [capital("germany", "berlin", "deutschland"), capital("italy", "rome", "italy")]


def editor(seed: int = 1, **config) -> LAFNEditor:
    settings = {
        "max_steps": 150,
        "learning_rate": 0.05,
        "locator": LocatorConfig(top_k=16, language_vote=0.5, require_paraphrases=False),
        **config,
    }
    ed = LAFNEditor(tiny_model("llama", seed=seed), make_tokenizer(), LAFNEditorConfig(**settings), progress=False)
    ed.add_unrelated_texts(UNRELATED)
    ed.add_unrelated_from_requests(NEIGHBOURS)
    return ed


def outputs(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(**tokenizer(text, return_tensors="pt")).logits[0] for text in texts]


def neighbour_questions() -> list[str]:
    return [view.prompt for request in NEIGHBOURS for view in request.views.values()]


def test_a_gated_edit_holds_and_leaves_unrelated_text_and_neighbour_questions_exactly_as_they_were():
    # prompts only: a linear gate on this random 32-wide model cannot also be shut on every generated token
    ed = editor(subject_gate_continuations=0)
    texts = UNRELATED + neighbour_questions()
    before = outputs(ed.model, ed.tokenizer, texts)
    result = ed.edit(FRANCE)
    assert result.status == "edited", result
    pairs = [(view.prompt, view.target) for view in FRANCE.views.values()]
    assert all(score.exact for score in score_targets(ed.model, ed.tokenizer, pairs))
    after = outputs(ed.model, ed.tokenizer, texts)
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # bit for bit: the gates stay shut there


def test_without_gates_the_same_edit_moves_unrelated_text():
    """The constructed case the gates exist for: the paper's update acts wherever its neurons are active."""
    ed = editor(subject_gate_depth=None)
    before = outputs(ed.model, ed.tokenizer, UNRELATED)
    assert ed.edit(FRANCE).status == "edited"
    after = outputs(ed.model, ed.tokenizer, UNRELATED)
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


def test_gated_neurons_lie_above_the_gate_and_the_adapter_refuses_to_merge():
    ed = editor()
    assert ed.edit(FRANCE).status == "edited"
    gate_layer = ed.tuner.peft_config["default"].gate_layer
    assert gate_layer == 0 and min(ed.tuner.neuron_sets()) > gate_layer  # int(0.25 * 3 blocks)
    with pytest.raises(ValueError, match="subject gates"):
        ed.model.merge_and_unload()


def test_a_saved_gated_edit_loads_with_the_same_outputs(tmp_path):
    ed = editor()
    assert ed.edit(FRANCE).status == "edited"
    texts = [FRANCE.views["en"].prompt, *UNRELATED[:2], *neighbour_questions()[:2]]
    expected = outputs(ed.model, ed.tokenizer, texts)
    ed.model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_model("llama", seed=1), tmp_path)
    assert loaded.peft_config["default"].gate_layer == 0
    assert all(torch.equal(a, b) for a, b in zip(expected, outputs(loaded, ed.tokenizer, texts)))


def test_a_stream_resumed_from_a_checkpoint_gives_the_same_adapter():
    second = capital("spain", "rome", "spain")
    whole = editor()
    whole.edit(FRANCE)
    whole.edit(second)
    first = editor()
    first.edit(FRANCE)
    resumed = editor()
    resumed.load_state_dict(first.state_dict())
    resumed.edit(second)
    expected, got = whole.state_dict(), resumed.state_dict()
    assert expected["neurons"] == got["neurons"]
    for name, kinds in expected["deltas"].items():
        assert set(kinds) >= {"down", "subject_keys", "subject_bias"}
        assert all(torch.equal(tensor, got["deltas"][name][kind]) for kind, tensor in kinds.items())


def test_the_gate_memory_holds_what_the_model_writes_after_each_unrelated_text():
    ed = editor()
    assert ed.edit(FRANCE).status == "edited"
    fitter = ed.gates._fitter
    text = UNRELATED[1]
    with ed._disabled(), torch.no_grad():
        ids = ed.tokenizer(text, return_tensors="pt")
        written = ed.model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    with ed._disabled():
        got = fitter.continuation_inputs([text], 4)
    with torch.no_grad(), fitter.gate.record_inputs() as recorded:
        ed.model(input_ids=written)
    new = written[0, ids["input_ids"].shape[1] :].tolist()
    ends = {ed.tokenizer.pad_token_id, ed.tokenizer.eos_token_id}
    kept = next((i for i, token in enumerate(new) if token in ends), len(new))  # up to the model's end of text
    start = ids["input_ids"].shape[1]
    expected = recorded[-1][0, start : start + kept].float()
    assert kept > 0 and got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_gated_stream_keeps_every_edit_and_leaves_unrelated_text_as_it_was():
    ed = editor(subject_gate_continuations=0)
    before = outputs(ed.model, ed.tokenizer, UNRELATED)
    spain = capital("spain", "rome", "spain")
    assert [result.status for result in ed.edit_stream([FRANCE, spain])] == ["edited", "edited"]
    pairs = [(view.prompt, view.target) for request in (FRANCE, spain) for view in request.views.values()]
    assert all(score.exact for score in score_targets(ed.model, ed.tokenizer, pairs))  # the first edit still holds
    assert all(torch.equal(a, b) for a, b in zip(before, outputs(ed.model, ed.tokenizer, UNRELATED)))


def test_editing_a_loaded_gated_adapter_keeps_its_gate_block(tmp_path):
    first = editor(subject_gate_depth=0.34)  # block 1 of 3
    assert first.edit(FRANCE).status == "edited"
    first.model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_model("llama", seed=1), tmp_path, is_trainable=True)
    settings = {"max_steps": 150, "learning_rate": 0.05, "locator": first.config.locator}
    second = LAFNEditor(loaded, make_tokenizer(), LAFNEditorConfig(**settings), progress=False)  # depth 0.25: block 0
    second.add_unrelated_texts(UNRELATED)
    second.add_unrelated_from_requests(NEIGHBOURS)
    assert second.edit(capital("spain", "rome", "spain")).status == "edited"
    assert second.tuner.peft_config["default"].gate_layer == 1 and min(second.tuner.neuron_sets()) > 1
