"""What both plugin configs share: which FFN blocks they adapt, and which adapters combine into one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from peft.config import PeftConfig


class AdapterCompositionError(ValueError):
    """Edit adapters that cannot be combined into one."""


class NeuronCollisionError(AdapterCompositionError):
    """LAFN adapters that edit the same neurons: a neuron holds one delta only.

    Attributes:
        collisions: `{layer index: neuron indices}` both adapters edit.
    """

    fix = "A neuron holds one delta only: re-edit one of the facts onto the other adapter, or keep them apart."

    def __init__(self, message: str, collisions: Mapping[int, Sequence[int]]) -> None:
        super().__init__(message)
        self.collisions = {layer: list(neurons) for layer, neurons in collisions.items()}


@dataclass
class FFNBlockConfig(PeftConfig):
    """Base of `MPNConfig` and `LAFNConfig`: the FFN blocks an adapter wraps and the width it was made for.

    Subclasses name the settings two adapters must share to combine into one (`composable_fields`, with the
    reason why) and may add rules of their own by extending `composable_with`.
    """

    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": (
                "The FFN block module(s) to adapt, as names (suffix match) or one regex (full match). Default: the "
                "architecture's FFN block from peft_mpn.tuners.ffn.FFN_SPECS ('mlp' for Llama/Gemma/Qwen2/GPT-2, "
                "'output' for BERT/XLM-R). MPN adapts the matching blocks of `layers_to_transform`, LAFN those of "
                "the layers named in `neurons`."
            )
        },
    )
    exclude_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": (
                "Module names (suffix match) or a regex (full match) never to adapt. Default with list "
                "`target_modules`: the architecture's non-FFN modules named like its FFN block (BERT's "
                "attention.output)."
            )
        },
    )
    layers_pattern: list[str] | str | None = field(
        default=None,
        metadata={
            "help": (
                "Name of the ModuleList of transformer blocks ('layers', 'h', 'layer') whose indices MPN's "
                "`layers_to_transform` and the keys of LAFN's `neurons` refer to. Default: from the architecture's "
                "FFN spec."
            )
        },
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "Modules besides the adapter layers to train and save with the adapter (names, suffix match), as in "
                "peft's own configs: e.g. a classifier head, which starts random. With task_type='SEQ_CLS' peft adds "
                "the classifier ('classifier' / 'score') by itself."
            )
        },
    )
    hidden_size: int | None = field(
        default=None,
        metadata={
            "help": (
                "Model width d (the FFN input and output width). Recorded from the model when the adapter is "
                "created; loading onto a model of another width is refused with a clear error."
            )
        },
    )

    #: `{field: why adapters that differ in it cannot combine}`, checked by `composable_with`, in this order.
    composable_fields: ClassVar[Mapping[str, str]] = {"hidden_size": "they were made for models of different widths"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.target_modules, (list, set, tuple)):
            self.target_modules = list(self.target_modules)
        if isinstance(self.exclude_modules, (set, tuple)):
            self.exclude_modules = list(self.exclude_modules)
        if isinstance(self.modules_to_save, (set, tuple)):
            self.modules_to_save = list(self.modules_to_save)

    def composable_with(self, other: PeftConfig, *, names: tuple[str, str] = ("this adapter", "the other")) -> None:
        """Check that the adapter `other` configures can be combined with this one; raise if not.

        The one rule both `absorb_adapter` (`MPNModel`, `LAFNModel`) and `peft_mpn.hub.compose_adapters`
        apply: the same method, the same value of every field in `composable_fields`, and no `modules_to_save` in
        `other` (the adapter absorbed into this one: its own copies of those modules would be lost).

        Args:
            other: the other adapter's config.
            names: how the two adapters are named in the error (`self`'s first).

        Raises:
            AdapterCompositionError: naming the setting that differs, both values and what combines.
        """
        ours, theirs = names
        if other.peft_type != self.peft_type:
            raise AdapterCompositionError(
                f"Cannot compose {ours} ({self.peft_type.value}) with {theirs} ({other.peft_type.value}): adapters "
                "of different methods do not combine into one."
            )
        if other.modules_to_save:
            raise AdapterCompositionError(
                f"Cannot compose {theirs} into {ours}: {theirs} saves its own copy of whole modules "
                f"(modules_to_save={other.modules_to_save!r}), and the composed adapter keeps only {ours}'s. "
                "Only adapters without modules_to_save are composed into another."
            )
        for name, why in self.composable_fields.items():
            mine, yours = getattr(self, name), getattr(other, name)
            if mine != yours:
                raise AdapterCompositionError(
                    f"Cannot compose {self.peft_type.value} adapters {ours} and {theirs}: their {name} differ "
                    f"({mine!r} vs {yours!r}), so {why}. "
                    f"Only adapters that agree on {name} combine into one."
                )


def check_gate_layers(ours: int | None, theirs: int | None, names: tuple[str, str], method: str) -> None:
    """Adapters whose subject gates read different blocks do not combine (one without gates joins with open ones)."""
    if None not in (ours, theirs) and ours != theirs:
        raise AdapterCompositionError(
            f"Cannot compose {method} adapters {names[0]} and {names[1]}: their subject gates read different blocks "
            f"(gate_layer {ours!r} vs {theirs!r}). Only adapters whose gates read the same block (or that have none) "
            "combine into one."
        )
