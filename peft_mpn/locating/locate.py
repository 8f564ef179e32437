"""`locate_neurons`: the language-agnostic factual neurons of one fact, from its prompts to a `NeuronLocation`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..data.requests import EditRequest, FactView
from .config import LocatorConfig
from .location import NeuronLocation
from .paraphrasing import Paraphraser, PromptGroup, add_paraphrases, prompt_groups
from .scoring import searched_blocks
from .selection import (
    GenericNeurons,
    LanguageSelection,
    generic_mask,
    mask_to_sets,
    select_across_languages,
    votes_needed,
)


def locate_neurons(
    model: nn.Module,
    tokenizer: Any,
    request_or_views: EditRequest | Mapping[str, FactView | str | Sequence[str]],
    config: LocatorConfig | None = None,
    *,
    reference_requests: Sequence[EditRequest] | GenericNeurons | None = None,
    paraphraser: Paraphraser | None = None,
    languages: Sequence[str] | None = None,
) -> NeuronLocation:
    """Locate the language-agnostic factual neurons of one fact.

    For each language, every neuron of the chosen layers is scored on each of its prompts (one forward pass
    per batch, all layers at once, hooks on the down projections); the language keeps the neurons selected for
    all of them; a neuron is language-agnostic if at least `ceil(language_vote · n)` of the `n` languages
    keep it.

    Args:
        model: a causal LM or encoder classifier of an architecture in `FFN_SPECS` (a `PeftModel` is read
            through `get_base_model()`; adapters' own neurons are not scored).
        tokenizer: its tokenizer.
        request_or_views: an `EditRequest` (every language's prompt and rephrases), or a mapping
            `{language: FactView | prompt | [prompt, paraphrase, ...]}` (bare prompts have no target, so they
            support activation scoring only).
        config: a `LocatorConfig` (default: activation scoring, top-50 per layer, strict intersection).
        reference_requests: other facts; with `config.generic_facts_fraction`, the neurons that the same
            procedure (same config and languages, the facts' own prompts and rephrases, no paraphraser and no
            paraphrase requirement) selects for at least that fraction of them are removed. A reference with the
            request's own `case_id` is skipped. Pass a `GenericNeurons` from `estimate_generic_neurons` to
            locate many facts against the same references without re-locating them each time.
        paraphraser: `(prompt, language) -> [paraphrase, ...]`, called for each language that has no paraphrase
            (see `model_paraphraser`).
        languages: restrict to these languages (default: all of the request's).

    Returns:
        The located neurons, with the per-language sets, scores and prompts they were found from.

    Raises:
        ValueError: when the language-agnostic set (after generic removal) is empty; the message gives each
            language's count and the settings to change.
    """
    config = config or LocatorConfig()
    ffns = searched_blocks(model, config)  # checks the architecture and the layers first
    groups = prompt_groups(request_or_views, languages)
    add_paraphrases(groups, paraphraser, config)
    located = select_across_languages(model, tokenizer, groups, config)
    case_id = request_or_views.case_id if isinstance(request_or_views, EditRequest) else None

    generic = torch.zeros_like(located.agnostic)
    used = 0
    if reference_requests:
        generic, used = generic_mask(model, tokenizer, reference_requests, list(groups), config, exclude=case_id)
    elif config.generic_facts_fraction is not None:
        warnings.warn(
            "LocatorConfig.generic_facts_fraction is set but no reference_requests were given: no generic "
            "neurons are removed.",
            stacklevel=2,
        )
    final = located.agnostic & ~generic
    layers = ffns.layers
    per_language = {lang: mask_to_sets(mask, layers) for lang, mask in located.per_language.items()}
    if not final.any():
        raise _no_overlap_error(located, groups, layers, config, used)
    neurons = mask_to_sets(final, layers)
    index = {layer: i for i, layer in enumerate(layers)}
    scores = {layer: {n: float(located.mean_scores[index[layer], n]) for n in ns} for layer, ns in neurons.items()}
    return NeuronLocation(
        neurons=neurons,
        scores=scores,
        per_language=per_language,
        languages=list(groups),
        config=config,
        prompts={lang: list(group.prompts) for lang, group in groups.items()},
        layers=list(layers),
        generic=mask_to_sets(generic, layers),
        num_references=used,
        case_id=case_id,
    )


def _no_overlap_error(
    located: LanguageSelection,
    groups: dict[str, PromptGroup],
    layers: list[int],
    config: LocatorConfig,
    used: int,
) -> ValueError:
    """Why no neuron is left (no overlap, or only generic neurons), each language's count, and what to change."""
    sizes = ", ".join(f"{lang}: {int(mask.sum())}" for lang, mask in located.per_language.items())
    need = votes_needed(config.language_vote, len(groups))
    problem = (
        f"no neuron is selected in >= {need} of the {len(groups)} languages (language_vote={config.language_vote})"
        if not located.agnostic.any()
        else f"all {int(located.agnostic.sum())} shared neurons are generic (selected for >= "
        f"{config.generic_facts_fraction} of {used} reference facts)"
    )
    advice = (
        f"use a larger top_k (now {config.top_k})"
        if config.selection == "top_k"
        else f"use a lower threshold (now {config.threshold})"
    )
    if located.agnostic.any():
        advice += f" or a higher generic_facts_fraction (now {config.generic_facts_fraction})"
    else:
        advice += ", a lower language_vote, or other layers"
    return ValueError(
        f"No language-agnostic neurons found in layers {layers}: per language, {sizes} neurons were selected "
        f"for every paraphrase, but {problem}. To find an overlap, {advice}."
    )


__all__ = ["locate_neurons"]
