from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

from ..ffn import FFNSpec
from .config import MPNConfig


@dataclass
class PatchSet:
    """Patch neurons as plain tensors: ``act(h·keysᵀ + bias)·values``."""

    keys: torch.Tensor  # [P, d]
    bias: torch.Tensor  # [P]
    values: torch.Tensor  # [P, d]

    def __post_init__(self) -> None:
        p, d = self.keys.shape
        if self.bias.shape != (p,) or self.values.shape != (p, d):
            raise ValueError(
                f"Patch shapes disagree: keys {tuple(self.keys.shape)}, bias {tuple(self.bias.shape)}, "
                f"values {tuple(self.values.shape)} (expected [P, d], [P], [P, d])."
            )

    def __len__(self) -> int:
        return self.keys.shape[0]


class MPNLayer(BaseTunerLayer, nn.Module):
    """Wraps an FFN block and adds patch neurons to the output of its down projection.

    The wrapped block's forward receives the FFN input ``h``; while it runs, a forward hook adds
    ``act(h·Kᵀ + b)·V`` of every active adapter to the down projection's output, so the patch sits inside
    the FFN (before any dropout, residual connection or LayerNorm of the block).

    Editors use :meth:`record_inputs`, :meth:`pre_activations`, :meth:`extra_patches` and :meth:`add_patches`.
    """

    adapter_layer_names = ("mpn_keys", "mpn_bias", "mpn_values")
    other_param_names = ("mpn_activation",)

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: MPNConfig,
        spec: FFNSpec,
        block: nn.Module,
        ffn_activation: str,
        **kwargs: Any,
    ) -> None:
        nn.Module.__init__(self)
        self.base_layer = base_layer
        self.spec = spec
        self.ffn_activation = ffn_activation
        self.mpn_keys = nn.ParameterDict({})
        self.mpn_bias = nn.ParameterDict({})
        self.mpn_values = nn.ParameterDict({})
        self.mpn_activation: dict[str, str] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        # Not submodules: the block holds them already (BERT's input projection is a sibling of ``output``).
        self.__dict__["_block"] = block
        self.__dict__["_extra"] = None
        self.__dict__["_recorders"] = []
        self.down_proj, self.up_proj  # noqa: B018 - fail early on modules that are not FFN blocks
        self.update_layer(adapter_name, config)

    # -- structure -------------------------------------------------------------------------------------------
    @property
    def down_proj(self) -> nn.Module:
        path = self.spec.relative_to_block(self.spec.down_proj)
        try:
            return self.get_base_layer().get_submodule(path)
        except AttributeError as error:
            raise ValueError(
                f"The targeted module {type(self.get_base_layer()).__name__} has no {path!r}: MPN patches FFN "
                "blocks; check target_modules."
            ) from error

    @property
    def up_proj(self) -> nn.Module:
        try:
            if self.spec.up_proj.startswith(self.spec.block + "."):
                return self.get_base_layer().get_submodule(self.spec.relative_to_block(self.spec.up_proj))
            return self._block.get_submodule(self.spec.up_proj)
        except AttributeError as error:
            raise ValueError(
                f"The targeted {type(self.get_base_layer()).__name__} is not an FFN block: its block has no "
                f"{self.spec.up_proj!r}. MPN patches FFN blocks; check target_modules / exclude_modules."
            ) from error

    @property
    def hidden_size(self) -> int:
        weight = self.down_proj.weight
        return weight.shape[1] if isinstance(self.down_proj, Conv1D) else weight.shape[0]

    def num_patches(self, adapter_name: str) -> int:
        return self.mpn_keys[adapter_name].shape[0] if adapter_name in self.mpn_keys else 0

    def patches(self, adapter_name: str) -> PatchSet:
        return PatchSet(self.mpn_keys[adapter_name], self.mpn_bias[adapter_name], self.mpn_values[adapter_name])

    def activation(self, adapter_name: str) -> nn.Module:
        return ACT2FN[self.mpn_activation[adapter_name]]

    # -- adapters --------------------------------------------------------------------------------------------
    def update_layer(self, adapter_name: str, config: MPNConfig, **kwargs: Any) -> None:
        hidden_size = self.hidden_size
        if config.hidden_size is not None and config.hidden_size != hidden_size:
            raise ValueError(
                f"This MPN adapter was made for an FFN of width {config.hidden_size}, but the targeted FFN has "
                f"width {hidden_size}. Load it onto the base model it was made for "
                f"({config.base_model_name_or_path or 'see base_model_name_or_path in adapter_config.json'})."
            )
        if config.activation not in ACT2FN:
            raise ValueError(f"Unknown activation {config.activation!r}; use a transformers ACT2FN name.")
        weight = self.down_proj.weight
        shape = (config.num_patches, hidden_size)
        if config.init_patches or config.num_patches == 0:
            keys, values = torch.zeros(shape), torch.zeros(shape)
        else:
            keys, values = torch.randn(shape) / hidden_size**0.5, torch.randn(shape)
        bias = torch.zeros(config.num_patches)
        self.mpn_keys[adapter_name] = nn.Parameter(keys.to(weight.device))
        self.mpn_bias[adapter_name] = nn.Parameter(bias.to(weight.device))
        self.mpn_values[adapter_name] = nn.Parameter(values.to(weight.device))
        self.mpn_activation[adapter_name] = config.activation
        self.set_adapter(self.active_adapters)

    def add_patches(self, adapter_name: str, patches: PatchSet) -> None:
        """Append patch neurons to ``adapter_name`` (their trainability follows the existing ones)."""
        if self.merged:
            raise RuntimeError("Unmerge the adapter before adding patches.")
        if patches.keys.shape[1] != self.hidden_size:
            raise ValueError(f"Patch keys have width {patches.keys.shape[1]}, the FFN input {self.hidden_size}.")
        for names, new in zip(self.adapter_layer_names, (patches.keys, patches.bias, patches.values)):
            store = getattr(self, names)
            old = store[adapter_name]
            joined = torch.cat([old.detach(), new.detach().to(device=old.device, dtype=old.dtype)])
            store[adapter_name] = nn.Parameter(joined, requires_grad=old.requires_grad)

    def clear_patches(self, adapter_name: str) -> None:
        if self.merged:
            raise RuntimeError("Unmerge the adapter before clearing its patches.")
        for names in self.adapter_layer_names:
            store = getattr(self, names)
            old = store[adapter_name]
            store[adapter_name] = nn.Parameter(old.detach()[:0].clone(), requires_grad=old.requires_grad)

    # -- hooks for editors -----------------------------------------------------------------------------------
    @contextmanager
    def record_inputs(self) -> Iterator[list[torch.Tensor]]:
        """Collect the FFN input ``h`` (detached) of every forward pass inside the block."""
        recorded: list[torch.Tensor] = []
        self._recorders.append(recorded)
        try:
            yield recorded
        finally:
            self._recorders.remove(recorded)

    @contextmanager
    def extra_patches(self, adapter_name: str, patches: PatchSet) -> Iterator[None]:
        """Run forward passes with candidate ``patches`` added to ``adapter_name``'s (gradients flow to them)."""
        self.__dict__["_extra"] = (adapter_name, patches)
        try:
            yield
        finally:
            self.__dict__["_extra"] = None

    def pre_activations(self, h: torch.Tensor, patches: PatchSet) -> torch.Tensor:
        """``h·Kᵀ + b`` for ``patches``: the value T-Patcher's activation and memory losses read."""
        return h.to(patches.keys.dtype) @ patches.keys.T + patches.bias

    # -- forward / merge -------------------------------------------------------------------------------------
    def _active_patch_sets(self) -> list[tuple[PatchSet, nn.Module]]:
        sets = []
        for name in self.active_adapters:
            if name in self.mpn_keys and self.num_patches(name) > 0 and name not in self.merged_adapters:
                sets.append((self.patches(name), self.activation(name)))
        if self._extra is not None and self._extra[0] in self.mpn_keys:
            sets.append((self._extra[1], self.activation(self._extra[0])))
        return sets

    def patch_output(self, h: torch.Tensor) -> torch.Tensor | None:
        """The summed output of all active patches for FFN input ``h`` (None when there are none)."""
        out = None
        for patches, act in self._active_patch_sets():
            contribution = act(self.pre_activations(h, patches)) @ patches.values
            out = contribution if out is None else out + contribution
        return out

    def _ffn_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        if len(args) > self.spec.input_arg:
            return args[self.spec.input_arg]
        return kwargs[self.spec.input_kwarg]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._recorders:
            h = self._ffn_input(args, kwargs).detach()
            for recorded in self._recorders:
                recorded.append(h)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(*args, **kwargs)
        if not self._active_patch_sets():
            return self.base_layer(*args, **kwargs)
        h = self._ffn_input(args, kwargs)

        def add_patches(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            extra = self.patch_output(h)
            return output if extra is None else output + extra.to(output.dtype)

        handle = self.down_proj.register_forward_hook(add_patches)
        try:
            return self.base_layer(*args, **kwargs)
        finally:
            handle.remove()

    def _check_mergeable(self, adapter_name: str) -> None:
        if self.spec.is_gated:
            raise ValueError(
                "Cannot merge MPN patches into a gated FFN (act(gate·h) ⊙ (up·h), no bias): a patch neuron "
                "act(k·h + b)·v has no exact equivalent there. Keep the adapter (its overhead is one small "
                "matmul), or use unload() to get the base model back."
            )
        if self.mpn_activation[adapter_name] != self.ffn_activation:
            raise ValueError(
                f"Cannot merge: the patches use {self.mpn_activation[adapter_name]!r} but the FFN uses "
                f"{self.ffn_activation!r}; merged neurons would compute something else."
            )
        if getattr(self.up_proj, "bias", None) is None:
            raise ValueError("Cannot merge: the FFN input projection has no bias to hold the patch biases.")

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Append the patches as real neurons of a wider FFN (ungated FFNs with the same activation only)."""
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.mpn_keys:
                continue
            self._check_mergeable(name)
            patches = self.patches(name)
            if safe_merge and not all(torch.isfinite(t).all() for t in (patches.keys, patches.bias, patches.values)):
                raise ValueError(f"NaNs or infs in adapter {name!r}; not merging.")
            _widen(self.up_proj, self.down_proj, patches)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            _narrow(self.up_proj, self.down_proj, self.num_patches(name))


def _widen(up: nn.Module, down: nn.Module, patches: PatchSet) -> None:
    keys, bias, values = (t.detach().to(up.weight.dtype) for t in (patches.keys, patches.bias, patches.values))
    if isinstance(up, Conv1D):
        up.weight = nn.Parameter(torch.cat([up.weight.data, keys.T], dim=1), requires_grad=False)
        up.bias = nn.Parameter(torch.cat([up.bias.data, bias]), requires_grad=False)
        up.nf += len(patches)
        down.weight = nn.Parameter(torch.cat([down.weight.data, values], dim=0), requires_grad=False)
        down.nx += len(patches)
    else:
        up.weight = nn.Parameter(torch.cat([up.weight.data, keys], dim=0), requires_grad=False)
        up.bias = nn.Parameter(torch.cat([up.bias.data, bias]), requires_grad=False)
        up.out_features += len(patches)
        down.weight = nn.Parameter(torch.cat([down.weight.data, values.T], dim=1), requires_grad=False)
        down.in_features += len(patches)


def _narrow(up: nn.Module, down: nn.Module, count: int) -> None:
    if count == 0:
        return
    if isinstance(up, Conv1D):
        up.weight = nn.Parameter(up.weight.data[:, :-count].clone(), requires_grad=False)
        up.bias = nn.Parameter(up.bias.data[:-count].clone(), requires_grad=False)
        up.nf -= count
        down.weight = nn.Parameter(down.weight.data[:-count].clone(), requires_grad=False)
        down.nx -= count
    else:
        up.weight = nn.Parameter(up.weight.data[:-count].clone(), requires_grad=False)
        up.bias = nn.Parameter(up.bias.data[:-count].clone(), requires_grad=False)
        up.out_features -= count
        down.weight = nn.Parameter(down.weight.data[:, :-count].clone(), requires_grad=False)
        down.in_features -= count
