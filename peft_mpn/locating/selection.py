"""Selection: from scores to the language-agnostic neurons, and the generic neurons subtracted from them.

Each prompt selects its top-k (or above-threshold) positive scores, per layer or over all searched layers
(`select_neurons`); a language keeps the neurons selected for all of its prompts; a neuron is language-agnostic
when at least `ceil(language_vote · n)` of the `n` languages keep it. Generic neurons, which the same procedure
selects for many other facts, are estimated once (`estimate_generic_neurons`) and subtracted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.requests import EditRequest
from .config import LocatorConfig
from .paraphrasing import PromptGroup, prompt_groups
from .scoring import locator_layers, score_neurons


def select_neurons(scores: torch.Tensor, config: LocatorConfig) -> torch.Tensor:
    """Boolean mask `[prompts, layers, neurons]` of the neurons selected for each prompt (score > 0 always)."""
    prompts, layers, width = scores.shape
    flat = scores if config.scope == "layer" else scores.reshape(prompts, 1, layers * width)
    if config.selection == "top_k":
        k = min(config.top_k, flat.shape[-1])
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask.scatter_(-1, flat.topk(k, dim=-1).indices, True)
    else:
        bound = config.threshold * flat.amax(-1, keepdim=True) if config.relative_threshold else config.threshold
        mask = flat >= bound
    return (mask & (flat > 0)).reshape(prompts, layers, width)


def votes_needed(vote: float, languages: int) -> int:
    """How many of `languages` languages must keep a neuron at `language_vote=vote` (at least 1)."""
    return max(1, math.ceil(vote * languages - 1e-9))


def mask_to_sets(mask: torch.Tensor, layers: Sequence[int]) -> dict[int, list[int]]:
    """`[layers, neurons]` bool -> `{layer: sorted indices}` (empty layers left out)."""
    sets = {}
    for i, layer in enumerate(layers):
        indices = torch.nonzero(mask[i]).flatten().tolist()
        if indices:
            sets[layer] = indices
    return sets


@dataclass
class LanguageSelection:
    """What one fact's prompts select, as `[layers, neurons]` tensors over the searched layers."""

    per_language: dict[str, torch.Tensor]  # language -> [layers, neurons] bool
    agnostic: torch.Tensor  # [layers, neurons] bool
    mean_scores: torch.Tensor  # [layers, neurons]


def select_across_languages(
    model: nn.Module, tokenizer: Any, groups: dict[str, PromptGroup], config: LocatorConfig
) -> LanguageSelection:
    """Score every prompt of every language, keep per language what all its prompts select, then vote."""
    prompts = [p for group in groups.values() for p in group.prompts]
    targets = [group.target for group in groups.values() for _ in group.prompts]
    scores = score_neurons(model, tokenizer, prompts, config, targets=targets)
    selected = select_neurons(scores, config)
    per_language = {}
    start = 0
    for lang, group in groups.items():
        per_language[lang] = selected[start : start + len(group.prompts)].all(0)
        start += len(group.prompts)
    votes = torch.stack(list(per_language.values())).sum(0)
    agnostic = votes >= votes_needed(config.language_vote, len(groups))
    return LanguageSelection(per_language, agnostic, scores.mean(0))


# -- generic neurons --------------------------------------------------------------------------------------------
@dataclass
class GenericNeurons:
    """Each reference fact's language-agnostic set, estimated once and reused for every located fact."""

    languages: list[str]
    layers: list[int]
    masks: dict[str, torch.Tensor]  # reference case id -> [layers, neurons] bool

    def mask(self, fraction: float, exclude: str | None = None) -> tuple[torch.Tensor, int]:
        """Neurons selected for >= `fraction` of the references (never counting `exclude`), and how many."""
        used = [mask for case_id, mask in self.masks.items() if case_id != exclude]
        if not used:
            raise ValueError("No reference fact left to estimate the generic neurons from.")
        counts = torch.stack(used).long().sum(0)
        return counts >= fraction * len(used) - 1e-9, len(used)


def estimate_generic_neurons(
    model: nn.Module,
    tokenizer: Any,
    reference_requests: Sequence[EditRequest],
    languages: Sequence[str],
    config: LocatorConfig,
) -> GenericNeurons:
    """Locate every reference fact (its own prompts and rephrases, the same config) in `languages`."""
    masks: dict[str, torch.Tensor] = {}
    for number, reference in enumerate(reference_requests):
        common = [lang for lang in languages if lang in reference.views]
        if not common:
            continue
        located = select_across_languages(model, tokenizer, prompt_groups(reference, common), config)
        masks[reference.case_id if reference.case_id is not None else f"#{number}"] = located.agnostic
    if not masks:
        raise ValueError(
            f"None of the {len(reference_requests)} reference requests has a version in {list(languages)}: give "
            "other facts in the same languages to estimate the generic neurons."
        )
    return GenericNeurons(list(languages), locator_layers(model, config), masks)


def generic_mask(
    model: nn.Module,
    tokenizer: Any,
    reference_requests: Sequence[EditRequest] | GenericNeurons,
    languages: list[str],
    config: LocatorConfig,
    exclude: str | None,
) -> tuple[torch.Tensor, int]:
    """The generic neurons of a fact located in `languages`, and how many reference facts estimated them.

    `reference_requests` are estimated here unless they are `GenericNeurons` already (then estimated in the
    same languages); the reference whose case id is `exclude` (the fact's own) is not counted.
    """
    if config.generic_facts_fraction is None:
        raise ValueError(
            "reference_requests were given but LocatorConfig.generic_facts_fraction is None: set it (e.g. 0.2 "
            "drops the neurons selected for >= 20% of the reference facts) or leave the references out."
        )
    if not isinstance(reference_requests, GenericNeurons):
        reference_requests = estimate_generic_neurons(model, tokenizer, reference_requests, languages, config)
    elif set(reference_requests.languages) != set(languages):
        raise ValueError(
            f"The generic neurons were estimated in {reference_requests.languages}, this fact is located in "
            f"{languages}; estimate them in the same languages."
        )
    return reference_requests.mask(config.generic_facts_fraction, exclude=exclude)


__all__ = ["GenericNeurons", "estimate_generic_neurons", "select_neurons"]
