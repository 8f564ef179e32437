"""The LAFN editor on tiny models: located-neuron deltas make an edit hold in every language given."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny import logits, make_tokenizer, next_token, tiny_model

from peft_mpn import EditRequest, EditRequestError
from peft_mpn.editing import LAFNEditor, LAFNEditorConfig
from peft_mpn.locating import LocatorConfig

LOCALITY = ["the weather is nice today", "a cat sat on the mat", "hello world again", "the sky is blue"]
FRANCE = EditRequest.single(
    "the capital of france is",
    "lyon",
    rephrases=["the city that is the capital of france is"],
    parallel={
        "de": {
            "prompt": "die hauptstadt von frankreich ist",
            "target": "lyon",
            "rephrases": ["von frankreich die hauptstadt ist"],
        },
        "fr": {
            "prompt": "la capitale de la france est",
            "target": "lyon",
            "rephrases": ["la ville capitale de la france est"],
        },
    },
)


def editor(
    arch: str = "llama", dtype: torch.dtype = torch.float32, unrelated: list[str] = LOCALITY, **config
) -> LAFNEditor:
    settings = {
        "max_steps": 150,
        "learning_rate": 0.05,
        "locality_weight": 10.0,
        "locator": LocatorConfig(top_k=16, language_vote=0.5),
        "subject_gate_depth": None,  # the paper's LAFN (tests/test_lafn_gates.py: with subject gates)
        **config,
    }
    return LAFNEditor(
        tiny_model(arch).to(dtype),
        make_tokenizer(),
        LAFNEditorConfig(**settings),
        unrelated_texts=unrelated,
        progress=False,
    )


def all_logits(ed: LAFNEditor, texts: list[str]) -> list[torch.Tensor]:
    return [logits(ed.model, dict(ed.tokenizer([text], return_tensors="pt")))[0] for text in texts]


def test_lafn_edits_a_bfloat16_model_in_every_language_given():
    ed = editor(dtype=torch.bfloat16)
    assert ed.edit(FRANCE).status == "edited"
    assert [next_token(ed.model, ed.tokenizer, view.prompt) for view in FRANCE.views.values()] == ["lyon"] * 3


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_multilingual_edit_holds_in_every_language_and_keeps_locality(arch):
    ed = editor(arch)
    before = [logits(ed.model, dict(ed.tokenizer([t], return_tensors="pt")))[0, -1].argmax() for t in LOCALITY]
    result = ed.edit(FRANCE)
    assert result.status == "edited", result
    assert result.languages == ["en", "de", "fr"]
    for view in FRANCE.views.values():
        assert next_token(ed.model, ed.tokenizer, view.prompt) == "lyon"
    after = [logits(ed.model, dict(ed.tokenizer([t], return_tensors="pt")))[0, -1].argmax() for t in LOCALITY]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    # only the located neurons carry deltas, and the adapter records them
    neurons = ed.model.peft_config["default"].neurons
    assert neurons and all(neurons.values())
    assert {k: sorted(v) for k, v in result.neurons.items()} == {k: sorted(v) for k, v in neurons.items()}


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_the_locality_term_is_the_mean_next_token_kl_over_the_texts_each_read_alone(arch):
    ed = editor(arch)
    ed.add_neurons({0: [0, 1, 2], 1: [3, 4]})
    locality = ed.locality_reference()
    assert ed.locality_loss(locality).item() == pytest.approx(0.0, abs=1e-6)  # zero deltas: the unedited model
    torch.manual_seed(0)
    with torch.no_grad():
        for delta in ed.tuner.delta_parameters("default"):
            delta.normal_(std=1.0)
    expected = []
    for text in LOCALITY:  # one text at a time: no padding
        inputs = dict(ed.tokenizer([text], return_tensors="pt"))
        current = logits(ed.model, inputs)[0, -1].log_softmax(-1)
        with ed.model.disable_adapter():
            reference = logits(ed.model, inputs)[0, -1].log_softmax(-1)
        expected.append((reference.exp() * (reference - current)).sum())
    assert len({len(ed.tokenizer(t)["input_ids"]) for t in LOCALITY}) > 1  # the batch is padded
    assert ed.locality_loss(locality).item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    assert ed.locality_loss(locality).item() > 1e-3


def test_cross_lingual_setting_trains_on_english_only():
    ed = editor("llama", train_languages=["en"])
    result = ed.edit(FRANCE)
    assert result.languages == ["en"]
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"


def test_sequential_edits_report_collisions_and_keep_earlier_edits():
    ed = editor("llama")
    first = ed.edit(FRANCE)
    assert first.status == "edited"
    second = ed.edit(
        EditRequest.single(
            "the river flows",
            "south",
            rephrases=["where the river flows"],
            parallel={"de": {"prompt": "der fluss ist", "target": "south", "rephrases": ["wo der fluss ist"]}},
        )
    )
    assert second.status in ("edited", "collided", "unfixed")
    # a neuron located for both facts is reported, not silently retrained
    shared = {layer: set(first.neurons.get(layer, [])) & set(ids) for layer, ids in second.collisions.items()}
    assert all(shared[layer] == set(ids) for layer, ids in second.collisions.items())
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"


def test_reset_and_bad_input():
    ed = editor("llama")
    reference = logits(ed.model, dict(ed.tokenizer([FRANCE.edit.prompt], return_tensors="pt")))
    ed.edit(FRANCE)
    ed.reset()
    assert torch.equal(logits(ed.model, dict(ed.tokenizer([FRANCE.edit.prompt], return_tensors="pt"))), reference)
    with pytest.raises(EditRequestError, match="No edit requests"):
        ed.edit_batch([])
    with pytest.raises(EditRequestError, match="train_languages"):
        editor("llama", train_languages=["ja"]).edit(FRANCE)


def test_the_preservation_projection_leaves_the_unrelated_texts_unchanged_at_every_position():
    unrelated = ["the sky"]  # fewer positions than located neurons: their span can be avoided exactly
    locator = LocatorConfig(top_k=32, language_vote=0.5)
    settings = {"unrelated": unrelated, "locality_weight": 0.0, "max_locality_texts": 0, "locator": locator}
    projected = editor(preserved_energy=1.0, **settings)
    before = all_logits(projected, unrelated)
    assert projected.edit(FRANCE).status == "edited"
    assert next_token(projected.model, projected.tokenizer, FRANCE.edit.prompt) == "lyon"
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(before, all_logits(projected, unrelated)))
    free = editor(**settings)  # the same edit without the projection moves them
    assert free.edit(FRANCE).status == "edited"
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(before, all_logits(free, unrelated)))


def test_an_edit_that_does_not_hold_is_rolled_back_to_the_adapter_before_it():
    ed = editor()
    assert ed.edit(FRANCE).status == "edited"
    kept = ed.state_dict()
    hard = EditRequest.single(
        "who wrote hamlet",
        "paris",
        rephrases=["hamlet was written by"],
        parallel={"de": {"prompt": "wer schrieb hamlet", "target": "south", "rephrases": ["hamlet schrieb"]}},
    )
    ed.config = replace(ed.config, max_steps=1)
    result = ed.edit(hard)
    assert result.status == "unfixed" and result.neurons == {}
    state = ed.state_dict()
    assert state["neurons"] == kept["neurons"]
    assert all(
        torch.equal(state["deltas"][n][k], kept["deltas"][n][k]) for n in kept["deltas"] for k in kept["deltas"][n]
    )
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"
    ed.config = replace(ed.config, keep_unfixed=True)  # kept when asked: its neurons join the adapter
    assert ed.edit(hard).status == "unfixed" and ed.state_dict()["neurons"] != kept["neurons"]
    first = editor(max_steps=1)  # a first edit rolled back leaves the plain model
    assert first.edit(hard).status == "unfixed" and first.tuner is None


def test_unrelated_activations_count_a_shared_prefix_once_and_the_projector_keeps_the_energy_share():
    from peft_mpn.editing.lafn.preserve import UnrelatedActivations, preserving_projector

    ed = editor()
    ed.add_neurons({0: [0, 1, 2]})
    layers = {0: next(iter(ed.tuner.lafn_layers().values()))}
    with ed._disabled():
        nested = UnrelatedActivations(["the sky", "the sky is"], ed.tokenizer).grams(ed.model, layers)[0]
        longest = UnrelatedActivations(["the sky is"], ed.tokenizer).grams(ed.model, layers)[0]
    assert torch.allclose(nested, longest, atol=1e-6)  # "the sky" adds no position "the sky is" lacks
    gram = torch.diag(torch.tensor([4.0, 1.0, 0.0]))
    assert torch.allclose(preserving_projector(gram, 0.8), torch.diag(torch.tensor([0.0, 1.0, 1.0])))
    assert torch.allclose(preserving_projector(gram, 0.9), torch.diag(torch.tensor([0.0, 0.0, 1.0])))
    assert torch.equal(preserving_projector(torch.zeros(2, 2), 0.99), torch.eye(2))
