"""What the LAFN tuner tests share: the tiny models' block layout, the located neurons and small builders."""

from __future__ import annotations

import torch
from peft import PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from tiny import DECODER_CONFIGS, logits, sample_inputs, tiny_model

from peft_mpn import LAFNConfig

WIDTH = 64  # intermediate_size of every tiny model

#: arch -> (ModuleList of blocks, FFN block module inside a block, number of blocks) as the tiny models have them.
LAYOUT = {
    "llama": ("model.layers", "mlp", 3),
    "gemma3_text": ("model.layers", "mlp", 3),
    "qwen2": ("model.layers", "mlp", 3),
    "gpt2": ("transformer.h", "mlp", 3),
    "bert": ("bert.encoder.layer", "output", 2),
    "xlm-roberta": ("roberta.encoder.layer", "output", 2),
}
DECODERS = list(DECODER_CONFIGS)
#: the located neurons the tests use: in the first and the last block
NEURONS = {0: [3, 17, 40], -1: [1, 5, 9, 63]}


def ffn_name(arch: str, index: int) -> str:
    stack, block, total = LAYOUT[arch]
    return f"{stack}.{index % total}.{block}"


def normalised(arch: str, neurons: dict[int, list[int]]) -> dict[int, list[int]]:
    return dict(sorted((layer % LAYOUT[arch][2], list(indices)) for layer, indices in neurons.items()))


def adapted(arch: str, neurons: dict | None = None, randomise: bool = False, **config_kwargs):
    """(peft model, inputs, base logits); ``randomise`` fills the deltas with seeded noise."""
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    model = get_peft_model(base, LAFNConfig(neurons=dict(neurons or NEURONS), **config_kwargs))
    if randomise:
        fill_random(model, seed=1)
    return model, inputs, reference


def fill_random(model: PeftModel, seed: int, adapter_name: str | None = None, scale: float = 1.0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for delta in model.base_model.delta_parameters(adapter_name):
            delta.copy_(torch.randn(delta.shape, generator=generator) * scale / delta.shape[1] ** 0.5)


def module_types(model: torch.nn.Module) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def forward_hook_counts(model: torch.nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, types: dict, reference: torch.Tensor, inputs, weights: dict) -> None:
    """A refused adapter creation left the model exactly as it was."""
    assert not any(isinstance(module, BaseTunerLayer) for module in model.modules())
    assert module_types(model) == types
    after = model.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], weights[k]) for k in weights)
    assert torch.equal(logits(model, inputs), reference)


def changed_neurons(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """For every tensor that changed: the FFN neurons (indices along its dimension of size WIDTH) that changed."""
    assert before.keys() == after.keys()
    changed = {}
    for key, old in before.items():
        new = after[key]
        assert new.shape == old.shape, key
        if torch.equal(new, old):
            continue
        assert WIDTH in old.shape and old.dim() == 2, f"{key} {tuple(old.shape)} changed but holds no FFN neurons"
        dim = list(old.shape).index(WIDTH)
        rows = (new != old).any(dim=1 - dim)
        changed[key] = rows.nonzero().flatten().tolist()
    return changed


def ffn_outputs(model: torch.nn.Module, layer_name: str, inputs) -> torch.Tensor:
    """The output of the FFN block ``layer_name`` (first element if a tuple) for ``inputs``."""
    captured = []
    root = model.get_base_model() if isinstance(model, PeftModel) else model
    handle = root.get_submodule(layer_name).register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        logits(model, inputs)
    finally:
        handle.remove()
    return captured[0][0] if isinstance(captured[0], tuple) else captured[0]
