"""Inputs longer than the model reads (max_position_embeddings) are refused with one clear error, before any edit
trains and before judging runs the model, in every editor and in the judge."""

from __future__ import annotations

import pytest
import torch
from tiny import logits, make_tokenizer, sample_inputs, tiny_model

from peft_mpn import EditRequest, EditRequestError
from peft_mpn.batching import position_limit
from peft_mpn.editing import make_editor
from peft_mpn.metrics import Judge

MEMORY = ["the weather is nice today", "a cat sat on the mat", "hello world again", "the sky is blue"]
MANY = " ".join(["the"] * 130)
#: 136 tokens each (<bos>, prompt, target) for the tiny GPT-2, which reads 128 positions
TOO_LONG = {
    "prompt": EditRequest.single(f"{MANY} capital of france is", "lyon", case_id="long-prompt"),
    "target": EditRequest.single("the capital of france is", " ".join(["paris"] * 130), case_id="long-target"),
}
SHORT = EditRequest.single(
    "the capital of france is", "lyon", rephrases=["the city that is the capital of france is"], case_id="france"
)


def assert_too_long(error: pytest.ExceptionInfo, length: int) -> None:
    message = str(error.value)
    assert f"is {length} tokens long" in message and "at most 128 positions" in message, message
    assert "max_position_embeddings" in message and "Shorten the prompt or the target" in message, message


def test_the_limit_is_what_the_position_table_holds():
    assert position_limit(tiny_model("gpt2")) == 128  # n_positions
    assert position_limit(tiny_model("bert")) == 128
    assert position_limit(tiny_model("xlm-roberta")) == 129  # 130 rows, positions start after the padding index 0


@pytest.mark.parametrize("which", TOO_LONG)
@pytest.mark.parametrize("name", ["mpn", "lafn", "ft-l", "icl"])
def test_every_editor_refuses_a_too_long_case_before_training(name, which):
    kwargs = {"unrelated_texts": MEMORY} if name in ("mpn", "lafn") else {}
    editor = make_editor(name, tiny_model("gpt2"), make_tokenizer(), progress=False, **kwargs)
    inputs = sample_inputs("gpt2")
    before = logits(editor.model, inputs)
    with pytest.raises(EditRequestError) as error:
        editor.edit(TOO_LONG[which])
    assert_too_long(error, 136)
    assert torch.equal(logits(editor.model, inputs), before)  # nothing trained, no fact stored
    assert editor.edit(SHORT).case_ids == ["france"]  # and the editor still edits


def test_in_context_editing_refuses_a_fact_whose_demonstration_makes_the_input_too_long():
    editor = make_editor("icl", tiny_model("gpt2"), make_tokenizer(), progress=False)
    request = EditRequest.single(" ".join(["the"] * 60) + " capital of france is", "lyon")  # 66 tokens alone
    inputs = sample_inputs("gpt2")
    before = logits(editor.model, inputs)
    with pytest.raises(EditRequestError, match="demonstrations") as error:
        editor.edit(request)
    assert "at most 128 positions" in str(error.value) and "num_demonstrations" in str(error.value)
    assert torch.equal(logits(editor.model, inputs), before)  # the fact was not kept


@pytest.mark.parametrize("which", TOO_LONG)
def test_judging_refuses_a_too_long_case(which):
    with pytest.raises(EditRequestError) as error:
        Judge(make_tokenizer()).reference(tiny_model("gpt2"), [TOO_LONG[which]])
    assert_too_long(error, 136)


def test_judging_refuses_a_case_whose_generated_answer_would_not_fit():
    request = EditRequest.single(" ".join(["the"] * 121) + " capital of france is", "lyon")  # 127 tokens: fits
    judge = Judge(make_tokenizer())
    with pytest.raises(EditRequestError, match="tokens generated after it") as error:
        judge.reference(tiny_model("gpt2"), [request])
    assert "is 131 tokens long" in str(error.value) and "stop_slack" in str(error.value)
    Judge(make_tokenizer(), generation=None).reference(tiny_model("gpt2"), [request])  # teacher forcing fits
