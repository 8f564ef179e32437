"""`LocatorConfig`: how `locate_neurons` scores, selects and combines neurons."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The choices of LocatorConfig.scoring, .selection, .scope and .position.
SCORINGS = ("activation", "integrated_gradients")
SELECTIONS = ("top_k", "threshold")
SCOPES = ("layer", "global")
POSITIONS = ("last", "target_first")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown LocatorConfig.{name}={value!r}; choose one of {', '.join(map(repr, choices))}.")


@dataclass
class LocatorConfig:
    """How `locate_neurons` scores, selects and combines neurons.

    Checked on construction: an unknown choice, a count below 1 or a fraction out of range raises `ValueError`
    naming the field and what it accepts.
    """

    scoring: str = field(
        default="activation",
        metadata={
            "help": (
                "'activation': |a_k| · ||W_down[:, k]|| at the read position (the magnitude of the neuron's "
                "contribution to the FFN output). 'integrated_gradients': integrated gradients of the log-prob of "
                "the target's first token (the label for classifiers) w.r.t. the neuron's activation, scaling the "
                "layer's activation at the read position from 0 to a (midpoints of ig_steps steps), times a (signed)."
            )
        },
    )
    ig_steps: int = field(
        default=20,
        metadata={"help": "Riemann steps of integrated gradients (one forward+backward per step, layer and prompt)."},
    )
    selection: str = field(
        default="top_k",
        metadata={"help": "'top_k': the top_k highest scores; 'threshold': scores at or above `threshold`."},
    )
    top_k: int = field(
        default=50,
        metadata={"help": "Neurons selected per prompt: per layer (scope='layer') or over all layers ('global')."},
    )
    threshold: float | None = field(
        default=None,
        metadata={
            "help": (
                "Required with selection='threshold'. With relative_threshold (default) a fraction of the highest "
                "score in scope (0 < threshold <= 1, e.g. 0.2 as in Dai et al.'s knowledge neurons); otherwise an "
                "absolute score."
            )
        },
    )
    relative_threshold: bool = field(
        default=True,
        metadata={"help": "Read `threshold` as a fraction of the per-prompt maximum score in scope (else absolute)."},
    )
    scope: str = field(
        default="layer",
        metadata={"help": "'layer': select within each layer (top_k per layer); 'global': over all chosen layers."},
    )
    layers: list[int] | None = field(
        default=None,
        metadata={"help": "Transformer layers to search (negative indices count from the end). Default: every layer."},
    )
    lowest_layer_fraction: float = field(
        default=0.0,
        metadata={
            "help": (
                "Search only the blocks at or above this fraction of the model's depth (of `layers`): 0.45 keeps "
                "blocks 8-17 of an 18-block model. An edit's backward pass runs through every block above its "
                "lowest neuron, so leaving out the lower blocks makes LAFN edits faster. 0: no limit."
            )
        },
    )
    language_vote: float = field(
        default=1.0,
        metadata={
            "help": (
                "A neuron is language-agnostic if selected in at least this fraction of the languages "
                "(ceil(vote · n) of n). 1.0 = strict intersection (the paper's); METHODS.md suggests ≈ 0.75."
            )
        },
    )
    position: str = field(
        default="last",
        metadata={
            "help": (
                "Where activations are read. 'last': the last prompt token (after `template`). 'target_first': the "
                "position predicting the first target token, which for decoders is the same token; for encoder "
                "classifiers it is the first ([CLS]) token the classification head reads, while 'last' is the "
                "tokenizer's last token ([SEP] for BERT-likes)."
            )
        },
    )
    template: str | None = field(
        default=None,
        metadata={
            "help": (
                "A template with a '{prompt}' slot, e.g. 'Q: {prompt}\\nA:', applied to every prompt so that every "
                "language is read at the same template token (METHODS.md: a stronger, later signal)."
            )
        },
    )
    generic_facts_fraction: float | None = field(
        default=None,
        metadata={
            "help": (
                "With reference_requests: drop the neurons that the same procedure selects for at least this "
                "fraction of the reference facts (the 'generic' set; METHODS.md measured 0.2)."
            )
        },
    )
    require_paraphrases: bool = field(
        default=False,
        metadata={
            "help": (
                "Refuse a language that has only its prompt (no rephrases in the data, none given, none generated), "
                "as a strict reading of the method (it intersects over paraphrases) would. False (default): such a "
                "language is located on its prompt alone; a fact is not refused for lack of a paraphrase."
            )
        },
    )
    batch_size: int = field(
        default=16,
        metadata={"help": "Sequences per forward pass (integrated gradients runs batch_size // ig_steps prompts)."},
    )

    def __post_init__(self) -> None:
        _choice("scoring", self.scoring, SCORINGS)
        _choice("selection", self.selection, SELECTIONS)
        _choice("scope", self.scope, SCOPES)
        _choice("position", self.position, POSITIONS)
        for name in ("ig_steps", "top_k", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LocatorConfig.{name} must be a positive integer, got {value!r}.")
        if self.selection == "threshold":
            if self.threshold is None:
                raise ValueError(
                    "selection='threshold' needs LocatorConfig.threshold (e.g. 0.2 = 20% of the top score)."
                )
            if not math.isfinite(self.threshold) or self.threshold <= 0:
                raise ValueError(f"LocatorConfig.threshold must be a finite number > 0, got {self.threshold}.")
            if self.relative_threshold and self.threshold > 1:
                raise ValueError(
                    f"A relative threshold is a fraction of the top score, 0 < threshold <= 1; got {self.threshold}. "
                    "Set relative_threshold=False for an absolute score."
                )
        if not 0 < self.language_vote <= 1:
            raise ValueError(
                f"LocatorConfig.language_vote is a fraction of languages in (0, 1], got {self.language_vote}."
            )
        if self.generic_facts_fraction is not None and not 0 < self.generic_facts_fraction <= 1:
            raise ValueError(
                f"LocatorConfig.generic_facts_fraction is a fraction of reference facts in (0, 1], "
                f"got {self.generic_facts_fraction}."
            )
        if not 0 <= self.lowest_layer_fraction < 1:
            raise ValueError(
                f"LocatorConfig.lowest_layer_fraction is a fraction of the model's depth in [0, 1), "
                f"got {self.lowest_layer_fraction}."
            )
        if self.template is not None and "{prompt}" not in self.template:
            raise ValueError(f"LocatorConfig.template needs a '{{prompt}}' slot, got {self.template!r}.")
        if self.layers is not None:
            if isinstance(self.layers, int):
                self.layers = [self.layers]
            self.layers = [int(layer) for layer in self.layers]
            if not self.layers:
                raise ValueError("LocatorConfig.layers is empty; give layer indices or None for every layer.")

    def apply_template(self, prompt: str) -> str:
        """`prompt` put into `template`'s `{prompt}` slot (unchanged without a template)."""
        return prompt if self.template is None else self.template.replace("{prompt}", prompt)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> LocatorConfig:
        """The config `to_dict` wrote; an unknown field raises `ValueError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"Unknown LocatorConfig fields {unknown}.")
        return cls(**record)


__all__ = ["POSITIONS", "SCOPES", "SCORINGS", "SELECTIONS", "LocatorConfig"]
