"""Where tensors live and in which precision: the one place that decides it.

- **Device.** A tensor is made where the module that consumes it lives: a batch on the device of the model's input
  embeddings (`input_device`; under an accelerate `device_map` the first block's), a tensor a hook combines with an
  activation on that activation's device.
- **Precision.** The model runs in its own dtype; losses, log-probabilities and the statistics editors fit (gates,
  projections, memory vectors) are computed in float32, and what goes back into the model is cast to the receiving
  tensor's dtype.
"""

from __future__ import annotations

import torch
from torch import nn


def input_device(model: nn.Module) -> torch.device:
    """Where `model`'s inputs go: its input embeddings' device (a dispatched model's first block), else its first
    parameter's (the CPU for a module without parameters)."""
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embeddings = getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):  # a model class that does not implement it
        embeddings = None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.device.type != "meta":
        return weight.device
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def check_placed(model: nn.Module) -> None:
    """Refuse a model whose weights are on the `meta` device (loaded without weights), with the fix. Weights that
    accelerate offloaded (a `device_map` with "cpu" or "disk") are meta too, but their module's hook brings them in
    for each forward pass: those are placed."""
    hooked = [name for name, module in model.named_modules() if hasattr(module, "_hf_hook")]
    meta = [
        name
        for name, parameter in model.named_parameters()
        if parameter.device.type == "meta" and not any(not h or name.startswith(f"{h}.") for h in hooked)
    ]
    if meta:
        raise ValueError(
            f"{len(meta)} of the model's weights are on the meta device (e.g. {meta[0]}): it was built without "
            "weights. Load it with from_pretrained (or materialise it with model.to_empty(device=...) and load a "
            "state dict) before editing."
        )
