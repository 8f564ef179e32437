"""The tuner methods `compose_adapters` relies on: `absorb_adapter` and `composable_with`, on tiny models."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from tiny import logits, sample_inputs, tiny_model

from peft_mpn import LAFNConfig, MPNConfig
from peft_mpn.hub import AdapterCompositionError


def base_model(arch: str = "gpt2") -> torch.nn.Module:
    return tiny_model(arch)


def test_mpn_absorb_adapter_on_several_layers_equals_both_active():
    model = get_peft_model(
        base_model("llama"), MPNConfig(layers_to_transform=[0, 2], num_patches=2, init_patches=False)
    )
    model.add_adapter("other", MPNConfig(layers_to_transform=[0, 2], num_patches=3, init_patches=False))
    inputs = sample_inputs("llama")
    model.base_model.set_adapter(["default", "other"])
    both = logits(model, inputs)
    model.base_model.set_adapter("default")
    assert model.base_model.absorb_adapter("other") == 3
    model.delete_adapter("other")
    assert model.peft_config["default"].num_patches == 5
    assert all(layer.num_patches("default") == 5 for layer in model.base_model.patch_layers().values())
    assert torch.allclose(logits(model, inputs), both, atol=1e-5)


def test_mpn_absorb_adapter_refuses_other_layers():
    model = get_peft_model(base_model(), MPNConfig(layers_to_transform=[0]))
    model.add_adapter("other", MPNConfig(layers_to_transform=[1]))
    with pytest.raises(ValueError, match="patch different layers"):
        model.base_model.absorb_adapter("other", "default")


def test_composable_with_is_the_one_rule_of_absorb_and_compose():
    from peft_mpn.tuners import NeuronCollisionError

    MPNConfig(layers_to_transform=[1]).composable_with(MPNConfig(layers_to_transform=[1]))
    with pytest.raises(AdapterCompositionError, match=r"'a' and 'b': their activation differ \('relu' vs 'gelu'\)"):
        MPNConfig(activation="relu").composable_with(MPNConfig(activation="gelu"), names=("'a'", "'b'"))
    with pytest.raises(AdapterCompositionError, match="different methods"):
        MPNConfig().composable_with(LAFNConfig(neurons={0: [1]}))
    LAFNConfig(neurons={0: [1, 2]}).composable_with(LAFNConfig(neurons={0: [3], 1: [1]}))
    with pytest.raises(AdapterCompositionError, match="update_input differ"):
        LAFNConfig(neurons={0: [1]}).composable_with(LAFNConfig(neurons={1: [1]}, update_input=True))
    with pytest.raises(NeuronCollisionError) as error:
        LAFNConfig(neurons={0: [1, 2], 2: [5]}).composable_with(LAFNConfig(neurons={0: [2, 3], 2: [5]}))
    assert error.value.collisions == {0: [2], 2: [5]}


def test_lafn_absorb_adapter_collision_changes_nothing():
    model = get_peft_model(base_model(), LAFNConfig(neurons={1: [2, 4]}, init_lafn_weights=False))
    model.add_adapter("other", LAFNConfig(neurons={1: [4, 7]}, init_lafn_weights=False))
    inputs = sample_inputs("gpt2")
    before = logits(model, inputs)
    with pytest.raises(ValueError, match=r"layer 1: \[4\]"):
        model.base_model.absorb_adapter("other", "default")
    assert model.base_model.neuron_sets("default") == {1: [2, 4]}
    assert torch.equal(logits(model, inputs), before)


def test_an_adapter_with_modules_to_save_is_not_absorbed_into_another():
    """Its own trained copies of whole modules (a classifier head) would be dropped by the composition."""
    MPNConfig(modules_to_save=["classifier"]).composable_with(MPNConfig())  # the kept adapter may have them
    with pytest.raises(AdapterCompositionError, match=r"'b' saves its own copy .*modules_to_save=\['score'\]"):
        LAFNConfig(neurons={0: [1]}).composable_with(
            LAFNConfig(neurons={1: [1]}, modules_to_save=["score"]), names=("'a'", "'b'")
        )
