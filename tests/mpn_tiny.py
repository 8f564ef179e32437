"""What the MPN tuner tests share: the tiny models' block layout and small builders."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from tiny import DECODER_CONFIGS, HIDDEN, logits, sample_inputs, tiny_model

from peft_mpn import MPNConfig, PatchSet

#: arch -> (ModuleList of blocks, FFN block module inside a block, number of blocks) as the tiny models have them.
LAYOUT = {
    "llama": ("model.layers", "mlp", 3),
    "gemma3_text": ("model.layers", "mlp", 3),
    "qwen2": ("model.layers", "mlp", 3),
    "gpt2": ("transformer.h", "mlp", 3),
    "bert": ("bert.encoder.layer", "output", 2),
    "xlm-roberta": ("roberta.encoder.layer", "output", 2),
}
UNGATED = ["gpt2", "bert", "xlm-roberta"]
GATED = ["llama", "gemma3_text", "qwen2"]
CAUSAL = list(DECODER_CONFIGS)


def ffn_name(arch: str, index: int) -> str:
    stack, block, total = LAYOUT[arch]
    return f"{stack}.{index % total}.{block}"


def all_block_targets(arch: str) -> dict:
    """MPNConfig kwargs that target every block's FFN by name (BERT-likes must leave attention.output alone)."""
    if LAYOUT[arch][1] == "output":
        return {"target_modules": ["output"], "exclude_modules": ["attention.output"]}
    return {"target_modules": ["mlp"]}


def random_patches(n: int, seed: int, scale: float = 1.0, bias: float | None = None) -> PatchSet:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, HIDDEN, generator=generator) / HIDDEN**0.5
    biases = torch.full((n,), bias) if bias is not None else torch.randn(n, generator=generator)
    values = torch.randn(n, HIDDEN, generator=generator) * scale
    return PatchSet(keys, biases, values)


def adapted(arch: str, patches: PatchSet | None = None, **config_kwargs):
    """(peft model, inputs, base logits) with ``patches`` on the default (last-block) FFN."""
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    model = get_peft_model(base, MPNConfig(**config_kwargs))
    if patches is not None:
        model.base_model.add_patches(next(iter(model.base_model.patch_layers())), patches)
    return model, inputs, reference


def module_types(model: torch.nn.Module) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def forward_hook_counts(model: torch.nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def assert_untouched(model: torch.nn.Module, types: dict[str, type], reference: torch.Tensor, inputs) -> None:
    """A failed adapter creation left the model exactly as it was."""
    assert not any(isinstance(module, BaseTunerLayer) for module in model.modules())
    assert module_types(model) == types
    assert torch.equal(logits(model, inputs), reference)


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
