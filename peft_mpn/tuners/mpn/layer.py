from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.tuners_utils import check_adapters_to_merge
from torch import nn
from transformers.activations import ACT2FN

from ..ffn import FFNSpec, append_neurons, drop_neurons
from ..gate import OPEN, SubjectGate
from ..layer import FFNBlockLayer
from ..recording import Recorders
from .config import MPNConfig


@dataclass
class PatchSet:
    """Patch neurons as plain tensors: `act(h·keysᵀ + bias)·values`, each added only where its subject gate
    (`gate_keys`, `gate_bias`; see `peft_mpn.tuners.gate`) is open; no gate tensors: ungated patches."""

    keys: torch.Tensor  # [P, d]
    bias: torch.Tensor  # [P]
    values: torch.Tensor  # [P, d]
    gate_keys: torch.Tensor | None = None  # [P, d]
    gate_bias: torch.Tensor | None = None  # [P]

    def __post_init__(self) -> None:
        p, d = self.keys.shape
        if self.bias.shape != (p,) or self.values.shape != (p, d):
            raise ValueError(
                f"Patch shapes disagree: keys {tuple(self.keys.shape)}, bias {tuple(self.bias.shape)}, "
                f"values {tuple(self.values.shape)} (expected [P, d], [P], [P, d])."
            )
        if (self.gate_keys is None) != (self.gate_bias is None):
            raise ValueError("Give both gate_keys and gate_bias, or neither (ungated patches).")
        if self.gate_keys is not None and (self.gate_keys.shape != (p, d) or self.gate_bias.shape != (p,)):
            raise ValueError(
                f"Gate shapes disagree with {p} patches of width {d}: gate_keys {tuple(self.gate_keys.shape)}, "
                f"gate_bias {tuple(self.gate_bias.shape)}."
            )

    def __len__(self) -> int:
        return self.keys.shape[0]

    @property
    def gated(self) -> bool:
        return self.gate_keys is not None

    def tensors(self, gated: bool) -> tuple[torch.Tensor, ...]:
        """(keys, bias, values), then (gate_keys, gate_bias) if `gated` (ungated patches get open gates)."""
        if not gated:
            return self.keys, self.bias, self.values
        if self.gate_keys is None:
            return self.keys, self.bias, self.values, torch.zeros_like(self.keys), torch.full_like(self.bias, OPEN)
        return self.keys, self.bias, self.values, self.gate_keys, self.gate_bias

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> PatchSet:
        """The same patches with `fn` applied to every tensor (e.g. a copy, or a selection of rows)."""
        gate = (fn(self.gate_keys), fn(self.gate_bias)) if self.gated else (None, None)
        return PatchSet(fn(self.keys), fn(self.bias), fn(self.values), *gate)


class MPNLayer(FFNBlockLayer):
    """Wraps an FFN block and adds patch neurons to the output of its down projection.

    The wrapped block's forward receives the FFN input `h`; while it runs, a forward hook adds
    `act(h·Kᵀ + b)·V` of every active adapter to the down projection's output, so the patch sits inside
    the FFN (before any dropout, residual connection or LayerNorm of the block).

    Editors use `record_inputs`, `pre_activations`, `extra_patches` and `add_patches`.
    """

    adapter_layer_names = ("mpn_keys", "mpn_bias", "mpn_values", "mpn_gate_keys", "mpn_gate_bias")
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
        super().__init__(base_layer, spec, block, ffn_activation)
        self.mpn_keys = nn.ParameterDict({})
        self.mpn_bias = nn.ParameterDict({})
        self.mpn_values = nn.ParameterDict({})
        self.mpn_gate_keys = nn.ParameterDict({})  # only for adapters with a `gate_layer`
        self.mpn_gate_bias = nn.ParameterDict({})
        self.mpn_activation: dict[str, str] = {}
        self.__dict__["_gates"] = {}  # adapter name -> its SubjectGate (set by the tuner; not a submodule)
        self.__dict__["_extra"] = None
        self.__dict__["_recorders"] = Recorders()
        self.update_layer(adapter_name, config)

    def num_patches(self, adapter_name: str) -> int:
        return self.mpn_keys[adapter_name].shape[0] if adapter_name in self.mpn_keys else 0

    def gated(self, adapter_name: str) -> bool:
        """Whether `adapter_name`'s patches carry subject gates (its config has a `gate_layer`)."""
        return adapter_name in self.mpn_gate_keys

    def _names(self, adapter_name: str) -> tuple[str, ...]:
        return self.adapter_layer_names if self.gated(adapter_name) else self.adapter_layer_names[:3]

    def patches(self, adapter_name: str) -> PatchSet:
        return PatchSet(*(getattr(self, names)[adapter_name] for names in self._names(adapter_name)))

    def attach_gate(self, adapter_name: str, gate: SubjectGate) -> None:
        """The `SubjectGate` that opens `adapter_name`'s gated patches (the tuner attaches it)."""
        self._gates[adapter_name] = gate

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
        shape = (config.num_patches, hidden_size)
        # Random keys either way: with zero keys and values a patch's output and every gradient are exactly zero.
        keys = torch.randn(shape) / hidden_size**0.5
        values = torch.zeros(shape) if config.init_patches else torch.randn(shape)
        bias = torch.zeros(config.num_patches)
        # Like peft's layers: the base weights' device and float dtype; peft then upcasts to float32 unless
        # autocast_adapter_dtype=False.
        device, dtype = self.adapter_device_and_dtype()
        self.mpn_keys[adapter_name] = nn.Parameter(keys.to(device, dtype))
        self.mpn_bias[adapter_name] = nn.Parameter(bias.to(device, dtype))
        self.mpn_values[adapter_name] = nn.Parameter(values.to(device, dtype))
        self.mpn_activation[adapter_name] = config.activation
        if config.gate_layer is not None:
            self.add_gates(adapter_name)
        self.set_adapter(self.active_adapters)

    def add_gates(self, adapter_name: str) -> None:
        """Give `adapter_name`'s patches open gates (zero keys, bias `OPEN`), like theirs in dtype, device and
        trainability, until an editor (or a saved adapter) sets them."""
        keys = self.mpn_keys[adapter_name]
        self.mpn_gate_keys[adapter_name] = nn.Parameter(torch.zeros_like(keys.detach()), keys.requires_grad)
        bias = torch.full_like(self.mpn_bias[adapter_name].detach(), OPEN)
        self.mpn_gate_bias[adapter_name] = nn.Parameter(bias, keys.requires_grad)

    def add_patches(self, adapter_name: str, patches: PatchSet) -> None:
        """Append patch neurons to `adapter_name` (their trainability follows the existing ones)."""
        if self.merged:
            raise RuntimeError("Unmerge the adapter before adding patches.")
        if patches.keys.shape[1] != self.hidden_size:
            raise ValueError(f"Patch keys have width {patches.keys.shape[1]}, the FFN input {self.hidden_size}.")
        self._check_gates(adapter_name, patches)
        for names, new in zip(self._names(adapter_name), patches.tensors(self.gated(adapter_name))):
            store = getattr(self, names)
            old = store[adapter_name]
            joined = torch.cat([old.detach(), new.detach().to(device=old.device, dtype=old.dtype)])
            store[adapter_name] = nn.Parameter(joined, requires_grad=old.requires_grad)

    def set_patches(self, adapter_name: str, patches: PatchSet) -> None:
        """Replace `adapter_name`'s patches with (a copy of) `patches`; their trainability stays as it was."""
        if self.merged:
            raise RuntimeError("Unmerge the adapter before replacing its patches.")
        self._check_gates(adapter_name, patches)
        for names, new in zip(self._names(adapter_name), patches.tensors(self.gated(adapter_name))):
            store = getattr(self, names)
            old = store[adapter_name]
            copy = new.detach().to(device=old.device, dtype=old.dtype).clone()
            store[adapter_name] = nn.Parameter(copy, requires_grad=old.requires_grad)

    def clear_patches(self, adapter_name: str) -> None:
        if self.merged:
            raise RuntimeError("Unmerge the adapter before clearing its patches.")
        for names in self._names(adapter_name):
            store = getattr(self, names)
            old = store[adapter_name]
            store[adapter_name] = nn.Parameter(old.detach()[:0].clone(), requires_grad=old.requires_grad)

    def _check_gates(self, adapter_name: str, patches: PatchSet) -> None:
        if patches.gated and not self.gated(adapter_name):
            raise ValueError(
                f"These patches carry subject gates, but adapter {adapter_name!r} has none: make it with "
                "MPNConfig(gate_layer=...) (or call enable_subject_gates on the tuner first)."
            )

    # -- hooks for editors -----------------------------------------------------------------------------------
    def record_inputs(self) -> AbstractContextManager[list[torch.Tensor]]:
        """Collect the FFN input `h` (detached) of every forward pass inside the block."""
        return self._recorders.record()

    @contextmanager
    def extra_patches(self, adapter_name: str, patches: PatchSet) -> Iterator[None]:
        """Run forward passes with candidate `patches` added to `adapter_name`'s (gradients flow to them)."""
        self.__dict__["_extra"] = (adapter_name, patches)
        try:
            yield
        finally:
            self.__dict__["_extra"] = None

    def pre_activations(self, h: torch.Tensor, patches: PatchSet) -> torch.Tensor:
        """`h·Kᵀ + b` for `patches`: the value T-Patcher's activation and memory losses read."""
        return h.to(patches.keys.dtype) @ patches.keys.T + patches.bias

    # -- forward / merge -------------------------------------------------------------------------------------
    def _term(self, adapter_name: str, patches: PatchSet) -> tuple[PatchSet, nn.Module, SubjectGate | None]:
        gate = None
        if self.gated(adapter_name):
            gate = self._gates.get(adapter_name)
            if gate is None:
                raise RuntimeError(
                    f"Adapter {adapter_name!r} has subject-gated patches but no gate is attached; load it with "
                    "PeftModel.from_pretrained (or get_peft_model), which attaches one."
                )
        return patches, self.activation(adapter_name), gate

    def _adapter_terms(self, adapter_name: str) -> list[tuple[PatchSet, nn.Module, SubjectGate | None]]:
        """(patches, activation, gate) of `adapter_name` if it has patches in this layer."""
        if adapter_name in self.mpn_keys and self.num_patches(adapter_name) > 0:
            return [self._term(adapter_name, self.patches(adapter_name))]
        return []

    def _active_terms(self) -> list[tuple[PatchSet, nn.Module, SubjectGate | None]]:
        """(patches, activation, gate) of every active, unmerged adapter with patches, and of `extra_patches`."""
        sets = []
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                sets += self._adapter_terms(name)
        if self._extra is not None and self._extra[0] in self.mpn_keys:
            sets.append(self._term(*self._extra))
        return sets

    def _sum_patches(
        self,
        terms: Sequence[tuple[PatchSet, nn.Module, SubjectGate | None]],
        h: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        out = None
        for patches, act, gate in terms:
            fired = act(self.pre_activations(h, patches))
            if gate is not None and patches.gated and h.dim() == 3:
                opened = gate.open(patches.gate_keys, patches.gate_bias, h.shape[1])
                if opened is not None:
                    fired = fired * (opened if rows is None else opened[rows])
            contribution = fired @ patches.values
            out = contribution if out is None else out + contribution
        return out

    def _down_delta(
        self,
        terms: Sequence[tuple[PatchSet, nn.Module, SubjectGate | None]],
        h: torch.Tensor,
        a: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        return self._sum_patches(terms, h, rows)  # patches read the FFN input, not the down projection's

    def patch_output(self, h: torch.Tensor) -> torch.Tensor | None:
        """The summed output of all active patches for FFN input `h` (None when there are none)."""
        return self._sum_patches(self._active_terms(), h)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._recorders:
            self._recorders.add(self._ffn_input(args, kwargs).detach())
        return super().forward(*args, **kwargs)

    def _check_mergeable(self, adapter_name: str) -> None:
        if self.gated(adapter_name) and bool(self.mpn_gate_keys[adapter_name].any()):
            raise ValueError(
                "Cannot merge subject-gated MPN patches: a gate depends on earlier positions of the text, which no "
                "FFN neuron can compute. Keep the adapter, or use unload() to get the base model back."
            )
        if self.spec.is_gated:
            raise ValueError(
                "Cannot merge MPN patches into a gated FFN (act(gate·h) ⊙ (up·h), no bias): a patch neuron "
                "act(k·h + b)·v has no exact equivalent there. Keep the adapter (its overhead is one small "
                "matmul), or use unload() to get the base model back."
            )
        if self.mpn_activation[adapter_name] != self.ffn_activation:
            raise ValueError(
                f"Cannot merge: the patches use {self.mpn_activation[adapter_name]!r} but the FFN uses "
                f"{self.ffn_activation!r}; merged neurons would compute something else. To merge, make the "
                "adapter with MPNConfig(activation='ffn') (its patches then use the FFN's activation)."
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
            tensors = (patches.keys, patches.bias, patches.values)  # gates are all open here
            # The merged neurons are the patches themselves, in the FFN's dtype.
            keys, bias, values = (t.detach().to(self.up_proj.weight.dtype) for t in tensors)
            if safe_merge and not all(torch.isfinite(t).all() for t in (keys, bias, values)):
                raise self.broken_adapter_error(name)
            append_neurons(self.up_proj, keys, down=False, bias=bias)
            append_neurons(self.down_proj, values, down=True)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        while self.merged_adapters:
            count = self.num_patches(self.merged_adapters.pop())
            drop_neurons(self.up_proj, count, down=False)
            drop_neurons(self.down_proj, count, down=True)
