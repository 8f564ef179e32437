"""Run the frozen blocks below the patched one once, then replay them.

The base model is frozen and patches live in one block's FFN, so for a fixed batch everything the blocks below
that one compute never changes while an edit trains. :class:`PrefixCache` runs the model once up to the patched
block, keeps the hidden states entering it (and the FFN inputs there), and during training swaps the lower
blocks for stand-ins that return the cached states. Embeddings, masks and rotary tables are still built by the
model's own forward (they are cheap), so this works for any architecture whose blocks sit in a ModuleList.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn

from ..tuners.ffn import locate_block
from ..tuners.mpn import MPNLayer


class _StopForward(Exception):
    pass


class _Replay(nn.Module):
    """Stands in for a lower block: returns the cached output and ignores its input."""

    def __init__(self, original: nn.Module, output: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["original"] = original
        self.__dict__["output"] = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output

    def __getattr__(self, name: str) -> Any:  # models read attributes such as `attention_type` off their blocks
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["original"], name)


def capture_ffn_inputs(model: nn.Module, layer: MPNLayer, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The FFN inputs ``h`` at ``layer`` for ``inputs`` ([B, S, d]); stops the forward right after that block."""
    return _run_until(model, layer, inputs, below=None)[1]


def _run_until(
    model: nn.Module, layer: MPNLayer, inputs: dict[str, torch.Tensor], below: nn.Module | None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    entering: list[torch.Tensor] = []
    handles = []
    if below is not None:
        handles.append(below.register_forward_hook(lambda m, i, out: entering.append(out)))

    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise _StopForward

    handles.append(layer.register_forward_hook(stop))
    try:
        with layer.record_inputs() as recorded, torch.no_grad(), suppress(_StopForward):
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not recorded:
        raise RuntimeError("The patched FFN was not reached in the forward pass; is the adapter on this model?")
    return (entering[0] if entering else None), recorded[0]


class PrefixCache:
    """Cached lower-block outputs and FFN inputs for one fixed batch.

    Args:
        model: the (PEFT-wrapped) model.
        layer_name: module name of the MPN layer, relative to ``root``.
        layer: that layer.
        inputs: the batch (every tensor indexed by row on dim 0).
        enabled: with False, nothing is replayed (same results, full cost: for measuring the speed-up).
        root: the module ``layer_name`` is relative to (default: ``model``).
    """

    def __init__(
        self,
        model: nn.Module,
        layer_name: str,
        layer: MPNLayer,
        inputs: dict[str, torch.Tensor],
        enabled: bool = True,
        root: nn.Module | None = None,
    ) -> None:
        location = locate_block(layer_name)
        self.stack = (root or model).get_submodule(location.stack)
        self.index = location.index
        self.enabled = enabled and self.index > 0
        below = self.stack[self.index - 1] if self.index > 0 else None
        self.entering, self.ffn_inputs = _run_until(model, layer, inputs, below)

    @contextmanager
    def replay(self, rows: torch.Tensor | None = None) -> Iterator[None]:
        """Within the block, forward passes on ``inputs[rows]`` skip the lower blocks."""
        if not self.enabled:
            yield
            return
        cached = self.entering if rows is None else self.entering[rows]
        originals = [self.stack[i] for i in range(self.index)]
        try:
            for i, original in enumerate(originals):
                self.stack[i] = _Replay(original, cached)
            yield
        finally:
            for i, original in enumerate(originals):
                self.stack[i] = original
