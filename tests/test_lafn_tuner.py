"""Behaviour of the LAFN PEFT tuner (masked neuron deltas) on tiny models of every supported architecture.

Through the surfaces a user touches: ``peft.get_peft_model``, ``PeftModel``, ``save_pretrained``/
``from_pretrained`` (also in a fresh interpreter), merging, several adapters, and the editor interface of the
tuner (``lafn_layers``, ``neuron_sets``, ``add_neurons``, ``delta_parameters``).
"""

from __future__ import annotations

import json

import pytest
import torch
from lafn_tiny import (
    DECODERS,
    LAYOUT,
    NEURONS,
    WIDTH,
    adapted,
    assert_untouched,
    changed_neurons,
    ffn_name,
    ffn_outputs,
    module_types,
    normalised,
    snapshot,
)
from peft import PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import PeftType
from safetensors.torch import load_file
from tiny import ALL_ARCHS, DECODER_CONFIGS, HIDDEN, logits, sample_inputs, tiny_model
from transformers import AutoModelForCausalLM

import peft_mpn
from peft_mpn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition


# -- 1. registration and config --------------------------------------------------------------------------------
def test_registered_as_a_peft_type():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    member = PeftType.LAFN
    assert member.value == "LAFN" and PeftType("LAFN") is member
    assert PEFT_TYPE_TO_TUNER_MAPPING[member] is LAFNModel
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is LAFNConfig
    assert PEFT_TYPE_TO_PREFIX_MAPPING[member] == "lafn_"
    assert LAFNConfig(neurons={1: [2]}).peft_type is member
    assert peft_mpn.LAFNLayer is LAFNLayer and peft_mpn.NeuronAddition is NeuronAddition


def test_config_normalises_json_keys_and_documents_every_field():
    config = LAFNConfig(neurons={"2": ["7", 3], "-1": [0]})
    assert config.neurons == {2: [7, 3], -1: [0]}
    assert all(isinstance(k, int) for k in config.neurons)
    from dataclasses import fields

    own = [f for f in fields(LAFNConfig) if f.name not in {f.name for f in fields(PeftConfig)}]
    assert {f.name for f in own} >= {"neurons", "update_input", "cached", "activation_threshold", "init_lafn_weights"}
    assert all(f.metadata.get("help") for f in own)


@pytest.mark.parametrize(
    "neurons, match",
    [
        ({}, "at least one located neuron"),
        ({1: []}, "neuron set of layer 1 is empty"),
        ({1: [-2]}, "negative"),
        ({1: [3, 3]}, "more than once"),
        ({"x": [1]}, "not an integer"),
    ],
)
def test_bad_neuron_sets_are_refused_by_the_config(neurons, match):
    with pytest.raises(ValueError, match=match):
        LAFNConfig(neurons=neurons)


def test_cached_needs_a_threshold():
    with pytest.raises(ValueError, match="activation_threshold"):
        LAFNConfig(neurons={0: [1]}, cached=True)
    with pytest.raises(ValueError, match=">= 0"):
        LAFNConfig(neurons={0: [1]}, cached=True, activation_threshold=-1.0)


# -- 2. what is adapted --------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_targets_the_ffn_blocks_of_the_named_layers(arch, tmp_path):
    model, _, _ = adapted(arch, update_input=True)
    tuner = model.base_model
    layers = tuner.lafn_layers()
    assert list(layers) == [ffn_name(arch, 0), ffn_name(arch, -1)]
    assert tuner.neuron_sets() == normalised(arch, NEURONS)
    for layer in layers.values():
        assert layer.lafn_indices["default"].dtype == torch.int64
        assert layer.width == WIDTH and layer.hidden_size == HIDDEN
    # The deltas are the only trainable parameters: down columns, up rows and (gated) gate rows of the located neurons.
    trainable = {n.rsplit(".", 2)[-2] for n, p in model.named_parameters() if p.requires_grad}
    gated = arch in ("llama", "gemma3_text", "qwen2")
    assert trainable == ({"lafn_down", "lafn_up", "lafn_gate"} if gated else {"lafn_down", "lafn_up"})
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7 * HIDDEN * (3 if gated else 2)

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LAFN"
    assert saved["neurons"] == {str(k): v for k, v in normalised(arch, NEURONS).items()}
    assert saved["target_modules"] == [LAYOUT[arch][1]]
    assert saved["layers_pattern"] == LAYOUT[arch][0].rsplit(".", 1)[-1]
    assert (saved["intermediate_size"], saved["hidden_size"]) == (WIDTH, HIDDEN)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    indices = {k: v for k, v in tensors.items() if k.endswith("lafn_indices")}
    assert len(indices) == 2 and all(v.dtype == torch.int64 for v in indices.values())
    assert sorted(v.tolist() for v in indices.values()) == sorted(normalised(arch, NEURONS).values())


def test_explicit_target_modules_still_follow_the_neuron_layers():
    model, _, _ = adapted("bert", neurons={1: [2]}, target_modules=["output"])
    assert list(model.base_model.lafn_layers()) == [ffn_name("bert", 1)]  # never attention.output
    regex, _, _ = adapted("llama", neurons={1: [2]}, target_modules=r".*\.mlp")
    assert list(regex.base_model.lafn_layers()) == [ffn_name("llama", 1)]


# -- 3. exactness ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_zero_deltas_and_disabled_adapters_are_the_base_model(arch):
    for kwargs in ({}, {"update_input": True}, {"cached": True, "activation_threshold": 0.0}):
        fresh, inputs, reference = adapted(arch, **kwargs)
        assert torch.equal(logits(fresh, inputs), reference), kwargs

    model, inputs, reference = adapted(arch, update_input=True, randomise=True)
    base_state = {k: v.clone() for k, v in model.get_base_model().state_dict().items() if "lafn_" not in k}
    out = logits(model, inputs)
    assert not torch.allclose(out, reference, atol=1e-3)
    with model.disable_adapter():
        assert torch.equal(logits(model, inputs), reference)
    assert torch.equal(logits(model, inputs), out)
    after = {k: v for k, v in model.get_base_model().state_dict().items() if "lafn_" not in k}
    assert all(torch.equal(after[k], base_state[k]) for k in base_state)  # the change lives in the deltas only

    random_init, _, _ = adapted(arch, init_lafn_weights=False)
    assert not torch.allclose(logits(random_init, inputs), reference, atol=1e-3)


@pytest.mark.parametrize("update_input", [False, True])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_merge_is_exact_and_touches_only_the_located_neurons(arch, update_input):
    model, inputs, _ = adapted(arch, update_input=update_input, randomise=True)
    expected = logits(model, inputs)
    weights = snapshot(model.get_base_model())

    model.merge_adapter()
    torch.testing.assert_close(logits(model, inputs), expected, atol=1e-5, rtol=0)
    model.unmerge_adapter()
    after = model.get_base_model().state_dict()
    assert all(torch.equal(after[k], weights[k]) for k in weights)  # bit-exact restore
    assert torch.equal(logits(model, inputs), expected)

    base_weights = {k.replace(".base_layer", ""): v for k, v in weights.items() if "lafn_" not in k}
    merged = model.merge_and_unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in merged.modules())
    assert not any("lafn_" in name for name in merged.state_dict())
    torch.testing.assert_close(logits(merged, inputs), expected, atol=1e-5, rtol=0)

    changed = changed_neurons(base_weights, snapshot(merged))
    stack, block, _ = LAYOUT[arch]
    expected_changes = {}
    for layer, indices in normalised(arch, NEURONS).items():
        for proj, is_input in zip(*_projections(arch)):
            if update_input or not is_input:
                expected_changes[f"{stack}.{layer}.{proj}.weight"] = sorted(indices)
    assert changed == expected_changes


def _projections(arch: str) -> tuple[list[str], list[bool]]:
    """(FFN projections relative to a block, whether each is an input projection) for ``arch``."""
    spec = peft_mpn.FFN_SPECS[arch]
    paths = [spec.down_proj, spec.up_proj] + ([spec.gate_proj] if spec.gate_proj else [])
    return paths, [False, True, True][: len(paths)]


# -- 4. the cached update --------------------------------------------------------------------------------------
def _scores(model: PeftModel, layer_name: str, inputs) -> torch.Tensor:
    """Per-token firing statistic of the located neurons on the base model, ``[batch, seq]``."""
    layer = model.base_model.lafn_layers()[layer_name]
    captured = []
    handle = layer.down_proj.register_forward_hook(lambda m, i, o: captured.append(i[0]))
    try:
        with model.disable_adapter():
            logits(model, inputs)
    finally:
        handle.remove()
    return layer.activation_score(captured[0][..., layer.lafn_indices["default"]])


@pytest.mark.parametrize("update_input", [False, True])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_cached_delta_applies_only_where_the_located_neurons_fire(arch, update_input):
    neurons = {0: [3, 17, 40, 41]}
    layer_name = ffn_name(arch, 0)
    always, inputs, _ = adapted(arch, neurons, update_input=update_input, randomise=True)
    scores = _scores(always, layer_name, inputs)
    threshold = float(scores.flatten().median())
    cached, _, _ = adapted(arch, neurons, update_input=update_input, cached=True, activation_threshold=threshold)
    cached.load_state_dict(always.state_dict())  # the same deltas

    base_out = ffn_outputs(tiny_model(arch), layer_name, inputs)
    always_out = ffn_outputs(always, layer_name, inputs)
    cached_out = ffn_outputs(cached, layer_name, inputs)
    fires = scores > threshold
    assert fires.any() and (~fires).any()
    assert not torch.allclose(always_out[fires], base_out[fires], atol=1e-4)
    assert torch.equal(cached_out[fires], always_out[fires])
    assert torch.equal(cached_out[~fires], base_out[~fires])


@pytest.mark.parametrize("arch", DECODERS)
def test_cached_edit_changes_the_prompt_that_activates_the_neurons_only(arch):
    """Two prompts, a threshold between their last-token scores: the edit reaches one next-token prediction."""
    prompts = ["the capital of france is", "a cat sat on the mat"]
    inputs = sample_inputs(arch, prompts)
    last = ffn_name(arch, -1)
    always, _, _ = adapted(arch, {-1: [3, 17, 40, 41]}, randomise=True)
    final_scores = _scores(always, last, inputs)[:, -1]
    hi = int(final_scores.argmax())
    threshold = float(final_scores.mean())
    cached, _, reference = adapted(arch, {-1: [3, 17, 40, 41]}, cached=True, activation_threshold=threshold)
    cached.load_state_dict(always.state_dict())
    reference, edited, out = logits(tiny_model(arch), inputs), logits(always, inputs), logits(cached, inputs)
    assert torch.equal(out[hi, -1], edited[hi, -1]) and not torch.allclose(out[hi, -1], reference[hi, -1])
    assert torch.equal(out[1 - hi, -1], reference[1 - hi, -1])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_cached_adapters_are_never_merged(arch):
    model, inputs, _ = adapted(arch, randomise=True, cached=True, activation_threshold=0.01)
    expected = logits(model, inputs)
    weights = snapshot(model)
    for merge in (model.merge_and_unload, model.merge_adapter):
        with pytest.raises(ValueError, match="cached"):
            merge()
    after = model.state_dict()
    assert all(torch.equal(after[k], weights[k]) for k in weights)
    assert list(model.base_model.lafn_layers()) == [ffn_name(arch, 0), ffn_name(arch, -1)]
    assert torch.equal(logits(model, inputs), expected)


# -- 9. bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "neurons, match",
    [
        ({1: [2, 64, 99]}, r"\[64, 99\] are out of range for layer 1, whose FFN has width 64"),
        ({-1: [70]}, r"out of range for layer 2, whose FFN has width 64"),
        ({3: [1]}, r"layers \[3\] out of range for a 3-layer model"),
        ({-4: [1]}, r"layers \[-4\] out of range"),
        ({2: [1], -1: [2]}, "same layer twice"),
    ],
)
def test_out_of_range_neurons_are_refused_and_the_model_untouched(neurons, match):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference, types, weights = logits(model, inputs), module_types(model), snapshot(model)
    with pytest.raises(ValueError, match=match):
        get_peft_model(model, LAFNConfig(neurons=neurons))
    assert_untouched(model, types, reference, inputs, weights)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_targets_that_are_not_ffn_blocks_are_refused(arch):
    model = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference, types, weights = logits(model, inputs), module_types(model), snapshot(model)
    attention = {"llama": "self_attn", "gpt2": "attn", "bert": "attention"}[arch]
    with pytest.raises(ValueError, match="not an FFN block"):
        get_peft_model(model, LAFNConfig(neurons={0: [1]}, target_modules=[attention]))
    assert_untouched(model, types, reference, inputs, weights)


def test_adapter_for_another_ffn_width_is_refused(tmp_path):
    small, _, _ = adapted("llama", {1: [3, 50]}, randomise=True)
    small.save_pretrained(tmp_path)
    saved = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    config = DECODER_CONFIGS["llama"]()
    config.intermediate_size = 48
    torch.manual_seed(0)
    narrow = AutoModelForCausalLM.from_config(config).eval()
    inputs = sample_inputs("llama")
    reference, types, weights = logits(narrow, inputs), module_types(narrow), snapshot(narrow)

    with pytest.raises(ValueError, match="width 64") as error:
        PeftModel.from_pretrained(narrow, tmp_path)
    assert "layer 1's FFN has width 48" in str(error.value)
    with pytest.raises(ValueError, match="width 64"):
        narrow.load_adapter(str(tmp_path))
    with pytest.raises(ValueError, match="whose FFN has width 48"):
        get_peft_model(narrow, LAFNConfig(neurons={1: [3, 50]}))
    assert_untouched(narrow, types, reference, inputs, weights)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == saved
