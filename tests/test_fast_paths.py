"""The shortcuts an edit takes give what the long way gives: the short pass over the decision positions, a
shared prompt prefix run once, and the memory loss over the most activated memories only."""

from __future__ import annotations

import pytest
import torch
from mpn_tiny import CAUSAL, LAYOUT, adapted, random_patches
from tiny import make_tokenizer

from peft_mpn.batching import left_pad, left_padded_positions
from peft_mpn.editing.mpn import losses
from peft_mpn.editing.mpn.config import MPNEditorConfig
from peft_mpn.editing.mpn.planning import PlannedPatch
from peft_mpn.editing.prefix import PrefixCache, capture_ffn_inputs
from peft_mpn.metrics.generation import generate_greedy
from peft_mpn.shared_prefix import SharedPrefix
from peft_mpn.tuners.ffn import ffn_spec

SHARED = "Q: What is the capital of France?\nA: Paris\nQ: Who wrote Hamlet?\nA: William Shakespeare\nQ: "
QUESTIONS = ["Who built the Boeing 747?\nA:", "Wer schrieb Faust?\nA:", "la capitale de la france est\nA:"]


def _batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = left_pad([tokenizer(text)["input_ids"] for text in texts], tokenizer.pad_token_id)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": left_padded_positions(attention_mask),
    }


@pytest.mark.parametrize("arch", CAUSAL)
def test_the_short_pass_gives_the_full_pass_logits_at_the_decision_positions(arch):
    model, _, _ = adapted(arch, random_patches(4, seed=1, bias=0.5))
    tokenizer = make_tokenizer()
    inputs = _batch(tokenizer, ["the capital of france is lyon", "a cat sat", "die hauptstadt von frankreich ist"])
    length = inputs["input_ids"].shape[1]
    positions = torch.tensor([[length - 3, length - 2], [-1, length - 2], [length - 4, length - 2]])
    layer_name = next(iter(model.base_model.patch_layers()))
    root = model.base_model.model
    cache = PrefixCache(
        model, layer_name, inputs, root=root, positions=positions, attention=ffn_spec(root.config).attention
    )
    assert cache.positionwise
    rows = torch.tensor([0, 2])
    with torch.no_grad():
        full = model(**{k: v[rows] for k, v in inputs.items()}).logits
        with cache.replay(rows):
            short = model(**cache.at_positions({k: v[rows] for k, v in inputs.items()}, rows)).logits
    expected = full.gather(1, positions[rows].clamp(min=0).unsqueeze(-1).expand(-1, -1, full.shape[-1]))
    assert short.shape == expected.shape
    assert torch.allclose(short, expected, atol=1e-4)


def test_a_patched_block_below_the_last_one_keeps_full_passes():
    model, _, _ = adapted("llama", random_patches(2, seed=1), layers_to_transform=[0])
    tokenizer = make_tokenizer()
    inputs = _batch(tokenizer, ["the capital of france is lyon", "a cat sat"])
    layer_name = next(iter(model.base_model.patch_layers()))
    cache = PrefixCache(
        model,
        layer_name,
        inputs,
        root=model.base_model.model,
        positions=torch.tensor([[5], [5]]),
        attention="self_attn",
    )
    assert LAYOUT["llama"][2] > 1 and not cache.positionwise


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_a_shared_prefix_run_once_generates_and_reads_the_same_as_the_padded_batch(arch):
    model, _, _ = adapted(arch, random_patches(3, seed=2, bias=0.2))
    tokenizer = make_tokenizer()
    prompts = [SHARED + question for question in QUESTIONS]
    rows = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    shared = SharedPrefix(rows, tokenizer.pad_token_id)
    assert shared.active and shared.length >= 8
    if arch == "gemma3_text":  # the tiny Gemma's attention window (8) is shorter than the prompts
        assert not shared.usable(model)
        model.config.sliding_window = 512
        for layer in model.base_model.model.model.layers:
            layer.self_attn.sliding_window = 512 if layer.self_attn.sliding_window else None
    assert shared.usable(model, 5)

    plain = _batch(tokenizer, prompts)
    with torch.no_grad():
        expected = model.generate(**plain, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        inputs = shared.inputs(model, full_ids=True)
        got = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert got[:, inputs["input_ids"].shape[1] :].tolist() == expected[:, plain["input_ids"].shape[1] :].tolist()
    assert generate_greedy(model, tokenizer, prompts, 5) == [
        tuple(row) for row in expected[:, plain["input_ids"].shape[1] :].tolist()
    ]

    layer = model.base_model.model.get_submodule(next(iter(model.base_model.patch_layers())))
    full = capture_ffn_inputs(model, layer, plain)[:, -1]
    short = capture_ffn_inputs(model, layer, shared.inputs(model))[:, -1]
    assert torch.allclose(short, full, atol=1e-5)


def test_rows_that_share_little_run_as_a_plain_padded_batch():
    tokenizer = make_tokenizer()
    rows = [tokenizer(text)["input_ids"] for text in ["a cat sat on the mat", "the dog runs"]]
    shared = SharedPrefix(rows, tokenizer.pad_token_id)
    assert not shared.active
    model, _, _ = adapted("llama")
    inputs = shared.inputs(model)
    assert "past_key_values" not in inputs and inputs["input_ids"].shape == (2, max(map(len, rows)))


def test_the_memory_loss_over_the_most_activated_memories_equals_the_dense_one():
    generator = torch.Generator().manual_seed(0)
    config = MPNEditorConfig(memory_topk=7)
    memory = torch.randn(300, 16, generator=generator)
    anchors = [torch.randn(3, 16, generator=generator) for _ in range(2)]
    patches = [PlannedPatch(0, torch.arange(3), a, a[0]) for a in anchors]
    keys = torch.randn(2, 16, generator=generator).requires_grad_()
    bias = torch.randn(2, generator=generator).requires_grad_()

    _, memory_terms, peak = losses.patch_losses(patches, keys, bias, memory, config)
    memory_terms.sum().backward()
    got = (memory_terms.detach(), keys.grad.clone(), bias.grad.clone(), peak)

    keys.grad, bias.grad = None, None
    pre = memory @ keys.T + bias
    top = pre.topk(7, dim=0).values
    means = torch.stack([(a @ keys[p] + bias[p]).mean() for p, a in enumerate(anchors)])
    m = config.memory_margin
    dense = torch.exp(top - means + m).mean(0) + torch.exp(top + m).mean(0)
    dense.sum().backward()
    assert torch.allclose(got[0], dense.detach()) and got[3] == pytest.approx(top[0].max().item())
    assert torch.allclose(got[1], keys.grad) and torch.allclose(got[2], bias.grad)
