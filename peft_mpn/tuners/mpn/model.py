from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import FFNBlockTuner
from ..ffn import activation_name, ffn_spec, num_layers
from ..gate import SubjectGatedTuner
from .config import MPNConfig
from .layer import MPNLayer, PatchSet


class MPNModel(SubjectGatedTuner, FFNBlockTuner):
    """Multilingual Patch Neuron (MPN) tuner: patch neurons added to FFN blocks.

    Created by `peft.get_peft_model(model, MPNConfig())` (after `import peft_mpn`). A fresh adapter has no
    patches and leaves the model unchanged; `peft_mpn.editing.MPNEditor` learns patches for edit requests.

    Built like every peft tuner, from the model to adapt, its `MPNConfig` (`peft_config`) and the
    adapter name (default `"default"`).

    Examples:
        ```py
        >>> import peft_mpn
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, peft_mpn.MPNConfig(layers_to_transform=[-1]))
        >>> model.base_model.patch_layers()  # {"model.model.layers.17.mlp": MPNLayer(...)}
        ```
    """

    prefix: str = "mpn_"
    tuner_layer_cls = MPNLayer

    def _prepare_adapter_config(self, peft_config: MPNConfig, model_config: dict) -> MPNConfig:
        spec = ffn_spec(model_config)
        if self._default_targets(peft_config, spec):
            peft_config.layers_pattern = spec.layers
            if peft_config.layers_to_transform is None:
                peft_config.layers_to_transform = [-1]
        if peft_config.layers_to_transform is not None:
            total = num_layers(model_config)
            indices = peft_config.layers_to_transform
            indices = [indices] if isinstance(indices, int) else list(indices)
            out_of_range = [i for i in indices if not -total <= i < total]
            if out_of_range:
                raise ValueError(f"layers_to_transform {out_of_range} out of range for a {total}-layer model.")
            peft_config.layers_to_transform = sorted({i % total for i in indices})
        if peft_config.gate_layer is not None:
            peft_config.gate_layer = self._gate_layer(peft_config, peft_config.gate_layer, num_layers(model_config))
        if peft_config.activation in (None, "ffn"):
            peft_config.activation = activation_name(model_config)
        if peft_config.hidden_size is None:
            peft_config.hidden_size = int(self.model.config.hidden_size)
        elif peft_config.hidden_size != self.model.config.hidden_size:
            raise ValueError(
                f"This MPN adapter was made for a model of hidden size {peft_config.hidden_size}, but this model "
                f"has hidden size {self.model.config.hidden_size}. Load it onto the base model it was made for "
                f"({peft_config.base_model_name_or_path or 'see adapter_config.json'})."
            )
        return peft_config

    def _gated_blocks(self, peft_config: MPNConfig) -> list[int] | None:
        return peft_config.layers_to_transform

    def _gated_layers(self, adapter_name: str) -> dict[str, MPNLayer]:
        return self.patch_layers(adapter_name)

    # -- the interface editors use ---------------------------------------------------------------------------
    def patch_layers(self, adapter_name: str | None = None) -> dict[str, MPNLayer]:
        """The MPN layers that hold `adapter_name` (default: the active adapter), by module name."""
        return self.adapter_layers(MPNLayer, adapter_name)

    def num_patches(self, adapter_name: str | None = None) -> int:
        return self.peft_config[self.resolve_adapter(adapter_name)].num_patches

    def clear_patches(self, adapter_name: str | None = None) -> None:
        """Remove every patch of `adapter_name`: the adapter is fresh again and reproduces the base model."""
        adapter_name = self.resolve_adapter(adapter_name)
        for layer in self.patch_layers(adapter_name).values():
            layer.clear_patches(adapter_name)
        self.peft_config[adapter_name].num_patches = 0

    def drop_patches(self, indices: Sequence[int], adapter_name: str | None = None) -> dict[str, PatchSet]:
        """Remove the patches at `indices` (from every layer of `adapter_name`).

        Returns every layer's patches as they were before, for `restore_patches`.
        """
        adapter_name = self.resolve_adapter(adapter_name)
        before = self.patch_state(adapter_name)
        for layer in self.patch_layers(adapter_name).values():
            patches = layer.patches(adapter_name)
            keep = torch.ones(len(patches), dtype=torch.bool)
            keep[list(indices)] = False
            layer.set_patches(adapter_name, patches.map(lambda t, keep=keep: t[keep]))
        self.peft_config[adapter_name].num_patches -= len(set(indices))
        return before

    def patch_state(self, adapter_name: str | None = None) -> dict[str, PatchSet]:
        """A copy of every layer's patches of `adapter_name`, by module name (for `restore_patches`)."""
        adapter_name = self.resolve_adapter(adapter_name)
        state = {}
        for name, layer in self.patch_layers(adapter_name).items():
            patches = layer.patches(adapter_name)
            state[name] = patches.map(lambda t: t.detach().clone())
        return state

    def restore_patches(self, state: dict[str, PatchSet], adapter_name: str | None = None) -> None:
        """Put back the patches `patch_state` (or `drop_patches`) returned: the adapter is exactly as it was then."""
        adapter_name = self.resolve_adapter(adapter_name)
        layers = self.patch_layers(adapter_name)
        for name, patches in state.items():
            layers[name].set_patches(adapter_name, patches)
        self.peft_config[adapter_name].num_patches = len(next(iter(state.values())))

    def add_patches(self, layer_name: str, patches: PatchSet, adapter_name: str | None = None) -> None:
        """Append `patches` to one layer of `adapter_name` and record the new count in its config.

        Other layers of the same adapter get inert patches (zero keys and values contribute exactly zero), so
        `num_patches` stays one number per adapter.
        """
        adapter_name = self.resolve_adapter(adapter_name)
        layers = self.patch_layers(adapter_name)
        if layer_name not in layers:
            raise KeyError(f"No MPN layer {layer_name!r} in adapter {adapter_name!r}; have {sorted(layers)}.")
        if not all(bool(torch.isfinite(t).all()) for t in (patches.keys, patches.bias, patches.values)):
            raise ValueError(
                "The patches hold NaN or infinite values and were not added (the adapter is unchanged): every "
                "prompt's logits would become NaN. Train them with finite settings (e.g. a lower learning rate)."
            )
        for name, layer in layers.items():
            if name == layer_name:
                layer.add_patches(adapter_name, patches)
            else:
                zeros = torch.zeros_like(patches.keys)
                layer.add_patches(adapter_name, PatchSet(zeros, torch.zeros_like(patches.bias), zeros))
        self.peft_config[adapter_name].num_patches += len(patches)

    def absorb_adapter(self, source_adapter: str, adapter_name: str | None = None) -> int:
        """Append every patch of `source_adapter` to `adapter_name`, layer by layer; returns the number added.

        The two must be composable (`MPNConfig.composable_with`: the same layers and patch activation), else
        `AdapterCompositionError` is raised and nothing changes. Each layer of `adapter_name` gets the source's
        patches of that same layer, so `num_patches` stays one number per adapter and the result computes what
        the two adapters compute when both are active. `source_adapter` is left as it is (delete it with
        `delete_adapter` when it is no longer needed).
        """
        adapter_name = self.resolve_adapter(adapter_name)
        source_adapter = self.resolve_adapter(source_adapter)
        if source_adapter == adapter_name:
            raise ValueError(f"Cannot absorb adapter {adapter_name!r} into itself.")
        self.peft_config[adapter_name].composable_with(
            self.peft_config[source_adapter], names=(repr(adapter_name), repr(source_adapter))
        )
        gate_layer = self.peft_config[source_adapter].gate_layer
        if gate_layer is not None and self.peft_config[adapter_name].gate_layer is None:
            self.enable_subject_gates(gate_layer, adapter_name)  # its patches so far: open gates
        targets, sources = self.patch_layers(adapter_name), self.patch_layers(source_adapter)
        added = self.peft_config[source_adapter].num_patches
        for name, layer in targets.items():
            layer.add_patches(adapter_name, sources[name].patches(source_adapter))
        self.peft_config[adapter_name].num_patches += added
        return added
