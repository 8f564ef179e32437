"""Generation readings: what `generate()` shows after an edit, judged beside the teacher-forced tokens."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest, MPNConfig, PatchSet
from peft_mpn.data import PROMPT_FORMATS, EditRequestError, format_requests, resolve_prompt_format
from peft_mpn.editing import MPNEditor
from peft_mpn.editing.mpn.config import MPNEditorConfig
from peft_mpn.metrics import Judge, compute_cross_lingual_edit, score_targets
from peft_mpn.metrics.generation import GenerationSettings, generate_greedy, normalise, read_answer

# On this tiny Qwen2 the edited answer is also the token its unedited continuation would be pulled towards: a
# patch that keeps firing after the answer writes "lyon lyon lyon ...", the case users met on Gemma ("Airbus
# Airbus Airbus ...").
PROMPT = "the capital of france is lyon and the capital of germany is"
TARGET = "lyon"
UNRELATED = ["a cat sat on the mat", "the sun shines over hills", "music plays loud"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def edited(tokenizer, silent_after_answer: int, **config_fields) -> MPNEditor:
    config = MPNEditorConfig(silent_after_answer=silent_after_answer, augment_languages=[], **config_fields)
    editor = MPNEditor(tiny_model("qwen2"), tokenizer, config, unrelated_texts=UNRELATED, progress=False)
    assert editor.edit(EditRequest.single(PROMPT, TARGET)).success
    return editor


def test_normalise_ignores_case_unicode_form_outer_punctuation_and_spacing():
    assert normalise("  Ｌyon.  ") == normalise("lyon") == "lyon"
    assert normalise("New   York!") == "new york"
    assert normalise("Lyon, France") != normalise("Lyon")


@pytest.mark.parametrize(
    ("text", "exact", "stops", "repeats"),
    [
        (" lyon\nQ: what", True, True, False),  # answered, then a new line
        (" Lyon.", True, False, False),  # right, but never ends within the budget
        (" lyon lyon lyon lyon", False, False, True),  # the patch still firing after the answer
        (" paris\n", False, True, False),  # wrong, but a clean stop
    ],
)
def test_read_answer_defines_exact_and_stops(text, exact, stops, repeats):
    class Characters:  # one token per character: budgets and stop positions are easy to count
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids if i)

    reading = read_answer(Characters(), [ord(c) for c in text], "lyon", stop_slack=2)
    assert (reading.exact, reading.stops, reading.repeats) == (exact, stops, repeats)
    assert reading.answer == text.strip().split("\n")[0]


def test_generation_is_the_same_batched_and_one_prompt_at_a_time(tokenizer):
    model = tiny_model("llama")
    prompts = ["the capital of france is", "a cat sat on the", "who wrote hamlet", "the sky is"]
    batched = generate_greedy(model, tokenizer, prompts, [3, 5, 2, 4], batch_size=4)
    single = [generate_greedy(model, tokenizer, [p], n, batch_size=1)[0] for p, n in zip(prompts, [3, 5, 2, 4])]
    assert batched == single
    assert [len(tokens) for tokens in batched] == [3, 5, 2, 4]


def test_answers_and_continuations_decode_together_as_they_do_apart(tokenizer, monkeypatch):
    """An answer ends at its line break, an unrelated continuation runs its budget: in one batch as apart."""
    import peft_mpn.metrics.generation as generation

    model = tiny_model("llama")
    prompts = ["the capital of france is", "a cat sat on the", "who wrote hamlet", "the sky is"]
    free = generate_greedy(model, tokenizer, prompts, 6, batch_size=1)
    monkeypatch.setattr(generation, "line_break_tokens", lambda _: frozenset({free[0][2], free[2][1]}))  # "breaks"
    flags, budgets = [True, False, True, False], [6, 6, 5, 6]
    together = generate_greedy(model, tokenizer, prompts, budgets, batch_size=4, stop_at_line_break=flags)
    apart = [
        generate_greedy(model, tokenizer, [p], n, batch_size=1, stop_at_line_break=f)[0]
        for p, n, f in zip(prompts, budgets, flags)
    ]
    assert together == apart
    assert len(together[0]) == 3 and len(together[2]) == 2 and together[1] == free[1] and together[3] == free[3]


def test_teacher_forcing_misses_a_repeating_answer_that_generation_catches_and_the_fix_prevents(tokenizer):
    original = edited(tokenizer, silent_after_answer=0, warm_start=False)  # Transformer-Patcher's training
    (score,) = score_targets(original.model, tokenizer, [(PROMPT, TARGET)])
    assert score.predicted == score.target  # teacher-forced: perfect
    settings = GenerationSettings()
    generated = generate_greedy(original.model, tokenizer, [PROMPT], 5)[0]
    assert read_answer(tokenizer, generated, TARGET, stop_slack=settings.stop_slack).repeats

    fixed = edited(tokenizer, silent_after_answer=4)
    (score,) = score_targets(fixed.model, tokenizer, [(PROMPT, TARGET)])
    assert score.predicted == score.target
    generated = generate_greedy(fixed.model, tokenizer, [PROMPT], 5)[0]
    assert not read_answer(tokenizer, generated, TARGET, stop_slack=settings.stop_slack).repeats
    # after the answer the edited model writes what the unedited one writes after it
    base = generate_greedy(tiny_model("qwen2"), tokenizer, [f"{PROMPT} {TARGET}"], 4)[0]
    assert tuple(generated[1:]) == tuple(base)


def fact() -> EditRequest:
    return EditRequest.from_dict(
        {
            "case_id": "france",
            "views": {
                "en": {
                    "prompt": "the capital of france is",
                    "target": "lyon",
                    "locality_prompt": "a cat sat on the",
                    "locality_answer": "mat",
                },
                "de": {
                    "prompt": "die hauptstadt von frankreich ist",
                    "target": "lyon",
                    "locality_prompt": "the sun shines over",
                    "locality_answer": "hills",
                },
            },
        }
    )


def test_generation_locality_catches_a_patch_that_fires_after_unrelated_prompts(tokenizer):
    model = get_peft_model(tiny_model("llama"), MPNConfig())
    judge = Judge(tokenizer, augment_languages=["de"], generation=GenerationSettings(locality_tokens=6))
    judge.reference(model, [fact()])
    clean = judge.scores(judge.rows(model, fact()))
    assert clean["per_language"]["en"]["locality_gen"] == 1.0

    tuner = model.base_model
    ((name, layer),) = tuner.patch_layers("default").items()
    d = layer.hidden_size
    value = torch.zeros(1, d)
    value[0, 0] = 50.0
    tuner.add_patches(name, PatchSet(torch.zeros(1, d), torch.full((1,), 5.0), value), "default")
    rows = judge.rows(model, fact())
    leaky = judge.scores(rows)
    assert leaky["per_language"]["en"]["locality_gen"] == 0.0
    (row,) = [r for r in rows if r["probe"] == "locality" and r["language"] == "en"]
    assert row["generated"]["text"] != row["generated"]["reference_text"]


def test_judge_readings_do_not_depend_on_the_batch_size(tokenizer):
    model = tiny_model("gemma3_text")
    rows = []
    for batch_size in (1, 8):  # teacher-forced scoring's and generation's batches alike
        settings = GenerationSettings(batch_size=batch_size)
        judge = Judge(tokenizer, augment_languages=["de"], batch_size=batch_size, generation=settings)
        judge.reference(model, [fact()])
        rows.append(judge.rows(model, fact()))
    assert rows[0] == rows[1]
    assert all("generated" in row for row in rows[0])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        GenerationSettings(batch_size=0)


def test_metric_aggregates_generation_readings_and_checks_them():
    columns = dict(
        predictions=[[1, 2], [1, 2], [3]],
        references=[[1, 2], [1, 2], [3]],
        case_id=["a", "b", "a"],
        language=["en", "en", "en"],
        probe=["reliability", "reliability", "locality"],
        copied=[False, False, False],
    )
    generated = [{"exact": True, "stops": False}, {"exact": False, "stops": False}, {"unchanged": True}]
    result = compute_cross_lingual_edit(**columns, generated=generated)
    assert result["reliability_em"] == 1.0  # teacher-forced: both right
    assert result["reliability_gen"] == 0.5 and result["reliability_stops"] == 0.0
    assert result["locality_gen"] == 1.0 and result["locality_stops"] is None
    assert compute_cross_lingual_edit(**columns)["reliability_gen"] is None
    with pytest.raises(ValueError, match="lacks \\['stops'\\]"):
        compute_cross_lingual_edit(**columns, generated=[{"exact": True}, None, None])


def test_prompt_formats_apply_to_every_prompt_and_refuse_bad_templates():
    (request,) = format_requests([fact()], PROMPT_FORMATS["qa"])
    assert request.edit.prompt == "Q: the capital of france is\nA:"
    assert request.views["de"].locality_prompt == "Q: the sun shines over\nA:"
    assert request.edit.target == "lyon\n"  # the format ends an answer with a line break: the edit learns it
    assert request.edit.locality_answer == "mat"  # judged by agreement with the unedited model: unchanged
    assert resolve_prompt_format("raw") == "{prompt}"
    assert resolve_prompt_format(None, tiny_model("llama")) == PROMPT_FORMATS["qa-2shot"]
    assert resolve_prompt_format("Question: {prompt} Answer:") == "Question: {prompt} Answer:"
    with pytest.raises(EditRequestError, match="Unknown prompt format 'chat'"):
        resolve_prompt_format("chat")
    with pytest.raises(EditRequestError, match="exactly once"):
        fact().with_prompt_format("{prompt} {prompt}")
    with pytest.raises(EditRequestError, match="other than"):
        fact().with_prompt_format("{prompt} {other}")
    braces = EditRequest.single("what is {x}", "y").with_prompt_format("Q: {prompt}")
    assert braces.edit.prompt == "Q: what is {x}" and braces.edit.target == "y"
    custom = EditRequest.single("x", "y").with_prompt_format("Question: {prompt} Answer: {answer}.")
    assert (custom.edit.prompt, custom.edit.target) == ("Question: x Answer:", "y.")
    with pytest.raises(EditRequestError, match="after"):
        fact().with_prompt_format("{answer} {prompt}")


def test_the_output_layer_reads_a_contiguous_input_and_computes_the_same_logits(tokenizer):
    from peft_mpn.batching import contiguous_output_head

    model = tiny_model("llama")
    head = model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda module, args, output: seen.append(args[0].is_contiguous()))
    inputs = tokenizer(["the capital of france is", "who wrote hamlet"], return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = model(**inputs, logits_to_keep=2).logits
        with contiguous_output_head(model):
            fast = model(**inputs, logits_to_keep=2).logits
    handle.remove()
    assert seen == [False, True]  # `hidden[:, -2:]` is a strided view; inside, the head gets it contiguous
    assert torch.equal(plain, fast)
    assert head._forward_pre_hooks == {}  # nothing left on the model afterwards


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # the tiny Gemma 3's sliding window is too short to split
def test_teacher_forced_scores_run_a_shared_prompt_format_once_and_read_the_same(tokenizer, arch):
    model = tiny_model(arch)
    shared = "q: who wrote hamlet a: shakespeare q: the sky is a: blue q: "  # a prompt format's answered questions
    pairs = [(shared + p, t) for p, t in [("the capital of france is a:", "lyon"), ("a cat sat on a:", "the mat")]]
    pairs += [(shared + "music plays a:", "loud and clear now"), ("no format here", "at all")]
    prefix_passes = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: prefix_passes.append(kwargs.get("use_cache") is True), with_kwargs=True
    )
    together = score_targets(model, tokenizer, pairs[:3], batch_size=3)
    handle.remove()
    assert any(prefix_passes)  # the shared tokens ran on their own
    apart = [score_targets(model, tokenizer, [pair], batch_size=1)[0] for pair in pairs[:3]]
    assert [s.predicted for s in together] == [s.predicted for s in apart]
    mixed = score_targets(model, tokenizer, pairs, batch_size=4)  # nothing shared: the plain batch
    assert [s.predicted for s in mixed[:3]] == [s.predicted for s in apart]
