"""What both plugin layers share: wrapping a whole FFN block and adding to its down projection's output."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .ffn import FFNSpec, ffn_width, model_width


class FFNBlockLayer(BaseTunerLayer, nn.Module):
    """A `BaseTunerLayer` that wraps one FFN block (`MPNLayer`, `LAFNLayer`).

    The wrapped block (`base_layer`) runs unchanged; while it runs, a forward hook on its down projection adds
    what the active adapters contribute, so the addition sits inside the FFN, before any
    dropout, residual connection or LayerNorm of the block, and no FFN code is duplicated.

    Subclasses implement `update_layer`, `merge` and `unmerge` as peft's layers do, plus the steps of the
    hooked forward: `_active_terms()` (what adds to this forward pass: active, unmerged adapters),
    `_adapter_terms(name)` (what one adapter adds, for the rows of a mixed adapter batch) and
    `_down_delta(terms, h, a, rows)` (what they add, from the FFN input `h` and the down projection's input `a`
    of the batch rows `rows`, None: every row).

    Args:
        base_layer: the FFN block module to wrap (`mlp`, or `output` for BERT-likes).
        spec: the architecture's row of `FFN_SPECS`.
        block: the transformer block holding `base_layer` (BERT's up projection is a sibling of `output`).
        ffn_activation: the FFN's activation, a transformers `ACT2FN` name.
    """

    def __init__(self, base_layer: nn.Module, spec: FFNSpec, block: nn.Module, ffn_activation: str) -> None:
        nn.Module.__init__(self)
        self.base_layer = base_layer
        self.spec = spec
        self.ffn_activation = ffn_activation
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        # Not a submodule: the model holds it already.
        self.__dict__["_block"] = block
        self.down_proj, self.up_proj  # noqa: B018 - fail early on modules that are not FFN blocks

    # -- structure -------------------------------------------------------------------------------------------
    def _projection(self, path: str) -> nn.Module:
        try:
            return self.spec.projection(self._block, self.get_base_layer(), path)
        except AttributeError as error:
            raise ValueError(
                f"The targeted {type(self.get_base_layer()).__name__} is not an FFN block: no {path!r}. "
                f"{type(self).__name__} wraps FFN blocks; check target_modules / exclude_modules."
            ) from error

    @property
    def down_proj(self) -> nn.Module:
        """The FFN's output projection (F -> d)."""
        return self._projection(self.spec.down_proj)

    @property
    def up_proj(self) -> nn.Module:
        """The FFN's input projection (d -> F)."""
        return self._projection(self.spec.up_proj)

    @property
    def gate_proj(self) -> nn.Module | None:
        """The gate projection of a gated FFN; None for ungated ones."""
        return self._projection(self.spec.gate_proj) if self.spec.gate_proj else None

    @property
    def width(self) -> int:
        """Number of neurons of the FFN (intermediate size F)."""
        return ffn_width(self.down_proj)

    @property
    def hidden_size(self) -> int:
        """The model width d (the FFN's input and output width)."""
        return model_width(self.down_proj)

    def enable_adapters(self, enabled: bool) -> None:
        """Enable or disable the adapters (peft's switch); disabling a merged adapter unmerges it at once.

        peft's LoRA unmerges when its first disabled forward runs; these layers unmerge when disabled, because on
        BERT-likes the FFN's up projection runs (merged) before the wrapped block does, so a forward would first
        see a merged up projection (a wider one for MPN) and an unmerged down projection. As with LoRA, the
        adapter stays unmerged when it is enabled again.
        """
        if not enabled and self.merged:
            self.unmerge()
        super().enable_adapters(enabled)

    def adapter_device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where and in which dtype new adapter weights are made: the down projection's device and float dtype.

        As with peft's own layers, `PeftModel` then upcasts float16/bfloat16 adapter weights to float32 unless it
        is given `autocast_adapter_dtype=False`.
        """
        weight = self.down_proj.weight
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        return weight.device, dtype

    @property
    def in_features(self) -> int:
        """What peft's layers call their input width: the wrapped FFN block maps d -> d."""
        return self.hidden_size

    @property
    def out_features(self) -> int:
        """What peft's layers call their output width: the model width d."""
        return self.hidden_size

    @staticmethod
    def broken_adapter_error(adapter_name: str) -> ValueError:
        """The error `merge(safe_merge=True)` raises for non-finite merged weights: peft's own message."""
        return ValueError(f"NaNs detected in the merged weights. The adapter {adapter_name} seems to be broken")

    # -- forward ---------------------------------------------------------------------------------------------
    def _ffn_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """The FFN input `h` among the arguments of the wrapped block's forward."""
        if len(args) > self.spec.input_arg:
            return args[self.spec.input_arg]
        return kwargs[self.spec.input_kwarg]

    @abstractmethod
    def _adapter_terms(self, adapter_name: str) -> Sequence[Any]:
        """What adapter `adapter_name` adds to the FFN output of this layer; empty: nothing (or not here)."""

    @abstractmethod
    def _active_terms(self) -> Sequence[Any]:
        """What adds to the FFN output in this forward pass (e.g. active, unmerged adapters); empty: nothing."""

    @abstractmethod
    def _down_delta(
        self, terms: Sequence[Any], h: torch.Tensor, a: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """What `terms` add to the down projection's output, from the FFN input `h` and the down input `a` (of
        the batch rows `rows` of this forward pass; None: all of them)."""

    def forward(self, *args: Any, adapter_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The wrapped block's forward, plus what the adapters add to its down projection's output.

        `adapter_names` (one adapter name, or `"__base__"`, per batch row) is peft's mixed-batch argument:
        `FFNBlockTuner` passes it here when it is given to the `PeftModel`'s forward or generate.
        """
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(*args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(list(adapter_names), args, kwargs)
        terms = self._active_terms()
        if not terms:
            return self.base_layer(*args, **kwargs)
        return self._forward_adding(lambda h, a: self._down_delta(terms, h, a), args, kwargs)

    def _forward_adding(self, delta: Callable[..., torch.Tensor | None], args: tuple, kwargs: dict) -> Any:
        """Run the wrapped block with `delta(h, a)` added to its down projection's output."""
        h = self._ffn_input(args, kwargs)

        def add_delta(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            added = delta(h, inputs[0])
            return output if added is None else output + added.to(output.dtype)

        handle = self.down_proj.register_forward_hook(add_delta)
        try:
            return self.base_layer(*args, **kwargs)
        finally:
            handle.remove()

    def _mixed_batch_forward(self, adapter_names: list[str], args: tuple, kwargs: dict) -> Any:
        """Each batch row with the adapter `adapter_names` names for it (`"__base__"`: none), as peft's LoRA does."""
        h = self._ffn_input(args, kwargs)
        if len(adapter_names) != len(h):
            raise ValueError(
                "Length of `adapter_names` should be the same as the number of inputs, but got "
                f"{len(adapter_names)} and {len(h)} respectively."
            )
        if self.merged:
            raise ValueError(
                "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first."
            )
        groups = []
        for name in dict.fromkeys(adapter_names):
            terms = [] if name == "__base__" else self._adapter_terms(name)
            if terms:
                rows = torch.tensor([i for i, n in enumerate(adapter_names) if n == name], device=h.device)
                groups.append((rows, terms))
        if not groups:
            return self.base_layer(*args, **kwargs)

        def mixed_delta(h: torch.Tensor, a: torch.Tensor) -> torch.Tensor | None:
            delta = None
            for rows, terms in groups:
                part = self._down_delta(terms, h[rows], a[rows], rows)
                if part is not None:
                    delta = part.new_zeros((*a.shape[:-1], part.shape[-1])) if delta is None else delta
                    delta = delta.index_copy(0, rows, part.to(delta.dtype))
            return delta

        return self._forward_adding(mixed_delta, args, kwargs)
