"""`NeuronLocation`: the located neurons of one fact, what `locate_neurons` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tuners.lafn import LAFNConfig
from . import plots
from .config import LocatorConfig
from .selection import votes_needed


def _int_keys(mapping: Mapping[Any, Any]) -> dict[int, Any]:
    """The mapping with int keys (JSON turns layer and neuron keys into strings)."""
    return {int(k): v for k, v in mapping.items()}


@dataclass
class NeuronLocation:
    """The located neurons of one fact, and how they were found.

    Attributes:
        neurons: layer -> sorted neuron indices, the language-agnostic set (generic neurons removed); pass it to
            `LAFNConfig(neurons=...)`.
        scores: layer -> neuron -> mean score over every prompt read (all languages and paraphrases).
        per_language: language -> layer -> the neurons selected for all of that language's paraphrases.
        languages: the languages combined, in order.
        config: the `LocatorConfig` used.
        prompts: language -> the prompts read (prompt first, then paraphrases), before the template.
        layers: the layers searched.
        generic: layer -> the generic neurons (selected for >= generic_facts_fraction of the reference facts);
            empty when no reference facts were used.
        num_references: how many reference facts estimated `generic`.
        case_id: the request's case id, where known.
    """

    neurons: dict[int, list[int]]
    scores: dict[int, dict[int, float]]
    per_language: dict[str, dict[int, list[int]]]
    languages: list[str]
    config: LocatorConfig
    prompts: dict[str, list[str]] = field(default_factory=dict)
    layers: list[int] = field(default_factory=list)
    generic: dict[int, list[int]] = field(default_factory=dict)
    num_references: int = 0
    case_id: str | None = None

    @property
    def num_neurons(self) -> int:
        """How many neurons were located, over all layers."""
        return sum(len(v) for v in self.neurons.values())

    def counts(self) -> dict[int, int]:
        """Located neurons per layer (every searched layer, zeros included)."""
        return {layer: len(self.neurons.get(layer, [])) for layer in self.layers or sorted(self.neurons)}

    def language_counts(self) -> dict[str, dict[int, int]]:
        """Per language, the neurons it kept per layer (every searched layer, zeros included)."""
        layers = self.layers or sorted({layer for sets in self.per_language.values() for layer in sets})
        return {
            lang: {layer: len(sets.get(layer, [])) for layer in layers} for lang, sets in self.per_language.items()
        }

    def jaccard(self) -> list[list[float]]:
        """Jaccard similarity of the per-language sets of (layer, neuron) pairs, in `languages` order."""
        sets = [
            {(layer, n) for layer, ns in self.per_language.get(lang, {}).items() for n in ns}
            for lang in self.languages
        ]
        return [[len(a & b) / len(a | b) if a | b else 1.0 for b in sets] for a in sets]

    def lafn_config(self, **kwargs: Any) -> LAFNConfig:
        """A `LAFNConfig` for these neurons (`kwargs` go to the config)."""
        return LAFNConfig(neurons={layer: list(ns) for layer, ns in self.neurons.items()}, **kwargs)

    def summary(self) -> str:
        """Counts per layer: located, per language and generic."""
        config = self.config
        need = votes_needed(config.language_vote, len(self.languages))
        lines = [
            f"{self.num_neurons} language-agnostic neurons in {len(self.neurons)} layer(s)"
            f"{f' for case {self.case_id}' if self.case_id else ''}: selected in >= {need} of "
            f"{len(self.languages)} languages ({', '.join(self.languages)}); {config.scoring} scoring, "
            f"{config.selection} ({config.top_k if config.selection == 'top_k' else config.threshold}) per "
            f"{config.scope}, read at {config.position}" + (f" of {config.template!r}" if config.template else ""),
        ]
        if self.num_references:
            lines.append(
                f"generic set (>= {config.generic_facts_fraction} of {self.num_references} reference facts) "
                f"removed: {sum(len(v) for v in self.generic.values())} neurons"
            )
        languages = self.language_counts()
        header = "layer  located  generic  " + "  ".join(f"{lang:>5}" for lang in self.languages)
        lines.append(header)
        for layer, count in self.counts().items():
            per_lang = "  ".join(f"{languages.get(lang, {}).get(layer, 0):>5}" for lang in self.languages)
            lines.append(f"{layer:>5}  {count:>7}  {len(self.generic.get(layer, [])):>7}  {per_lang}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly record (layer and neuron keys become strings in JSON; `from_dict` reads both)."""
        return {
            "neurons": {layer: list(ns) for layer, ns in self.neurons.items()},
            "scores": {layer: dict(s) for layer, s in self.scores.items()},
            "per_language": {
                lang: {layer: list(ns) for layer, ns in s.items()} for lang, s in self.per_language.items()
            },
            "languages": list(self.languages),
            "config": self.config.to_dict(),
            "prompts": {lang: list(p) for lang, p in self.prompts.items()},
            "layers": list(self.layers),
            "generic": {layer: list(ns) for layer, ns in self.generic.items()},
            "num_references": self.num_references,
            "case_id": self.case_id,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> NeuronLocation:
        """The location `to_dict` wrote, with int or string layer and neuron keys."""
        return cls(
            neurons={layer: [int(n) for n in ns] for layer, ns in _int_keys(record["neurons"]).items()},
            scores={
                layer: {int(n): float(s) for n, s in ss.items()} for layer, ss in _int_keys(record["scores"]).items()
            },
            per_language={
                lang: {layer: [int(n) for n in ns] for layer, ns in _int_keys(sets).items()}
                for lang, sets in record["per_language"].items()
            },
            languages=list(record["languages"]),
            config=LocatorConfig.from_dict(record["config"]),
            prompts={lang: list(p) for lang, p in record.get("prompts", {}).items()},
            layers=[int(layer) for layer in record.get("layers", [])],
            generic={layer: [int(n) for n in ns] for layer, ns in _int_keys(record.get("generic", {})).items()},
            num_references=int(record.get("num_references", 0)),
            case_id=record.get("case_id"),
        )

    # -- plots (see plots.py: matplotlib is imported there, only when a plot draws its own figure) ----------------
    def plot_layers(self, ax: Any = None, per_language: bool = True) -> Any:
        """Bar chart of the located neurons per layer, with each language's own count as a line; returns the Axes."""
        return plots.plot_layers(self, ax=ax, per_language=per_language)

    def plot_overlap(self, ax: Any = None) -> Any:
        """Language × language Jaccard heatmap of the per-language neuron sets, annotated; returns the Axes."""
        return plots.plot_overlap(self, ax=ax)


__all__ = ["NeuronLocation"]
