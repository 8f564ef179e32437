from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..._registration import add_peft_type
from ..config import FFNBlockConfig, check_gate_layers


@dataclass
class MPNConfig(FFNBlockConfig):
    """Configuration of a Multilingual Patch Neuron (MPN) adapter.

    A patch is one extra FFN neuron: `FFN'(h) = FFN(h) + act(h·Kᵀ + b)·V`, added inside the FFN output of the
    targeted block(s). A fresh adapter has `num_patches=0` and reproduces the base model exactly; editors
    (`peft_mpn.editing.MPNEditor`) add patches and keep `num_patches` up to date, so a saved adapter
    directory is self-describing. The fields that choose the FFN blocks (`target_modules`, `exclude_modules`,
    `layers_pattern`) and `hidden_size` come from `FFNBlockConfig`.

    Two MPN adapters combine into one (`composable_with`) when they patch the same blocks (`target_modules`,
    `layers_to_transform`) of models of the same width with the same patch `activation`.

    Examples:
        ```py
        >>> import peft_mpn
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, peft_mpn.MPNConfig())  # last block's FFN
        ```
    """

    layers_to_transform: list[int] | int | None = field(
        default=None,
        metadata={
            "help": (
                "Block index or indices to patch; negative indices count from the end. "
                "Default when target_modules is also unset: the last block only (T-Patcher's choice). "
                "With explicit target_modules and no indices, every matching block is patched."
            )
        },
    )
    num_patches: int = field(
        default=0,
        metadata={
            "help": (
                "Number of patch neurons per targeted module. 0 for a fresh adapter; editors increase it as "
                "edits are added, and loading reads it to size the saved tensors."
            )
        },
    )
    activation: str = field(
        default="relu",
        metadata={
            "help": (
                "Activation of the patch neurons, a transformers ACT2FN name, or 'ffn' for the FFN's own activation "
                "(resolved from the model config when the adapter is created and stored here). Default 'relu': a "
                "patch below zero adds exactly nothing, where GELU and SiLU still pass a share of the value, which "
                "changes unrelated answers. 'ffn' (Transformer-Patcher's choice) is needed to merge patches into an "
                "ungated FFN."
            )
        },
    )
    init_patches: bool = field(
        default=True,
        metadata={
            "help": (
                "How patches are made when num_patches > 0. True: the identity, like LoRA's B = 0: zero values and "
                "biases, so the model is unchanged, but small random keys, so the patches' values get a gradient "
                "(all-zero patches would get none). False: random keys and values (for tests). Loading overwrites "
                "them with the saved values either way."
            )
        },
    )

    gate_layer: int | None = field(
        default=None,
        metadata={
            "help": (
                "Block whose FFN input the patches' subject gates read (negative: from the end; it must come before "
                "the patched block). A gated patch adds its value only once the text has mentioned its subject, so "
                "it stays silent on the same question about another subject. None (default for a bare adapter): "
                "no gates; editors set it (MPNEditorConfig.subject_gate_depth)."
            )
        },
    )

    composable_fields: ClassVar[dict[str, str]] = {
        "target_modules": "they patch different layers",
        "layers_to_transform": "they patch different layers",
        "activation": "their patch neurons compute different functions",
        **FFNBlockConfig.composable_fields,
    }

    def composable_with(self, other, *, names: tuple[str, str] = ("this adapter", "the other")) -> None:  # noqa: ANN001
        """`FFNBlockConfig.composable_with`, and subject gates that read the same block where both have gates (an
        ungated adapter's patches join a gated one with open gates)."""
        super().composable_with(other, names=names)
        check_gate_layers(self.gate_layer, other.gate_layer, names, "MPN")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = add_peft_type("MPN")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("layers_pattern only makes sense together with layers_to_transform.")
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError(
                "layers_to_transform cannot be used with a regex target_modules; put the index in the regex or "
                "give target_modules as a list of names."
            )
        if self.num_patches < 0:
            raise ValueError(f"num_patches must be >= 0, got {self.num_patches}.")
