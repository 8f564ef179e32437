from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from peft.config import PeftConfig

from ..._registration import add_peft_type
from ..config import FFNBlockConfig, NeuronCollisionError, check_gate_layers


def normalise_neurons(neurons: object) -> dict[int, list[int]]:
    """`{layer: [neuron, ...]}` with int keys (JSON gives strings), checked: non-empty, non-negative, no repeats."""
    if not isinstance(neurons, dict) or not neurons:
        raise ValueError(
            "LAFN needs at least one located neuron: pass neurons={layer_index: [neuron_index, ...]} "
            f"(got {neurons!r})."
        )
    normalised: dict[int, list[int]] = {}
    for key, indices in neurons.items():
        try:
            layer = int(key)
        except (TypeError, ValueError) as error:
            raise ValueError(f"LAFN neurons: layer key {key!r} is not an integer layer index.") from error
        if layer in normalised:
            raise ValueError(f"LAFN neurons: layer {layer} is given twice ({list(neurons)}).")
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
            raise ValueError(f"LAFN neurons for layer {layer} must be a list of neuron indices, got {indices!r}.")
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError(f"LAFN neurons: the neuron set of layer {layer} is empty; drop the layer or add neurons.")
        negative = [i for i in indices if i < 0]
        if negative:
            raise ValueError(f"LAFN neurons for layer {layer}: negative neuron indices {negative[:10]}.")
        if len(set(indices)) != len(indices):
            repeated = sorted({i for i in indices if indices.count(i) > 1})
            raise ValueError(f"LAFN neurons for layer {layer}: indices listed more than once {repeated[:10]}.")
        normalised[layer] = indices
    return normalised


@dataclass
class LAFNConfig(FFNBlockConfig):
    """Configuration of a Language-Agnostic Factual Neurons (LAFN) adapter: masked neuron deltas.

    For the located neurons `S` of a layer's FFN, `FFN(h) = W_down · a(h)` becomes
    `FFN(h) + a_S(h) · ΔW_down[S]` (and, with `update_input`, the up/gate rows of `S` change too, so
    `a_S` itself changes). Every other weight stays as it is; the deltas are the only trainable parameters.
    The fields that choose the FFN blocks (`target_modules`, `exclude_modules`, `layers_pattern`) and
    `hidden_size` come from `FFNBlockConfig`; only the blocks of the layers named in `neurons` are adapted.

    **Cached** (`cached=True`): for every token position, the adapter's whole delta in that layer is applied
    only where the located neurons fire on the *base* model, i.e. where `mean_{k∈S} |a_k| > activation_threshold`
    with `a` the FFN's unedited intermediate activation (the down projection's input); elsewhere the FFN output
    is exactly the base output. A cached adapter cannot be merged into the weights.

    Two LAFN adapters combine into one (`composable_with`) when they agree on `update_input`, `cached`,
    `activation_threshold`, `intermediate_size` and `hidden_size` and no neuron belongs to both.

    Examples:
        ```py
        >>> import peft_mpn
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, peft_mpn.LAFNConfig(neurons={12: [5, 77, 301]}))
        ```
    """

    neurons: dict[int, list[int]] = field(
        default_factory=dict,
        metadata={
            "help": (
                "The located neurons: transformer layer index -> FFN neuron (intermediate) indices. Negative layer "
                "indices count from the end and are stored normalised. The FFN blocks of these layers are the "
                "targeted modules. Editors grow the sets with LAFNModel.add_neurons, which keeps this up to date."
            )
        },
    )
    update_input: bool = field(
        default=False,
        metadata={
            "help": (
                "Also learn deltas on the located neurons' input rows (up projection, and gate projection of gated "
                "FFNs), not only on their down-projection columns. The neurons' activations then change too."
            )
        },
    )
    cached: bool = field(
        default=False,
        metadata={
            "help": (
                "The 'cached' update: per token, apply the delta only where the located neurons fire on the base "
                "model, i.e. mean |a_k| over the layer's located set > activation_threshold (a = the FFN's unedited "
                "intermediate activation). Otherwise the FFN output is the base output. Cannot be merged."
            )
        },
    )
    activation_threshold: float | None = field(
        default=None,
        metadata={
            "help": (
                "Firing threshold of the cached update (required with cached=True): a token uses the delta iff the "
                "mean absolute base activation of the layer's located neurons exceeds it. "
                "LAFNLayer.activation_score computes that statistic, e.g. to calibrate the threshold."
            )
        },
    )
    gate_layer: int | None = field(
        default=None,
        metadata={
            "help": (
                "Block whose FFN input the neurons' subject gates read (negative: from the end; it must come before "
                "every block in `neurons`). A gated neuron's delta acts only once the text has mentioned the subject "
                "of the edit that trained it, so an edit stays silent on unrelated text and on the same question "
                "about another subject. None (default for a bare adapter): no gates; editors set it "
                "(LAFNEditorConfig.subject_gate_depth). A gated adapter cannot be merged."
            )
        },
    )
    intermediate_size: int | None = field(
        default=None,
        metadata={
            "help": (
                "Width F of the targeted FFNs (number of neurons). Recorded from the model when the adapter is "
                "created; loading onto a model with another FFN width is refused with a clear error."
            )
        },
    )
    init_lafn_weights: bool = field(
        default=True,
        metadata={
            "help": (
                "Create the deltas as zeros (True: the adapter is the identity) or random (False, for tests). "
                "Loading overwrites them with the saved values either way."
            )
        },
    )

    composable_fields: ClassVar[dict[str, str]] = {
        "update_input": "one changes the located neurons' inputs and the other does not",
        "cached": "they apply their deltas to different tokens",
        "activation_threshold": "they apply their deltas to different tokens",
        "intermediate_size": "they were made for FFNs of different widths",
        **FFNBlockConfig.composable_fields,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = add_peft_type("LAFN")
        self.neurons = normalise_neurons(self.neurons)
        if self.cached:
            if self.activation_threshold is None:
                raise ValueError(
                    "cached=True needs activation_threshold: the delta applies to a token only where the mean "
                    "|activation| of the located neurons exceeds it."
                )
            if not math.isfinite(self.activation_threshold) or self.activation_threshold < 0:
                raise ValueError(
                    f"activation_threshold must be a finite number >= 0, got {self.activation_threshold}."
                )

    def shared_neurons(self, other: LAFNConfig) -> dict[int, list[int]]:
        """`{layer: neurons}` that both this adapter and `other` edit (sorted; empty when they are disjoint)."""
        shared = {}
        for layer in sorted(other.neurons):
            both = set(other.neurons[layer]) & set(self.neurons.get(layer, ()))
            if both:
                shared[layer] = sorted(both)
        return shared

    def composable_with(self, other: PeftConfig, *, names: tuple[str, str] = ("this adapter", "the other")) -> None:
        """Check that `other` can be combined with this adapter: same settings and no neuron in both.

        A neuron can hold one delta only, so adapters that share a neuron do not combine. Used by
        `LAFNModel.absorb_adapter` and `peft_mpn.hub.compose_adapters`.

        Raises:
            AdapterCompositionError: a setting in `composable_fields` differs (or the method does).
            NeuronCollisionError: both edit some neuron; its `collisions` say which, by layer.
        """
        super().composable_with(other, names=names)
        check_gate_layers(self.gate_layer, other.gate_layer, names, "LAFN")
        shared = self.shared_neurons(other)
        if shared:
            ours, theirs = names
            raise NeuronCollisionError(
                f"Cannot compose LAFN adapters {ours} and {theirs}: both edit neurons "
                + "; ".join(f"layer {layer}: {indices[:10]}" for layer, indices in shared.items())
                + f". {NeuronCollisionError.fix}",
                shared,
            )
