"""The MPN editor on tiny models: edits hold, memories stay put, augmentation transfers, bad input is refused."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny import logits, make_tokenizer, next_token, tiny_model

from peft_mpn import EditRequest, EditRequestError, MPNConfig
from peft_mpn.editing import EDITORS, MPNEditor, MPNEditorConfig, make_editor
from peft_mpn.metrics import score_targets

MEMORY = [
    "the weather is nice today",
    "a cat sat on the mat",
    "numbers go up",
    "hello world again",
    "who wrote hamlet",
    "the sky is blue",
    "the dog runs in the park",
    "music plays loud",
]
FRANCE = EditRequest.single(
    "the capital of france is",
    "lyon",
    parallel={"de": ("die hauptstadt von frankreich ist", "lyon"), "fr": ("la capitale de la france est", "lyon")},
)


def all_predictions(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    return [logits(model, dict(tokenizer([t], return_tensors="pt"))).argmax(-1) for t in texts]


def editor(
    arch: str = "gpt2", augment: list[str] | None = None, dtype: torch.dtype = torch.float32, **config
) -> MPNEditor:
    tokenizer = make_tokenizer()
    # lr 0.05 (T-Patcher's is 0.01) only to keep the tiny-model tests quick
    settings = {
        "max_steps": 200,
        "learning_rate": 0.05,
        "augment_languages": augment if augment is not None else ["de"],
    }
    settings.update(config)
    model = tiny_model(arch).to(dtype)
    return MPNEditor(model, tokenizer, MPNEditorConfig(**settings), unrelated_texts=MEMORY, progress=False)


def test_mpn_edits_a_bfloat16_model_in_every_trained_language():
    ed = editor("llama", augment=["de", "fr"], dtype=torch.bfloat16)
    result = ed.edit(FRANCE)
    assert result.status == "edited"
    assert [next_token(ed.model, ed.tokenizer, view.prompt) for view in FRANCE.views.values()] == ["lyon"] * 3


@pytest.mark.parametrize("arch, activation", [("gemma3_text", "ffn"), ("gpt2", "relu")])
def test_edit_fixes_a_wrong_prediction_and_keeps_memory_predictions(arch, activation):
    # GELU leaks act(-3)·v ≈ -0.004·v below T-Patcher's margin, enough to flip the near-ties of a random tiny
    # GPT-2 at some memory positions; with relu (the default) the patch is exactly silent there.
    tokenizer = make_tokenizer()
    ed = MPNEditor(
        tiny_model(arch),
        tokenizer,
        MPNEditorConfig(max_steps=200, learning_rate=0.05, augment_languages=[]),
        peft_config=MPNConfig(activation=activation),
        unrelated_texts=MEMORY,
        progress=False,
    )
    before = all_predictions(ed.model, ed.tokenizer, MEMORY)
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) != "lyon"

    result = ed.edit(FRANCE)

    assert result.status == "edited" and result.patches_added == 1
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"
    after = all_predictions(ed.model, ed.tokenizer, MEMORY)
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    assert ed.model.peft_config["default"].num_patches == 1


def test_augmentation_makes_the_patch_fire_on_parallel_inputs():
    """English-only (T-Patcher) leaves German alone; MPN with German parallel data fixes German too."""
    t_patcher = editor("gpt2", augment=[])
    t_patcher.edit(FRANCE)
    german = FRANCE.views["de"].prompt
    assert next_token(t_patcher.model, t_patcher.tokenizer, FRANCE.edit.prompt) == "lyon"
    assert next_token(t_patcher.model, t_patcher.tokenizer, german) != "lyon"

    mpn = editor("gpt2", augment=["de"])
    result = mpn.edit(FRANCE)
    assert result.languages == ["en", "de"] and result.fixed_languages == ["en", "de"]
    assert next_token(mpn.model, mpn.tokenizer, FRANCE.edit.prompt) == "lyon"
    assert next_token(mpn.model, mpn.tokenizer, german) == "lyon"
    # the patch fires on the German input: its pre-activation there is positive, unlike T-Patcher's
    layer = mpn.layer
    with layer.record_inputs() as recorded:
        logits(mpn.model, dict(mpn.tokenizer([german], return_tensors="pt")))
    assert layer.pre_activations(recorded[0][0, -1], layer.patches("default")).max() > 0
    with t_patcher.layer.record_inputs() as recorded:
        logits(t_patcher.model, dict(t_patcher.tokenizer([german], return_tensors="pt")))
    assert t_patcher.layer.pre_activations(recorded[0][0, -1], t_patcher.layer.patches("default")).max() < 0


def test_sequential_editing_keeps_earlier_edits():
    ed = editor("gpt2", augment=[])
    requests = [
        EditRequest.single("the capital of france is", "lyon"),
        EditRequest.single("the river flows", "south"),
        EditRequest.single("the bird sings in the", "rain"),
    ]
    results = ed.edit_stream(requests)
    assert [r.status for r in results] == ["edited"] * 3
    for request in requests:
        assert next_token(ed.model, ed.tokenizer, request.edit.prompt) == request.edit.target
    # a request the model already gets right is skipped and adds nothing
    patches = ed.model.peft_config["default"].num_patches
    assert ed.edit(requests[0]).status == "skipped"
    assert ed.model.peft_config["default"].num_patches == patches


def test_batch_editing_puts_several_edits_in_one_adapter():
    ed = editor("gpt2", augment=[])
    requests = [
        EditRequest.single("the capital of france is", "lyon"),
        EditRequest.single("the river flows", "south"),
    ]
    result = ed.edit_batch(requests)
    assert result.status == "edited" and result.patches_added == 2
    for request in requests:
        assert next_token(ed.model, ed.tokenizer, request.edit.prompt) == request.edit.target


def test_multi_token_target_gets_one_patch_per_wrong_token_capped():
    request = EditRequest.single("who wrote hamlet", "the sky is")  # three wrong tokens on the tiny model
    ed = editor("llama", augment=[])
    result = ed.edit(request)
    assert result.status == "edited" and result.patches_added == 3
    (score,) = score_targets(ed.model, ed.tokenizer, [(request.edit.prompt, request.edit.target)])
    assert score.exact

    # Capped below the wrong tokens, a token stays unpatched (relu patches fire only where they are trained):
    # the edit does not hold, and is kept only on request.
    capped = editor("llama", augment=[], max_patches_per_edit=2, keep_unfixed=True)
    result = capped.edit(request)
    assert result.status == "unfixed" and result.patches_added == 2


def test_prefix_cache_gives_the_same_edit():
    patches = []
    for cached in (True, False):
        ed = editor("llama", augment=["de"], prefix_cache=cached, max_steps=30, vocab_candidates=None)
        result = ed.edit(FRANCE)
        patches.append((result.steps, ed.layer.patches("default")))
    (steps_a, a), (steps_b, b) = patches
    assert steps_a == steps_b
    assert torch.allclose(a.keys, b.keys, atol=1e-4) and torch.allclose(a.values, b.values, atol=1e-3)


@pytest.mark.parametrize("arch, parallel", [("bert", False), ("xlm-roberta", True)])
def test_classifier_edit_flips_the_label_and_keeps_memory_labels(arch, parallel):
    tokenizer = make_tokenizer(encoder=True)
    model = tiny_model(arch, num_labels=3)
    config = MPNEditorConfig(max_steps=200, learning_rate=0.05)
    ed = MPNEditor(model, tokenizer, config, unrelated_texts=MEMORY, progress=False)
    text = "the capital of france is lyon"
    label = int((logits(ed.model, dict(tokenizer([text], return_tensors="pt"))).argmax() + 1) % 3)
    before = [logits(ed.model, dict(tokenizer([t], return_tensors="pt"))).argmax() for t in MEMORY]

    translations = {"de": ("die hauptstadt von frankreich ist lyon", label)} if parallel else {}
    result = ed.edit(EditRequest.single(text, label, parallel=translations))

    assert result.status == "edited" and result.patches_added == 1
    assert int(logits(ed.model, dict(tokenizer([text], return_tensors="pt"))).argmax()) == label
    after = [logits(ed.model, dict(tokenizer([t], return_tensors="pt"))).argmax() for t in MEMORY]
    assert before == after


def test_t_patcher_is_the_same_editor_with_augmentation_off():
    assert {"mpn", "t-patcher", "lafn"} <= set(EDITORS)
    tokenizer = make_tokenizer()
    ed = make_editor("t-patcher", tiny_model("gpt2"), tokenizer, progress=False)
    assert type(ed) is MPNEditor and ed.config.augment_languages == []
    assert ed.edit(FRANCE).languages == ["en"]
    with pytest.raises(ValueError, match="Unknown editor"):
        make_editor("rome", tiny_model("gpt2"), tokenizer)


def test_reset_returns_to_the_base_model():
    ed = editor("gpt2", augment=[])
    reference = logits(ed.model, dict(ed.tokenizer([FRANCE.edit.prompt], return_tensors="pt")))
    ed.edit(FRANCE)
    ed.reset()
    assert ed.model.peft_config["default"].num_patches == 0
    assert torch.equal(logits(ed.model, dict(ed.tokenizer([FRANCE.edit.prompt], return_tensors="pt"))), reference)


@pytest.mark.parametrize(
    "make_request, message",
    [
        (lambda: EditRequest.single("the capital of france is", ""), "empty target"),
        (lambda: EditRequest.single("the capital of france is", "   "), "empty target"),
        (lambda: EditRequest.single("", "lyon"), "empty prompt"),
        (
            lambda: EditRequest.single("the capital of france is", "lyon", parallel={"de": {"prompt": "die"}}),
            "no target",
        ),
        (lambda: EditRequest.single("x", "lyon", parallel={"de": ("die hauptstadt", "")}), "empty target"),
        (lambda: EditRequest.single("x", 1, parallel={"de": ("y", 2)}), "share the label"),
    ],
)
def test_bad_requests_are_refused_clearly(make_request, message):
    with pytest.raises(EditRequestError, match=message):
        make_request()


def test_wrong_target_kind_and_empty_batch_write_nothing():
    ed = editor("gpt2")
    with pytest.raises(EditRequestError, match="causal LM"):
        ed.edit(EditRequest.single("the capital of france is", 1))
    with pytest.raises(EditRequestError, match="No edit requests"):
        ed.edit_batch([])
    assert ed.model.peft_config["default"].num_patches == 0
    assert len(ed.memory) == len(editor("gpt2").memory)


def test_editor_refuses_multi_layer_adapters_and_other_tuners():
    from peft import LoraConfig

    tokenizer = make_tokenizer()
    two_layers = get_peft_model(tiny_model("gpt2"), MPNConfig(target_modules=["mlp"]))
    with pytest.raises(ValueError, match="single block"):
        MPNEditor(two_layers, tokenizer)
    lora = get_peft_model(tiny_model("gpt2"), LoraConfig(target_modules=["c_attn"]))
    with pytest.raises(TypeError, match="not MPN"):
        MPNEditor(lora, tokenizer)


def test_per_language_patches_give_translated_targets_their_own_neurons():
    """The German answer is a different string: 'per_language' adds a patch for its wrong token, anchored in German."""
    request = EditRequest.single(
        "the capital of france is", "lyon", parallel={"de": ("die hauptstadt von frankreich ist", "berlin")}
    )
    # one shared patch cannot write both answers; keep_unfixed keeps it to show the plan (rollback would drop it)
    shared = editor("gpt2", augment=["de"], patch_plan="edit", keep_unfixed=True)
    # the shared patch fires in German too and the German one overtakes it slowly: no stall rule on the tiny model
    own = editor("gpt2", augment=["de"], stall_steps=0)  # the default plan
    assert shared.edit(request).patches_added == 1
    result = own.edit(request)
    assert result.patches_added == 2 and result.fixed_languages == ["en", "de"]
    assert next_token(own.model, own.tokenizer, "the capital of france is") == "lyon"
    assert next_token(own.model, own.tokenizer, "die hauptstadt von frankreich ist") == "berlin"
    with pytest.raises(ValueError, match="patch_plan"):
        MPNEditorConfig(patch_plan="everywhere")


# -- bad input: one clear sentence --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [None, {}, {"prompt": "the capital of france is", "target": "lyon"}, "lyon"])
def test_edit_refuses_what_is_not_an_edit_request(bad):
    editor = MPNEditor(tiny_model("llama"), make_tokenizer(), MPNEditorConfig(augment_languages=[]), progress=False)
    with pytest.raises(EditRequestError, match="takes an EditRequest"):
        editor.edit(bad)


@pytest.mark.parametrize(
    ("prompt", "target", "match"),
    [
        ("<bos>", "lyon", "special tokens only"),  # the patch would attach to <bos> and fire on every input
        ("zzzz qqqq", "lyon", "special tokens only"),  # unknown words: <unk> only
        ("the capital of france is", "\u200b\u200b", "no text tokens"),  # zero-width characters
        ("the capital of france is", "xyzzy", "no text tokens"),  # unknown to the tokenizer
    ],
)
def test_prompts_and_targets_without_text_tokens_are_refused(prompt, target, match):
    editor = MPNEditor(tiny_model("llama"), make_tokenizer(), MPNEditorConfig(augment_languages=[]), progress=False)
    with pytest.raises(EditRequestError, match=match):
        editor.edit(EditRequest.single(prompt, target))
    assert editor.tuner.num_patches(editor.adapter_name) == 0


def test_a_mistyped_augmentation_language_is_named_in_a_warning(caplog):
    editor = MPNEditor(
        tiny_model("llama"), make_tokenizer(), MPNEditorConfig(augment_languages=["ge"]), progress=False
    )
    request = EditRequest.single(
        "the capital of france is", "lyon", parallel={"de": ("die hauptstadt von frankreich ist", "lyon")}
    )
    with caplog.at_level("WARNING"):
        assert editor.training_languages(request) == ["en"]
    assert "no version in ['ge']" in caplog.text and "'de'" in caplog.text


def test_an_edit_that_does_not_hold_is_rolled_back_and_the_adapter_is_unchanged():
    tokenizer = make_tokenizer()
    editor = MPNEditor(tiny_model("llama"), tokenizer, MPNEditorConfig(augment_languages=[]), progress=False)
    assert editor.edit(EditRequest.single("the capital of france is", "lyon")).success  # an earlier edit
    before = {name: tensor.clone() for name, tensor in editor.model.state_dict().items()}
    editor.config.max_steps = 1  # too few steps for the next edit to hold from T-Patcher's random start
    editor.config.warm_start = False
    result = editor.edit(EditRequest.single("who wrote hamlet", "rome"))
    assert result.status == "unfixed" and result.patches_added == 0
    after = editor.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[name], before[name]) for name in before)

    editor.config.keep_unfixed = True
    kept = editor.edit(EditRequest.single("who wrote hamlet", "rome"))
    assert kept.status == "unfixed" and kept.patches_added > 0
    assert editor.tuner.num_patches(editor.adapter_name) > 1


def test_an_edit_that_stops_progressing_ends_before_the_budget_with_the_same_outcome():
    # three patches per language cannot write "the sky is blue" and "a cat sat on the mat" token by token
    request = EditRequest.single(
        "the capital of france is",
        "lyon",
        parallel={
            "de": ("die hauptstadt von frankreich ist", "the sky is blue"),
            "fr": ("la capitale de la france est", "a cat sat on the mat"),
        },
    )
    results = {}
    for stall_steps in (30, 0):
        ed = editor("llama", augment=["de", "fr"], stall_steps=stall_steps, max_steps=300, max_patches_per_edit=3)
        results[stall_steps] = (ed.edit(request), ed.layer.num_patches("default"))
    (stalled, patches_stalled), (full, _) = results[30], results[0]
    assert full.steps == 300 and stalled.steps < 300
    # it ends as the budget ends: judged on every version, kept only where the edit language holds
    assert stalled.status == full.status == "unfixed"
    assert set(full.fixed_languages) <= set(stalled.fixed_languages) != {"en", "de", "fr"}
    assert (patches_stalled > 0) == ("en" in stalled.fixed_languages)


@pytest.mark.parametrize(
    "plan, anchored",
    [
        ("edit", [[(0, 3), (1, 5)], [(0, 4), (1, 6)]]),  # both slots, in both languages
        ("per_language", [[(0, 3), (1, 5)], [(1, 6)]]),  # English's slot shared; German's own slot, in German
        ("separate", [[(0, 3)], [(1, 6)]]),  # each language's own slot, anchored in that language only
    ],
)
def test_patches_cover_every_slot_a_trained_version_gets_wrong(plan, anchored):
    """English is wrong at its first answer token only, German at its second: a relu patch writes only where it
    is anchored, so each wrong slot of each trained version needs a patch anchored there."""
    from peft_mpn.editing.mpn.planning import EditRows, plan_patches

    rows = EditRows(request=[0, 0], language=["en", "de"], is_edit=[True, False])
    correct = torch.tensor([[False, True], [True, False]])
    positions = torch.tensor([[3, 4], [5, 6]])  # where each target slot is decided
    h = torch.randn(2, 8, 4)
    patches, skipped = plan_patches(1, rows, correct, positions, h, MPNEditorConfig(patch_plan=plan))
    assert skipped == [] and len(patches) == len(anchored)
    for patch, where in zip(patches, anchored):
        assert torch.equal(patch.anchors, torch.stack([h[row, position] for row, position in where]))
