"""Behaviour of the MPN PEFT tuner on tiny models of every supported architecture.

Everything goes through the public surfaces a user touches: ``peft.get_peft_model``, ``PeftModel``,
``save_pretrained``/``from_pretrained``, transformers' ``load_adapter``, ``AutoPeftModelForCausalLM`` and the
``add_patches``/``patch_layers`` interface of the tuner. Loading in a fresh interpreter runs a small script with
``sys.executable`` (one subprocess per scenario, shared by all architectures).
"""

from __future__ import annotations

import importlib
import importlib.util
import json

import pytest
import torch
from mpn_tiny import (
    LAYOUT,
    adapted,
    all_block_targets,
    assert_untouched,
    ffn_name,
    module_types,
    random_patches,
    tree_snapshot,
)
from peft import PeftModel, get_peft_model
from peft.utils import PeftType
from tiny import ALL_ARCHS, DECODER_CONFIGS, HIDDEN, logits, run_fresh, sample_inputs, tiny_model
from transformers import AutoModelForCausalLM, OPTConfig

import peft_mpn
from peft_mpn import MPNConfig, MPNLayer, PatchSet, UnsupportedArchitectureError


# -- 1. registration ---------------------------------------------------------------------------------------
def test_import_twice_and_reregister_are_harmless():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    import peft_mpn._registration as registration

    member = PeftType.MPN
    assert importlib.import_module("peft_mpn") is peft_mpn
    importlib.reload(registration)
    assert registration.register("mpn", MPNConfig, peft_mpn.MPNModel, "mpn_") is member
    importlib.reload(importlib.import_module("peft_mpn.tuners.mpn"))  # runs register() again, same classes

    assert PeftType.MPN is member and member.value == "MPN"
    assert PeftType("MPN") is member and PeftType["MPN"] is member
    assert [m for m in PeftType if m.value == "MPN"] == [member]
    assert PEFT_TYPE_TO_TUNER_MAPPING[member] is peft_mpn.MPNModel
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is MPNConfig
    assert MPNConfig().peft_type is member

    model, inputs, reference = adapted("llama")
    assert isinstance(model, PeftModel)
    assert torch.equal(logits(model, inputs), reference)


def test_reloading_every_tuner_module_in_a_fresh_process_is_harmless():
    result = run_fresh(
        """
        import importlib, json, sys
        sys.path.insert(0, sys.argv[1])
        import peft_mpn
        import peft_mpn
        import peft_mpn._registration, peft_mpn.tuners.mpn
        import peft_mpn.tuners.mpn.config, peft_mpn.tuners.mpn.layer, peft_mpn.tuners.mpn.model
        from peft import PeftConfig, get_peft_model
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
        from peft.utils import PeftType
        from tiny import logits, sample_inputs, tiny_model

        member = PeftType.MPN
        for name in ("_registration", "tuners.mpn.config", "tuners.mpn.layer", "tuners.mpn.model", "tuners.mpn"):
            importlib.reload(sys.modules["peft_mpn." + name])
        new = sys.modules["peft_mpn.tuners.mpn"]
        base = tiny_model("llama")
        inputs = sample_inputs("llama")
        reference = logits(base, inputs)
        model = get_peft_model(base, new.MPNConfig())
        print(json.dumps({
            "same_member": PeftType.MPN is member,
            "one_member": [m.value for m in PeftType].count("MPN"),
            "tuner_is_new_class": PEFT_TYPE_TO_TUNER_MAPPING[member] is new.MPNModel,
            "equal": bool((logits(model, inputs) == reference).all()),
            "old_config_class_still_works": get_peft_model(tiny_model("gpt2"), peft_mpn.MPNConfig()) is not None,
        }))
        """
    )
    assert result == {
        "same_member": True,
        "one_member": 1,
        "tuner_is_new_class": True,
        "equal": True,
        "old_config_class_still_works": True,
    }


# -- 2. which modules are patched ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_default_target_is_the_last_blocks_ffn(arch, tmp_path):
    model, _, _ = adapted(arch)
    last = LAYOUT[arch][2] - 1
    layers = model.base_model.patch_layers()
    assert list(layers) == [ffn_name(arch, last)]
    assert all(isinstance(layer, MPNLayer) for layer in layers.values())

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [last]
    assert saved["target_modules"] == [LAYOUT[arch][1]]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_explicit_and_negative_layer_indices(arch, tmp_path):
    total = LAYOUT[arch][2]
    first, _, _ = adapted(arch, layers_to_transform=[0])
    assert list(first.base_model.patch_layers()) == [ffn_name(arch, 0)]

    as_int, _, _ = adapted(arch, layers_to_transform=0)
    assert list(as_int.base_model.patch_layers()) == [ffn_name(arch, 0)]

    negative, _, _ = adapted(arch, layers_to_transform=[-2, -1])
    assert list(negative.base_model.patch_layers()) == [ffn_name(arch, total - 2), ffn_name(arch, total - 1)]
    negative.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [total - 2, total - 1]  # stored normalised, not as -2/-1


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_target_modules_override(arch):
    total = LAYOUT[arch][2]
    every, _, _ = adapted(arch, **all_block_targets(arch))
    assert list(every.base_model.patch_layers()) == [ffn_name(arch, i) for i in range(total)]

    names_and_index, _, _ = adapted(arch, **all_block_targets(arch), layers_to_transform=[1])
    assert list(names_and_index.base_model.patch_layers()) == [ffn_name(arch, 1)]

    regex, _, _ = adapted(arch, target_modules=rf".*\.1\.{LAYOUT[arch][1]}")
    assert list(regex.base_model.patch_layers()) == [ffn_name(arch, 1)]


# -- 3. what the patches do ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_fresh_and_zero_patches_reproduce_the_base_model(arch):
    fresh, inputs, reference = adapted(arch)
    assert fresh.peft_config["default"].num_patches == 0
    assert torch.equal(logits(fresh, inputs), reference)

    zeros, _, _ = adapted(arch, num_patches=4)  # init_patches=True: random keys, zero biases and values
    assert all(layer.num_patches("default") == 4 for layer in zeros.base_model.patch_layers().values())
    assert torch.equal(logits(zeros, inputs), reference)

    fresh.base_model.add_patches(
        ffn_name(arch, -1), PatchSet(torch.zeros(3, HIDDEN), torch.zeros(3), torch.zeros(3, HIDDEN))
    )
    assert torch.equal(logits(fresh, inputs), reference)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_random_patches_change_the_output_and_disabling_restores_it(arch):
    model, inputs, reference = adapted(arch, random_patches(3, seed=1))
    base_state = {k: v.clone() for k, v in model.get_base_model().state_dict().items() if "mpn_" not in k}
    patched = logits(model, inputs)
    assert not torch.allclose(patched, reference, atol=1e-4)
    with model.disable_adapter():
        assert torch.equal(logits(model, inputs), reference)
    assert torch.equal(logits(model, inputs), patched)
    # The base model's own weights were not touched: the change lives in the patch tensors only.
    after = {k: v for k, v in model.get_base_model().state_dict().items() if "mpn_" not in k}
    assert after.keys() == base_state.keys()
    assert all(torch.equal(after[k], base_state[k]) for k in base_state)

    random_init, _, _ = adapted(arch, num_patches=2, init_patches=False)
    assert not torch.allclose(logits(random_init, inputs), reference, atol=1e-4)


@pytest.mark.parametrize("activation", ["ffn", "relu"])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_output_changes_only_through_the_patch(arch, activation):
    """Patches that never fire (pre-activation ≈ -1e4 everywhere) leave the output exactly as it was,
    even with huge values: the patch adds act(h·Kᵀ+b)·V and nothing else."""
    silent = random_patches(4, seed=2, scale=1e3, bias=-1e4)
    model, inputs, reference = adapted(arch, silent, activation=activation)
    if activation == "ffn":  # the FFN's own activation (silu, gelu, gelu_new, gelu_pytorch_tanh) is ~0 there too
        assert model.peft_config["default"].activation != "relu"
    assert torch.equal(logits(model, inputs), reference)

    # The same patches with the bias flipped do fire and do change the output.
    loud = PatchSet(silent.keys, -silent.bias, silent.values)
    model.base_model.add_patches(ffn_name(arch, -1), loud)
    assert not torch.allclose(logits(model, inputs), reference, atol=1e-3)


# -- 9. bad input ----------------------------------------------------------------------------------------------
def _tiny_opt() -> torch.nn.Module:
    torch.manual_seed(0)
    config = OPTConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        ffn_dim=32,
        num_attention_heads=2,
        word_embed_proj_dim=16,
        max_position_embeddings=32,
    )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("config_kwargs", [{}, {"target_modules": ["fc2"]}])
def test_unknown_architecture_is_refused(config_kwargs):
    model = _tiny_opt()
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 9]])}
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(UnsupportedArchitectureError, match="FFN_SPECS") as error:
        get_peft_model(model, MPNConfig(**config_kwargs))
    assert "opt" in str(error.value)
    assert_untouched(model, types, reference, inputs)


@pytest.mark.parametrize("target_modules", [["nonexistent_ffn"], r".*\.nonexistent_ffn"])
def test_target_modules_matching_nothing(target_modules):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="nonexistent_ffn") as error:
        get_peft_model(model, MPNConfig(target_modules=target_modules))
    assert "not found" in str(error.value)
    assert_untouched(model, types, reference, inputs)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_target_modules_that_are_not_ffn_blocks(arch):
    model = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(model, inputs)
    types = module_types(model)
    attention = {"llama": "self_attn", "gpt2": "attn", "bert": "attention"}[arch]
    with pytest.raises(ValueError, match="check target_modules"):
        get_peft_model(model, MPNConfig(target_modules=[attention]))
    assert_untouched(model, types, reference, inputs)


def test_bert_like_output_target_never_patches_attention_silently():
    model = tiny_model("bert")
    try:
        peft_model = get_peft_model(model, MPNConfig(target_modules=["output"]))
    except ValueError:
        return  # refusing is fine too
    assert list(peft_model.base_model.patch_layers()) == [ffn_name("bert", i) for i in range(2)]


def test_adapter_for_another_hidden_size_is_refused(tmp_path):
    small, _, _ = adapted("llama", random_patches(2, seed=14))
    small.save_pretrained(tmp_path)
    before = tree_snapshot(tmp_path)

    config = DECODER_CONFIGS["llama"]()
    config.hidden_size = 48
    torch.manual_seed(0)
    wide = AutoModelForCausalLM.from_config(config).eval()
    inputs = sample_inputs("llama")
    reference = logits(wide, inputs)
    types = module_types(wide)

    with pytest.raises(ValueError, match="hidden size") as error:
        PeftModel.from_pretrained(wide, tmp_path)
    assert "32" in str(error.value) and "48" in str(error.value)
    with pytest.raises(ValueError, match="hidden size"):
        wide.load_adapter(str(tmp_path))
    with pytest.raises(ValueError, match="hidden size"):
        get_peft_model(wide, MPNConfig(hidden_size=HIDDEN))
    assert_untouched(wide, types, reference, inputs)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("layers", [[3], [-4], [0, 7], 3])
def test_layers_to_transform_out_of_range(layers):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="out of range for a 3-layer model"):
        get_peft_model(model, MPNConfig(layers_to_transform=layers))
    assert_untouched(model, types, reference, inputs)


def test_negative_num_patches_is_refused():
    with pytest.raises(ValueError, match="num_patches must be >= 0"):
        MPNConfig(num_patches=-1)


@pytest.mark.parametrize("arch", ["gemma3_text", "gpt2"])
def test_a_patch_below_the_margin_adds_nothing_with_relu_and_leaks_with_the_ffn_s_activation(arch):
    """Pre-activation -3 everywhere (T-Patcher's margin): GELU/SiLU still pass a share of the value there."""
    below = PatchSet(torch.zeros(4, HIDDEN), torch.full((4,), -3.0), torch.randn(4, HIDDEN) * 100)
    relu, inputs, reference = adapted(arch, below)
    assert torch.equal(logits(relu, inputs), reference)
    own, _, _ = adapted(arch, below, activation="ffn")
    assert not torch.allclose(logits(own, inputs), reference, atol=1e-3)


def test_patches_default_to_relu_and_ffn_takes_the_ffn_s_activation_which_merges():
    relu = get_peft_model(tiny_model("gpt2"), MPNConfig(num_patches=2, init_patches=False))
    assert relu.peft_config["default"].activation == "relu"
    with pytest.raises(ValueError, match="activation='ffn'"):
        relu.merge_and_unload()

    own = get_peft_model(tiny_model("gpt2"), MPNConfig(num_patches=2, init_patches=False, activation="ffn"))
    assert own.peft_config["default"].activation == "gelu_new"
    inputs = sample_inputs("gpt2")
    adapted_logits = logits(own, inputs)
    torch.testing.assert_close(logits(own.merge_and_unload(), inputs), adapted_logits, atol=1e-5, rtol=1e-5)


def test_unknown_activation_is_refused():
    model = tiny_model("gpt2")
    inputs = sample_inputs("gpt2")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="ACT2FN"):
        get_peft_model(model, MPNConfig(activation="no_such_activation"))
    assert_untouched(model, types, reference, inputs)


def test_mismatched_patch_shapes_are_refused():
    model, inputs, reference = adapted("llama")
    with pytest.raises(ValueError, match="shapes disagree"):
        PatchSet(torch.zeros(2, HIDDEN), torch.zeros(3), torch.zeros(2, HIDDEN))
    with pytest.raises(ValueError, match="width"):
        model.base_model.add_patches(
            ffn_name("llama", -1), PatchSet(torch.ones(2, 8), torch.ones(2), torch.ones(2, 8))
        )
    with pytest.raises(KeyError, match="No MPN layer"):
        model.base_model.add_patches(ffn_name("llama", 0), random_patches(1, seed=0))
    assert model.peft_config["default"].num_patches == 0
    assert torch.equal(logits(model, inputs), reference)
