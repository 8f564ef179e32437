"""The baselines on tiny models: FT-L and FT-M fine-tune one down-projection inside an L∞ ball and reset
exactly; in-context editing puts the fact in front of every prompt the evaluator scores."""

from __future__ import annotations

import pytest
import torch
from tiny import context_follower, logits, make_tokenizer, next_token, tiny_model

from peft_mpn import EditRequest, EditRequestError
from peft_mpn.batching import encode_target
from peft_mpn.editing import (
    EDITORS,
    FTEditor,
    FTEditorConfig,
    ICLEditor,
    ICLEditorConfig,
    make_editor,
)
from peft_mpn.metrics import score_targets

FRANCE = EditRequest.single(
    "the capital of france is", "lyon", parallel={"de": ("die hauptstadt von frankreich ist", "lyon")}
)
HAMLET = EditRequest.single("who wrote hamlet", "the sky is")
CONTEXT = "New fact: the capital of france is lyon\n"


def ft_editor(name: str, arch: str = "gpt2", dtype: torch.dtype = torch.float32, **settings) -> FTEditor:
    # lr 1e-2 and ε 0.05 (EasyEdit: 5e-4 and 5e-4) because the tiny models' weights are ~0.2, not ~0.02
    config = FTEditorConfig(**{"learning_rate": 1e-2, "norm_constraint": 0.05, "max_steps": 100, **settings})
    return make_editor(name, tiny_model(arch).to(dtype), make_tokenizer(), config, progress=False)


@pytest.mark.parametrize("name, arch", [("ft-l", "gpt2"), ("ft-l", "llama"), ("ft-m", "gpt2"), ("ft-m", "qwen2")])
def test_fine_tuning_makes_the_target_the_argmax_and_changes_only_one_down_projection(name, arch):
    ed = ft_editor(name, arch)
    before = {k: v.clone() for k, v in ed.model.state_dict().items()}
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) != "lyon"

    result = ed.edit(FRANCE)

    assert result.status == "edited" and result.languages == ["en"] and result.steps >= 1
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"
    changed = {k for k, v in ed.model.state_dict().items() if not torch.equal(v, before[k])}
    last_block = {"gpt2": "transformer.h.2.mlp.c_proj", "llama": "model.layers.2.mlp.down_proj"}
    assert changed == {last_block.get(arch, "model.layers.2.mlp.down_proj") + ".weight"}


@pytest.mark.parametrize("name", ["ft-l", "ft-m"])
def test_fine_tuning_edits_a_bfloat16_model_in_bfloat16(name):
    # Gemma 3 loads in bfloat16 by default; the loss used to mix a float32 accumulator with bfloat16 logits
    ed = ft_editor(name, "llama", dtype=torch.bfloat16)
    result = ed.edit(FRANCE)
    assert result.status == "edited"
    assert next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt) == "lyon"
    assert ed.weight.dtype == torch.bfloat16


def test_the_weight_change_stays_inside_the_norm_constraint():
    settings = {"learning_rate": 1e-2, "max_steps": 5}
    constrained = ft_editor("ft-m", norm_constraint=0.004, **settings)
    constrained.edit(HAMLET)
    free = ft_editor("ft-m", norm_constraint=None, **settings)
    free.edit(HAMLET)
    largest = constrained.weight_delta.abs().max().item()
    assert 0.9 * 0.004 < largest <= 0.004 * (1 + 1e-5)  # the clamp was active, and held
    assert free.weight_delta.abs().max().item() > 0.008


def test_ft_m_trains_the_whole_target_and_ft_l_only_the_prompts_last_position():
    ft_m = ft_editor("ft-m")
    assert ft_m.edit(HAMLET).status == "edited"
    (score,) = score_targets(ft_m.model, ft_m.tokenizer, [(HAMLET.edit.prompt, HAMLET.edit.target)])
    assert score.exact

    ft_l = ft_editor("ft-l", max_steps=30)
    result = ft_l.edit(HAMLET)
    # FT-L's loss puts all three target tokens into the distribution after the prompt: one of them wins there
    assert next_token(ft_l.model, ft_l.tokenizer, HAMLET.edit.prompt) in {"the", "sky", "is"}
    assert result.losses["edit"] > 0.5  # three tokens cannot all have probability ~1 at one position


@pytest.mark.parametrize("name", ["ft-l", "ft-m"])
def test_the_loss_is_the_mean_over_versions_of_each_versions_own_nll(name):
    request = EditRequest.single(
        "who wrote hamlet",
        "the sky is",
        parallel={"de": {"prompt": "die hauptstadt von frankreich", "target": "rome"}},
    )
    ed = ft_editor(name, "gemma3_text", augment_languages=None, max_steps=1)
    per_version = []
    for view in request.views.values():  # each version alone: no padding
        encoding = encode_target(ed.tokenizer, view.prompt, view.target)
        log_probs = logits(ed.model, {"input_ids": torch.tensor([encoding.input_ids])})[0].log_softmax(-1)
        target = torch.tensor(encoding.target_ids)
        if name == "ft-m":  # teacher forcing: each target token after the ones before it
            per_version.append(-log_probs[list(encoding.decision_positions), target].mean())
        else:  # every target token under the distribution after the prompt
            per_version.append(-log_probs[encoding.prompt_length - 1, target].mean())
    result = ed.edit(request)  # one step: the reported loss is the unedited model's
    assert result.steps == 1
    assert result.losses["edit"] == pytest.approx(torch.stack(per_version).mean().item(), rel=1e-5)


def test_sequential_edits_accumulate_and_reset_restores_the_logits_exactly():
    ed = ft_editor("ft-m")
    inputs = dict(
        ed.tokenizer(
            ["the capital of france is", "the river flows", "a cat sat on the mat"], return_tensors="pt", padding=True
        )
    )
    reference = logits(ed.model, inputs)
    requests = [EditRequest.single("the capital of france is", "lyon"), EditRequest.single("the river flows", "south")]

    results = ed.edit_stream(requests)

    assert [r.status for r in results] == ["edited", "edited"]
    for request in requests:
        assert next_token(ed.model, ed.tokenizer, request.edit.prompt) == request.edit.target
    assert not torch.equal(logits(ed.model, inputs), reference)
    ed.reset()
    assert torch.equal(logits(ed.model, inputs), reference)
    assert not ed.weight_delta.any()


def test_augmentation_is_off_by_default_and_trains_parallel_versions_when_asked():
    plain = ft_editor("ft-m")
    assert plain.edit(FRANCE).languages == ["en"]

    augmented = ft_editor("ft-m", augment_languages=None)
    result = augmented.edit(FRANCE)
    assert result.languages == ["en", "de"] and result.fixed_languages == ["en", "de"]
    assert next_token(augmented.model, augmented.tokenizer, "die hauptstadt von frankreich ist") == "lyon"


def test_a_request_the_model_already_gets_right_is_skipped_without_touching_the_weight():
    ed = ft_editor("ft-l")
    current = next_token(ed.model, ed.tokenizer, FRANCE.edit.prompt)
    result = ed.edit(EditRequest.single(FRANCE.edit.prompt, current))
    assert result.status == "skipped" and result.steps == 0
    assert not ed.weight_delta.any()


# -- in-context editing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_icl_model_scores_the_new_target_through_score_targets(dtype):
    model, tokenizer = context_follower()
    model.to(dtype)
    ed = make_editor("icl", model, tokenizer, progress=False)
    pair = [("the capital of france is", "lyon")]
    assert not score_targets(ed.model, tokenizer, pair)[0].exact

    result = ed.edit(EditRequest.single("the capital of france is", "lyon"))

    assert result.status == "edited" and result.fixed_languages == ["en"]
    assert score_targets(ed.model, tokenizer, pair)[0].exact
    assert not score_targets(model, tokenizer, pair)[0].exact  # the model itself is untouched
    ed.reset()
    assert not score_targets(ed.model, tokenizer, pair)[0].exact


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_icl_model_equals_the_model_reading_the_demonstration_first(arch, padding_side):
    tokenizer = make_tokenizer()
    model = tiny_model(arch)
    ed = ICLEditor(model, tokenizer, progress=False)
    prompts = ["the capital of france is", "who wrote hamlet", "a cat sat on the mat"]
    tokenizer.padding_side = padding_side
    inputs = dict(tokenizer(prompts, return_tensors="pt", padding=True))
    inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(logits(ed.model, inputs)[mask], logits(model, inputs)[mask], atol=1e-5)

    ed.edit(EditRequest.single("the capital of france is", "lyon"))

    wrapped = logits(ed.model, inputs)
    assert wrapped.shape == logits(model, inputs).shape
    for row, prompt in enumerate(prompts):
        explicit = logits(model, dict(tokenizer([CONTEXT + prompt], return_tensors="pt")))[0]
        n = int(mask[row].sum())
        assert torch.allclose(wrapped[row][mask[row]], explicit[-n:], atol=1e-5)


def test_an_icl_demonstration_ends_the_answer_once_in_a_prompt_format():
    tokenizer = make_tokenizer()
    ed = ICLEditor(tiny_model("gpt2"), tokenizer, progress=False)
    request = EditRequest.single("the capital of france is", "lyon").with_prompt_format("q: {prompt} a: {answer}\n")
    ed.edit(request)
    assert ed.model.facts[0].text == "New fact: q: the capital of france is a: lyon\n"


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text"])
def test_icl_generate_is_the_model_s_generate_after_the_demonstration_batched_or_not(arch):
    from peft_mpn.metrics.generation import generate_greedy

    tokenizer = make_tokenizer()
    tokenizer.padding_side = "left"
    model = tiny_model(arch).eval()
    ed = ICLEditor(model, tokenizer, progress=False)
    ed.edit(EditRequest.single("the capital of france is", "lyon"))
    prompts = ["the capital of france is", "who wrote hamlet and", "a cat"]
    expected = []
    for prompt in prompts:
        explicit = dict(tokenizer([CONTEXT + prompt], return_tensors="pt"))
        out = model.generate(**explicit, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected.append(out[0, explicit["input_ids"].shape[1] :].tolist())
    batch = dict(tokenizer(prompts, return_tensors="pt", padding=True))
    out = ed.model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])  # the input, then the new tokens
    assert out[:, batch["input_ids"].shape[1] :].tolist() == expected
    assert [list(t) for t in generate_greedy(ed.model, tokenizer, prompts, 6, batch_size=2)] == expected
    with pytest.raises(ValueError, match="left-padded"):
        tokenizer.padding_side = "right"
        ed.model.generate(**dict(tokenizer(prompts, return_tensors="pt", padding=True)), max_new_tokens=2)


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text"])
def test_icl_scores_are_the_argmax_of_the_model_reading_the_demonstration_first(arch):
    tokenizer = make_tokenizer()
    model = tiny_model(arch).eval()
    ed = ICLEditor(model, tokenizer, progress=False)
    ed.edit(EditRequest.single("the capital of france is", "lyon"))
    pairs = [("the capital of france is", "lyon"), ("who wrote hamlet", "the sky is blue"), ("a cat", "sat on the")]
    expected = []
    for prompt, target in pairs:
        encoding = encode_target(tokenizer, CONTEXT + prompt, target)
        full = logits(model, {"input_ids": torch.tensor([encoding.input_ids])})[0]
        expected.append(tuple(full[list(encoding.decision_positions)].argmax(-1).tolist()))
    assert len({len(p) for p in expected}) > 1  # targets of several lengths share a batch
    assert [s.predicted for s in score_targets(ed.model, tokenizer, pairs, batch_size=2)] == expected


def test_icl_retrieves_the_stored_fact_closest_to_each_prompt():
    tokenizer = make_tokenizer()
    model = tiny_model("llama")
    ed = ICLEditor(model, tokenizer, progress=False)
    ed.edit_stream([EditRequest.single("who wrote hamlet", "shakespeare"), FRANCE, HAMLET])
    for prompt, fact in [
        ("the capital of france is", "New fact: the capital of france is lyon\n"),
        ("who wrote hamlet", "New fact: who wrote hamlet the sky is\n"),  # the most recent of two equal matches
    ]:
        got = logits(ed.model, dict(tokenizer([prompt], return_tensors="pt")))[0]
        explicit = logits(model, dict(tokenizer([fact + prompt], return_tensors="pt")))[0]
        assert torch.allclose(got, explicit[-got.shape[0] :], atol=1e-5)


# -- the registry and bad input ----------------------------------------------------------------------------------
def test_make_editor_builds_every_baseline_by_name():
    assert {"ft-l", "ft-m", "icl"} <= set(EDITORS)
    tokenizer = make_tokenizer()
    assert make_editor("ft-l", tiny_model("gpt2"), tokenizer, progress=False).config.objective == "prompt_last"
    # the name decides the objective, a passed config the rest
    ft_m = make_editor("ft-m", tiny_model("gpt2"), tokenizer, FTEditorConfig.ft_l(max_steps=3), progress=False)
    assert ft_m.config.objective == "target_new" and ft_m.config.max_steps == 3
    icl = make_editor("icl", tiny_model("gpt2"), tokenizer, ICLEditorConfig(num_demonstrations=2), progress=False)
    assert isinstance(icl, ICLEditor) and icl.config.num_demonstrations == 2


def test_bad_input_is_refused_with_a_clear_message():
    tokenizer = make_tokenizer()
    label_request = EditRequest.single("the capital of france is lyon", 1)
    with pytest.raises(EditRequestError, match="not labels"):
        ICLEditor(tiny_model("gpt2"), tokenizer, progress=False).edit(label_request)
    with pytest.raises(EditRequestError, match="a classifier"):
        ICLEditor(tiny_model("bert"), make_tokenizer(encoder=True))
    with pytest.raises(EditRequestError, match="a classifier"):
        FTEditor(tiny_model("bert"), make_tokenizer(encoder=True))
    with pytest.raises(EditRequestError, match="not labels"):
        FTEditor(tiny_model("gpt2"), tokenizer, progress=False).edit(label_request)
    with pytest.raises(ValueError, match="out of range"):
        FTEditor(tiny_model("gpt2"), tokenizer, FTEditorConfig(layer=7))
    with pytest.raises(ValueError, match="objective must be"):
        FTEditorConfig(objective="last_token")
    with pytest.raises(ValueError, match="norm_constraint"):
        FTEditorConfig(norm_constraint=0.0)
    with pytest.raises(ValueError, match=r"needs \{target\}"):
        ICLEditorConfig(template="New fact: {prompt}\n")
    ed = ICLEditor(tiny_model("gpt2"), tokenizer, progress=False)
    inputs = dict(tokenizer(["who wrote hamlet"], return_tensors="pt"))
    with pytest.raises(ValueError, match="teacher forcing"):
        ed.model(**inputs, past_key_values=object())


def test_icl_model_handles_inputs_padded_wider_than_any_row():
    tokenizer = make_tokenizer()
    model = tiny_model("gpt2")
    ed = ICLEditor(model, tokenizer, progress=False)
    inputs = dict(tokenizer(["who wrote hamlet"], return_tensors="pt", padding="max_length", max_length=12))
    inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    mask = inputs["attention_mask"].bool()
    wrapped = logits(ed.model, inputs)  # no stored fact: the base model's logits, at the input's own width
    assert wrapped.shape == logits(model, inputs).shape
    assert torch.allclose(wrapped[mask], logits(model, inputs)[mask], atol=1e-5)


@pytest.mark.parametrize("name, arch", [("ft-m", "llama"), ("ft-l", "gpt2"), ("ft-m", "gemma3_text")])
def test_fine_tuning_with_the_prefix_cache_makes_the_same_edit(name, arch):
    edits = []
    for cached in (True, False):
        ed = ft_editor(name, arch, prefix_cache=cached, augment_languages=["de"])
        result = ed.edit(FRANCE)
        edits.append((result.status, result.steps, ed.weight.detach().clone()))
    (status_a, steps_a, a), (status_b, steps_b, b) = edits
    assert (status_a, steps_a) == (status_b, steps_b) and torch.allclose(a, b, atol=1e-5)


UNRELATED_TEXTS = ["a cat sat on the mat", "the sun shines over hills", "music plays loud", "who wrote hamlet"]


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_gated_icl_shows_the_fact_to_its_prompt_and_to_no_unrelated_text_and_reloads(arch):
    tokenizer = make_tokenizer()
    model = tiny_model(arch).eval()
    ed = make_editor("icl-gated", model, tokenizer, progress=False)
    with pytest.raises(ValueError, match="add_unrelated_texts"):
        ed.edit(EditRequest.single("the capital of france is", "lyon"))
    ed.reset()
    ed.add_unrelated_texts(UNRELATED_TEXTS)
    ed.edit(EditRequest.single("the capital of france is", "lyon"))
    prompts = ["the capital of france is", *UNRELATED_TEXTS]
    wrapped = [logits(ed.model, dict(tokenizer([p], return_tensors="pt")))[0] for p in prompts]
    plain = [logits(model, dict(tokenizer([p], return_tensors="pt")))[0] for p in prompts]
    explicit = logits(model, dict(tokenizer([CONTEXT + prompts[0]], return_tensors="pt")))[0]
    assert torch.allclose(wrapped[0], explicit[-len(wrapped[0]) :], atol=1e-5)  # the fact, in front of its prompt
    assert all(torch.allclose(w, p, atol=1e-5) for w, p in zip(wrapped[1:], plain[1:]))  # no unrelated text sees it
    assert [ed.model.retrieve(tokenizer(p)["input_ids"]) for p in prompts] == [[0], [], [], [], []]
    fresh = make_editor("icl-gated", tiny_model(arch).eval(), tokenizer, progress=False)
    fresh.load_state_dict(ed.state_dict())
    batch = dict(tokenizer(prompts, return_tensors="pt", padding=True))
    assert torch.allclose(logits(fresh.model, batch), logits(ed.model, batch), atol=1e-6)
