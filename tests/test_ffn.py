"""`ffn_blocks`: the down projections of a model's FFNs, found the same way by the locator and FT-L/FT-M."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import ALL_ARCHS, tiny_model

from peft_mpn import MPNConfig
from peft_mpn.tuners import FFN_SPECS, UnsupportedArchitectureError, ffn_blocks


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_every_layer_by_default_each_with_its_own_down_projection(arch):
    model = tiny_model(arch)
    blocks = ffn_blocks(model)
    assert blocks.model is model and blocks.spec is FFN_SPECS[model.config.model_type]
    assert blocks.num_layers == model.config.num_hidden_layers and blocks.layers == list(range(blocks.num_layers))
    names = {module: name for name, module in model.named_modules()}
    for layer, down in blocks.downs.items():
        assert names[down].endswith(f"{layer}.{blocks.spec.down_proj}")


def test_negative_layers_count_from_the_end_and_duplicates_collapse():
    model = tiny_model("llama")
    blocks = ffn_blocks(model, [-1, 2, 0])
    assert blocks.layers == [0, 2]
    assert blocks.downs[2] is model.model.layers[2].mlp.down_proj


def test_through_a_peft_model_the_base_layers_are_returned():
    plain = tiny_model("llama")
    expected = plain.model.layers[1].mlp.down_proj
    lora = get_peft_model(plain, LoraConfig(target_modules=["down_proj"], r=2))
    blocks = ffn_blocks(lora, [1])
    assert blocks.model is lora.get_base_model()
    assert blocks.downs[1] is expected and type(blocks.downs[1]).__name__ == "Linear"

    plain = tiny_model("gpt2")
    expected = plain.transformer.h[2].mlp.c_proj
    patched = get_peft_model(plain, MPNConfig(layers_to_transform=[2]))  # wraps the whole FFN block
    assert ffn_blocks(patched, [2]).downs[2] is expected


def test_bad_layers_and_unknown_architectures_are_refused():
    with pytest.raises(ValueError, match=r"Layers \[3, -4\] are out of range for this 3-layer model"):
        ffn_blocks(tiny_model("gpt2"), [0, 3, -4])
    with pytest.raises(UnsupportedArchitectureError, match="no transformers config"):
        ffn_blocks(torch.nn.Linear(4, 4))


# -- weight orientation: nn.Linear stores [out, in], GPT-2's Conv1D [in, out] ------------------------------------
def _projections(d: int = 4, f: int = 6):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    return {
        "linear": (torch.nn.Linear(d, f), torch.nn.Linear(f, d)),  # (up, down)
        "conv1d": (Conv1D(f, d), Conv1D(d, f)),  # Conv1D(nf=out, nx=in)
    }


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_neuron_rows_and_widths_agree_with_what_the_projection_computes(kind):
    from peft_mpn.tuners.ffn import ffn_width, model_width, neuron_rows

    up, down = _projections()[kind]
    h, a = torch.randn(3, 4), torch.randn(3, 6)
    assert ffn_width(down) == 6 and model_width(down) == 4
    assert torch.allclose(up(h), h @ neuron_rows(up, down=False).T + up.bias, atol=1e-6)
    assert torch.allclose(down(a), a @ neuron_rows(down, down=True) + down.bias, atol=1e-6)
    index = torch.tensor([4, 1])
    assert torch.equal(neuron_rows(down, down=True, index=index), neuron_rows(down, down=True)[index])


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_appended_neurons_compute_their_rows_and_dropping_them_restores_the_projection(kind):
    from peft_mpn.tuners.ffn import append_neurons, drop_neurons, ffn_width

    up, down = _projections()[kind]
    before = [p.detach().clone() for p in (up.weight, up.bias, down.weight)]
    keys, bias, values = torch.randn(2, 4), torch.randn(2), torch.randn(2, 4)
    h = torch.randn(3, 4)
    expected = down(torch.relu(up(h))) + torch.relu(h @ keys.T + bias) @ values
    append_neurons(up, keys, down=False, bias=bias)
    append_neurons(down, values, down=True)
    assert ffn_width(down) == 8
    assert torch.allclose(down(torch.relu(up(h))), expected, atol=1e-5)
    drop_neurons(up, 2, down=False)
    drop_neurons(down, 2, down=True)
    assert all(torch.equal(p, q) for p, q in zip((up.weight, up.bias, down.weight), before))
    assert ffn_width(down) == 6
