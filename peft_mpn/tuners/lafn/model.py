from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from peft.tuners.tuners_utils import BaseTunerLayer, _ExcludedModule, check_target_module_exists
from peft.utils import _get_submodules
from torch import nn

from ..base import FFNBlockTuner
from ..ffn import UnsupportedArchitectureError, ffn_spec, ffn_width, locate_block, model_width, num_layers
from ..gate import SubjectGatedTuner
from .config import LAFNConfig
from .layer import LAFNLayer


@dataclass(frozen=True)
class NeuronAddition:
    """What `LAFNModel.add_neurons` did: `added` are new (zero deltas), `collisions` were already there."""

    layer: int
    added: list[int]
    collisions: list[int]


def _layer_index(key: str, layers_pattern: list[str] | str | None) -> int | None:
    """The block index of module `key` (`model.layers.3.mlp` -> 3), or None if not under `layers_pattern`."""
    try:
        location = locate_block(key)
    except UnsupportedArchitectureError:
        return None
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern or [])
    if patterns and location.stack.rsplit(".", 1)[-1] not in patterns:
        return None
    return location.index


class LAFNModel(SubjectGatedTuner, FFNBlockTuner):
    """Language-Agnostic Factual Neurons (LAFN) tuner: learned deltas on located FFN neurons.

    Created by `peft.get_peft_model(model, LAFNConfig(neurons={layer: [neuron, ...]}))` (after
    `import peft_mpn`). Zero deltas (the default) leave the model unchanged; an editor locates the neurons and
    trains the deltas.

    Interface for editors: `lafn_layers`, `neuron_sets`, `add_neurons` (grow a neuron set,
    e.g. to union the sets of a batch or of sequential edits), `enable_subject_gates` / `gate_neurons` (an
    edit's neurons act only once the text mentions its subject) and `resolve_adapter`.

    Examples:
        ```py
        >>> import peft_mpn
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, peft_mpn.LAFNConfig(neurons={12: [5, 77]}))
        >>> model.base_model.neuron_sets()  # {12: [5, 77]}
        >>> model.base_model.add_neurons(12, [77, 300])  # NeuronAddition(layer=12, added=[300], collisions=[77])
        ```
    """

    prefix: str = "lafn_"
    tuner_layer_cls = LAFNLayer

    # -- creating adapters -----------------------------------------------------------------------------------
    @staticmethod
    def _check_target_module_exists(peft_config: LAFNConfig, key: str) -> bool | _ExcludedModule:
        result = check_target_module_exists(peft_config, key)
        if not result or isinstance(result, _ExcludedModule):
            return result
        return _layer_index(key, peft_config.layers_pattern) in peft_config.neurons

    def _ffn_blocks(self, peft_config: LAFNConfig) -> dict[int, tuple[str, nn.Module]]:
        """Every FFN block `target_modules` names, in any layer: layer index -> (module key, unwrapped block)."""
        blocks: dict[int, tuple[str, nn.Module]] = {}
        for key, module in self.model.named_modules():
            result = check_target_module_exists(peft_config, key) if key else False
            index = _layer_index(key, peft_config.layers_pattern) if result else None
            if index is not None and index not in blocks:
                blocks[index] = (key, module.get_base_layer() if isinstance(module, BaseTunerLayer) else module)
        return blocks

    def _ffn_shape(self, key: str, block: nn.Module) -> tuple[int, int]:
        """(FFN width, model width) of the FFN block at `key`; a clear error if it is no FFN block."""
        spec = ffn_spec(self.model)
        parent = self.model.get_submodule(key.rsplit(".", 1)[0]) if "." in key else self.model
        try:
            down = spec.projection(parent, block, spec.down_proj)
            for path in (spec.up_proj, spec.gate_proj):
                if path is not None:
                    spec.projection(parent, block, path)
        except AttributeError as error:
            raise ValueError(
                f"{key!r} ({type(block).__name__}) is not an FFN block of this {spec.block!r} layout: LAFN adapts FFN "
                "blocks; check target_modules / exclude_modules."
            ) from error
        return ffn_width(down), model_width(down)

    def _check_neurons(self, layer: int, indices: Iterable[int], width: int) -> None:
        bad = [i for i in indices if not 0 <= i < width]
        if bad:
            raise ValueError(
                f"LAFN neuron indices {bad[:10]} are out of range for layer {layer}, whose FFN has width {width} "
                f"(valid: 0..{width - 1})."
            )

    def _prepare_adapter_config(self, peft_config: LAFNConfig, model_config: dict) -> LAFNConfig:
        spec = ffn_spec(model_config)
        self._default_targets(peft_config, spec)
        if peft_config.layers_pattern is None:
            peft_config.layers_pattern = spec.layers
        total = num_layers(model_config)
        out_of_range = [layer for layer in peft_config.neurons if not -total <= layer < total]
        if out_of_range:
            raise ValueError(f"LAFN neurons name layers {out_of_range} out of range for a {total}-layer model.")
        neurons = {layer % total: indices for layer, indices in peft_config.neurons.items()}
        if len(neurons) != len(peft_config.neurons):
            raise ValueError(f"LAFN neurons name the same layer twice (negative and positive): {peft_config.neurons}.")

        blocks = self._ffn_blocks(peft_config)
        missing = sorted(set(neurons) - set(blocks))
        if missing:
            raise ValueError(
                f"No FFN block matching target_modules={peft_config.target_modules!r} in layer(s) {missing}; LAFN "
                "adapts the FFN blocks of the layers named in `neurons`."
            )
        for layer in sorted(neurons):
            key, block = blocks[layer]
            width, hidden = self._ffn_shape(key, block)
            if peft_config.hidden_size is None:
                peft_config.hidden_size = hidden
            if peft_config.intermediate_size is None:
                peft_config.intermediate_size = width
            if (peft_config.intermediate_size, peft_config.hidden_size) != (width, hidden):
                raise ValueError(
                    f"This LAFN adapter was made for FFNs of width {peft_config.intermediate_size} (model width "
                    f"{peft_config.hidden_size}), but layer {layer}'s FFN has width {width} (model width {hidden}). "
                    "Load it onto the base model it was made for "
                    f"({peft_config.base_model_name_or_path or 'see base_model_name_or_path in adapter_config.json'})."
                )
            self._check_neurons(layer, neurons[layer], width)
        peft_config.neurons = dict(sorted(neurons.items()))
        if peft_config.gate_layer is not None:
            peft_config.gate_layer = self._gate_layer(peft_config, peft_config.gate_layer, total)
        return peft_config

    def _gated_blocks(self, peft_config: LAFNConfig) -> list[int] | None:
        total = num_layers(self.model.config)
        return sorted(layer % total for layer in peft_config.neurons)

    def _gated_layers(self, adapter_name: str) -> dict[str, LAFNLayer]:
        return self.lafn_layers(adapter_name)

    def _layer_kwargs(self, peft_config: LAFNConfig, current_key: str) -> dict[str, object]:
        return {"layer_index": _layer_index(current_key, peft_config.layers_pattern)}

    def _check_mergeable(self, adapter_names: list[str] | None) -> None:
        names = self.active_adapters if adapter_names is None else adapter_names
        for layer in self.model.modules():
            if isinstance(layer, LAFNLayer):
                for name in names:
                    layer.check_mergeable(name)

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        self._check_mergeable(adapter_names)
        super().merge_adapter(adapter_names=adapter_names, safe_merge=safe_merge)

    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if merge:
            self._check_mergeable(adapter_names)
        return super()._unload_and_optionally_merge(
            merge=merge, progressbar=progressbar, safe_merge=safe_merge, adapter_names=adapter_names
        )

    # -- the interface editors use ---------------------------------------------------------------------------
    def lafn_layers(self, adapter_name: str | None = None) -> dict[str, LAFNLayer]:
        """The LAFN layers that hold `adapter_name` (default: the active adapter), by module name."""
        return self.adapter_layers(LAFNLayer, adapter_name)

    def neuron_sets(self, adapter_name: str | None = None) -> dict[int, list[int]]:
        """`{layer index: neuron indices}` of `adapter_name`, in delta-row order, as its layers hold them."""
        layers = self.lafn_layers(adapter_name)
        name = self.resolve_adapter(adapter_name)
        return dict(sorted((layer.layer_index, layer.neurons(name)) for layer in layers.values()))

    def add_neurons(self, layer_index: int, indices: Iterable[int], adapter_name: str | None = None) -> NeuronAddition:
        """Grow `adapter_name`'s neuron set in layer `layer_index` and record it in the config.

        Existing deltas are kept; the new neurons get zero deltas (so the model's output does not change) appended
        after the existing ones. Indices already in the set are not touched and are reported in `collisions`. A
        layer the adapter does not adapt yet gets a new LAFN layer. Nothing changes if any index is out of range.
        """
        adapter_name = self.resolve_adapter(adapter_name)
        config = self.peft_config[adapter_name]
        total = num_layers(self.model)
        if not -total <= layer_index < total:
            raise ValueError(f"Layer {layer_index} is out of range for a {total}-layer model.")
        layer_index %= total
        requested = list(dict.fromkeys(int(i) for i in indices))
        if not requested:
            raise ValueError(f"No neuron indices given for layer {layer_index}.")
        if any(layer.merged for layer in self.lafn_layers(adapter_name).values()):
            raise RuntimeError("Unmerge the adapter before adding neurons.")
        if config.gate_layer is not None and layer_index <= config.gate_layer:
            raise ValueError(
                f"Layer {layer_index} is not above block {config.gate_layer}, whose FFN input the adapter's subject "
                "gates read: a gated neuron must lie above its gate. Locate in higher layers "
                "(LocatorConfig.lowest_layer_fraction)."
            )
        blocks = self._ffn_blocks(config)
        if layer_index not in blocks:
            raise ValueError(f"No FFN block matching target_modules={config.target_modules!r} in layer {layer_index}.")
        key, block = blocks[layer_index]
        self._check_neurons(layer_index, requested, self._ffn_shape(key, block)[0])

        present = set(config.neurons.get(layer_index, []))
        result = NeuronAddition(
            layer_index, [i for i in requested if i not in present], [i for i in requested if i in present]
        )
        if not result.added:
            return result
        existing = {layer.layer_index: layer for layer in self.lafn_layers(adapter_name).values()}
        if layer_index in existing:
            existing[layer_index].add_neurons(adapter_name, result.added)
            config.neurons[layer_index] = config.neurons[layer_index] + result.added
            return result

        # A new layer for this adapter: zero deltas, trainable like the adapter's other deltas.
        existing = self.delta_parameters(adapter_name)
        trainable = any(p.requires_grad for p in existing)
        init = config.init_lafn_weights
        config.neurons[layer_index] = result.added
        config.init_lafn_weights = True
        try:
            parent, target, target_name = _get_submodules(self.model, key)
            self._create_and_replace(config, adapter_name, target, target_name, parent, current_key=key)
        except Exception:
            del config.neurons[layer_index]
            raise
        finally:
            config.init_lafn_weights = init
        config.neurons = dict(sorted(config.neurons.items()))
        layer = self.model.get_submodule(key)
        layer.set_adapter(self.active_adapters)
        for store in (
            layer.lafn_down,
            layer.lafn_up,
            layer.lafn_gate,
            layer.lafn_subject_keys,
            layer.lafn_subject_bias,
        ):
            if adapter_name in store:
                # The adapter's other deltas set the dtype (float32 when peft autocast them, else the model's).
                delta = store[adapter_name].to(existing[0].dtype) if existing else store[adapter_name]
                is_delta = store in (layer.lafn_down, layer.lafn_up, layer.lafn_gate)
                store[adapter_name] = nn.Parameter(delta.detach(), requires_grad=trainable and is_delta)
        if config.gate_layer is not None:
            layer.attach_gate(adapter_name, self.subject_gate(adapter_name))
        if key not in self.targeted_module_names:
            self.targeted_module_names.append(key)
        return result

    def gate_neurons(
        self, neurons: dict[int, list[int]], key: torch.Tensor, bias: torch.Tensor, adapter_name: str | None = None
    ) -> None:
        """Give the `neurons` (`{layer: indices}`) of `adapter_name` one subject gate: `key` `[d]` and `bias` read
        at the adapter's `gate_layer` (`enable_subject_gates` first)."""
        name = self.resolve_adapter(adapter_name)
        if self.peft_config[name].gate_layer is None:
            raise ValueError(f"LAFN adapter {name!r} has no subject gates: call enable_subject_gates first.")
        for layer in self.lafn_layers(name).values():
            if neurons.get(layer.layer_index):
                layer.set_gates(name, neurons[layer.layer_index], key, bias)

    def delta_parameters(self, adapter_name: str | None = None) -> list[torch.nn.Parameter]:
        """All delta tensors of `adapter_name` (what an editor optimises)."""
        name = self.resolve_adapter(adapter_name)
        return [
            store[name]
            for layer in self.lafn_layers(name).values()
            for store in (layer.lafn_down, layer.lafn_up, layer.lafn_gate)
            if name in store
        ]

    def absorb_adapter(self, source_adapter: str, adapter_name: str | None = None) -> list[NeuronAddition]:
        """Append every neuron of `source_adapter`, with its deltas, to `adapter_name`.

        The result computes what the two adapters compute when both are active. They must be composable
        (`LAFNConfig.composable_with`: the same `update_input` and cached update, and no neuron in both, since
        a shared neuron would need two deltas in one row); otherwise `AdapterCompositionError` (for shared
        neurons `NeuronCollisionError`, naming the layers and neurons) is raised and nothing changes.
        `source_adapter` is left as it is.
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
            self.enable_subject_gates(gate_layer, adapter_name)  # its neurons so far: open gates
        incoming = self.neuron_sets(source_adapter)
        source_layers = {layer.layer_index: layer for layer in self.lafn_layers(source_adapter).values()}
        additions = []
        for layer_index, indices in incoming.items():
            additions.append(self.add_neurons(layer_index, indices, adapter_name=adapter_name))
            target = next(lay for lay in self.lafn_layers(adapter_name).values() if lay.layer_index == layer_index)
            source = source_layers[layer_index]
            with torch.no_grad():
                for store_name in LAFNLayer.adapter_layer_names:
                    store, source_store = getattr(target, store_name), getattr(source, store_name)
                    if source_adapter in source_store:
                        delta = source_store[source_adapter]
                        store[adapter_name][-len(indices) :] = delta.to(store[adapter_name].dtype)
        return additions
