"""Subject gates: a gated patch adds its value only once the text has mentioned its subject."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import pytest
import torch
from peft import PeftModel, get_peft_model
from tiny import make_tokenizer, tiny_model

import peft_mpn
from peft_mpn.batching import left_padded_positions
from peft_mpn.editing.mpn.subject_gate import fit_gates
from peft_mpn.editing.prefix import PrefixCache
from peft_mpn.tuners.config import AdapterCompositionError
from peft_mpn.tuners.mpn import PatchSet

SUBJECT_TEXT = "the capital of france is"
OTHER_TEXT = "the capital of germany is"


def gated_model(seed: int = 0, arch: str = "llama"):
    """A tiny Llama with one gated patch whose gate opens at 'france' (and a value large enough to matter)."""
    tokenizer = make_tokenizer()
    model = get_peft_model(tiny_model(arch, seed=seed), peft_mpn.MPNConfig(gate_layer=1))
    tuner = model.base_model
    ((name, layer),) = tuner.patch_layers().items()
    ids = tokenizer(SUBJECT_TEXT, return_tensors="pt")["input_ids"]
    others = tokenizer(["a cat sat on the mat and " + OTHER_TEXT], return_tensors="pt")["input_ids"]
    with torch.no_grad(), tuner.subject_gate().record_inputs() as recorded:
        model(input_ids=ids)
        model(input_ids=others)
    position = ids[0].tolist().index(tokenizer.convert_tokens_to_ids("france"))
    negatives = torch.cat([recorded[0][0, :position], recorded[1][0]])
    gate_keys, gate_bias = fit_gates([recorded[0][0, position : position + 1]], negatives)
    d = negatives.shape[1]
    torch.manual_seed(seed)
    patch = PatchSet(torch.zeros(1, d), torch.ones(1), torch.randn(1, d) * 3, gate_keys, gate_bias)
    tuner.add_patches(name, patch)
    return model, tokenizer, position


def logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def test_a_gated_patch_acts_from_its_subject_on_and_nowhere_else():
    model, tokenizer, position = gated_model()
    with model.disable_adapter():
        before = logits(model, tokenizer, SUBJECT_TEXT), logits(model, tokenizer, OTHER_TEXT)
    changed = (logits(model, tokenizer, SUBJECT_TEXT) - before[0]).abs().amax(-1)[0]
    assert changed[:position].max() == 0 and bool((changed[position:] > 0).all())
    assert torch.equal(logits(model, tokenizer, OTHER_TEXT), before[1])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_generation_carries_the_gate_across_decoding_steps(arch):
    model, tokenizer, _ = gated_model(arch=arch)
    ids = tokenizer(SUBJECT_TEXT, return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=5,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():  # the same text in one whole-text forward pass, no cache
        whole = model(input_ids=out.sequences).logits[0, ids.shape[1] - 1 : -1]
    torch.testing.assert_close(torch.cat(out.logits), whole, atol=1e-4, rtol=1e-4)
    with model.disable_adapter(), torch.no_grad():
        unedited = model(input_ids=out.sequences).logits[0, ids.shape[1] - 1 : -1]
    assert (whole - unedited).abs().amax(-1).min() > 1e-3  # the patch acted at every generated position


def test_a_batch_gates_each_row_on_its_own_text():
    model, tokenizer, _ = gated_model()
    tokenizer.padding_side = "left"
    batch = tokenizer([SUBJECT_TEXT, "a cat sat on the mat and " + OTHER_TEXT], return_tensors="pt", padding=True)
    with torch.no_grad():
        together = model(**batch).logits[:, -1]
    alone = [
        logits(model, tokenizer, text)[0, -1] for text in (SUBJECT_TEXT, "a cat sat on the mat and " + OTHER_TEXT)
    ]
    torch.testing.assert_close(together, torch.stack(alone), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_padding_never_opens_a_gate(arch):
    """A gate that fires on a pad token's FFN input would open for a left-padded row's whole text."""
    tokenizer = make_tokenizer()
    tokenizer.padding_side = "left"
    model = get_peft_model(tiny_model(arch), peft_mpn.MPNConfig(gate_layer=1))
    tuner = model.base_model
    ((name, _),) = tuner.patch_layers().items()
    texts = [SUBJECT_TEXT, "a cat sat on the mat and " + OTHER_TEXT]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    text = batch["attention_mask"].bool()
    with torch.no_grad(), tuner.subject_gate().record_inputs() as recorded:
        model(**batch)
    gate_keys, gate_bias = fit_gates([recorded[0][~text]], recorded[0][text])  # fires on padding, nowhere else
    assert bool((recorded[0][~text] @ gate_keys[0] + gate_bias[0] > 0).all())
    d = recorded[0].shape[-1]
    torch.manual_seed(0)
    tuner.add_patches(name, PatchSet(torch.zeros(1, d), torch.ones(1), torch.randn(1, d) * 3, gate_keys, gate_bias))
    with torch.no_grad():
        together = model(**batch).logits[0, text[0]]
    with model.disable_adapter():
        unedited = logits(model, tokenizer, SUBJECT_TEXT)[0]
    torch.testing.assert_close(together, unedited, atol=1e-5, rtol=1e-5)
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    with model.disable_adapter():
        expected = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert torch.equal(generated, expected)


def test_gated_patches_save_and_load_and_do_not_merge(tmp_path):
    model, tokenizer, _ = gated_model()
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_model("llama"), tmp_path)
    for text in (SUBJECT_TEXT, OTHER_TEXT):
        assert torch.equal(logits(reloaded, tokenizer, text), logits(model, tokenizer, text))
    with pytest.raises(ValueError, match="subject-gated"):
        reloaded.merge_and_unload()


def test_gate_layer_must_come_before_the_patched_block():
    with pytest.raises(ValueError, match="must come before"):
        get_peft_model(tiny_model("llama"), peft_mpn.MPNConfig(gate_layer=2))  # the last block is patched
    plain = get_peft_model(tiny_model("llama"), peft_mpn.MPNConfig())
    d = plain.config.hidden_size
    gated = PatchSet(torch.zeros(1, d), torch.zeros(1), torch.zeros(1, d), torch.zeros(1, d), torch.zeros(1))
    ((name, _),) = plain.base_model.patch_layers().items()
    with pytest.raises(ValueError, match="gate_layer"):
        plain.base_model.add_patches(name, gated)


def test_an_ungated_adapter_composes_with_a_gated_one(tmp_path):
    gated, tokenizer, _ = gated_model()
    gated.save_pretrained(tmp_path / "gated")
    plain = get_peft_model(tiny_model("llama"), peft_mpn.MPNConfig())
    ((name, _),) = plain.base_model.patch_layers().items()
    d = plain.config.hidden_size
    torch.manual_seed(1)
    plain.base_model.add_patches(name, PatchSet(torch.randn(1, d), torch.zeros(1), torch.randn(1, d)))
    plain.save_pretrained(tmp_path / "plain")
    composed = peft_mpn.compose_adapters(tiny_model("llama"), [tmp_path / "plain", tmp_path / "gated"])
    assert composed.peft_config["default"].gate_layer == 1
    assert torch.equal(logits(composed, tokenizer, OTHER_TEXT), logits(plain, tokenizer, OTHER_TEXT))  # gate shut
    assert not torch.equal(logits(composed, tokenizer, SUBJECT_TEXT), logits(plain, tokenizer, SUBJECT_TEXT))
    other = dataclasses.replace(gated.peft_config["default"], gate_layer=0)
    with pytest.raises(AdapterCompositionError, match="gate_layer 1 vs 0"):
        gated.peft_config["default"].composable_with(other)


def test_unloading_leaves_the_base_model_without_the_gate_hooks():
    model, tokenizer, _ = gated_model()
    with model.disable_adapter():
        unedited = logits(model, tokenizer, SUBJECT_TEXT)
    base = model.unload()
    gate_block = base.model.layers[1]
    assert not gate_block._forward_pre_hooks and not gate_block.mlp._forward_pre_hooks
    assert torch.equal(logits(base, tokenizer, SUBJECT_TEXT), unedited)


@pytest.mark.parametrize("only_last_position", [False, True])
def test_a_prefix_cache_pass_opens_and_shuts_gates_as_the_full_pass_does(only_last_position):
    """An editor trains on passes that skip the blocks below the patch, the gate's block among them: the patches
    already in the model must still open only where their subject was mentioned, as at inference."""
    model, tokenizer, _ = gated_model()
    tuner = model.base_model
    ((name, layer),) = tuner.patch_layers().items()
    tokenizer.padding_side = "left"
    batch = dict(
        tokenizer([SUBJECT_TEXT, "a cat sat on the mat and " + OTHER_TEXT], return_tensors="pt", padding=True)
    )
    last = torch.full((2, 1), batch["input_ids"].shape[1] - 1)
    with torch.no_grad():
        full = model(**batch).logits[:, -1]
        cache = PrefixCache(
            model,
            name,
            batch,
            root=tuner.model,
            positions=last if only_last_position else None,
            attention=layer.spec.attention,
            gate=tuner.subject_gate(),
        )
        assert cache.positionwise == only_last_position
        second = torch.tensor([1])

        def inputs(rows=None):
            if only_last_position:
                return cache.at_positions(batch, rows)
            return batch if rows is None else {key: value[rows] for key, value in batch.items()}

        with cache.replay():
            replayed = model(**inputs()).logits[:, -1]
        with cache.replay(second):  # one row of the batch: its own gate inputs
            other_row = model(**inputs(second)).logits[:, -1]
        with cache.replay(), tuner.subject_gate().suspended():  # every gate open: the other text changes
            suspended = model(**inputs()).logits[:, -1]
    torch.testing.assert_close(replayed, full, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(other_row[0], full[1], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(suspended[1], full[1], atol=1e-3)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_a_prefix_cache_continues_its_rows_as_generate_does(arch):
    """An edit reads the patched FFN's inputs at the tokens the model writes after each answer; the cache writes them
    on from the pass it already ran, and must read what `generate()` feeds back, the gates carried through."""
    model, tokenizer, _ = gated_model(arch=arch)
    tuner = model.base_model
    ((name, layer),) = tuner.patch_layers().items()
    tokenizer.padding_side = "left"
    texts = [SUBJECT_TEXT, "a cat sat on the mat and " + OTHER_TEXT]
    batch = dict(tokenizer(texts, return_tensors="pt", padding=True))
    pad = tokenizer.pad_token_id

    def written(adapter: bool) -> torch.Tensor:
        with layer.record_inputs() as recorded, torch.no_grad(), nullcontext() if adapter else model.disable_adapter():
            model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=pad)
        return torch.stack([step[:, -1] for step in recorded[1:]], dim=1)  # the tokens fed back in

    inputs = {**batch, "position_ids": left_padded_positions(batch["attention_mask"])}
    last = torch.full((2, 1), batch["input_ids"].shape[1] - 1)
    with torch.no_grad():
        cache = PrefixCache(
            model,
            name,
            inputs,
            root=tuner.model,
            stop_after=layer,
            positions=last,
            attention=layer.spec.attention,
            gate=tuner.subject_gate(),
            continue_steps=3,
            pad_token_id=pad,
        )
    expected = written(adapter=True)
    assert cache.continued.shape == expected.shape == (2, 3, expected.shape[-1])
    torch.testing.assert_close(cache.continued, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(written(adapter=False)[0], expected[0], atol=1e-3)  # the gated patch wrote on row 0
