"""Paraphrasing: the prompts a fact is located on, per language, and where paraphrases come from.

A language's prompts are its prompt followed by its paraphrases: the rephrases in the data, else the output of a
`Paraphraser` (any `(prompt, language) -> [paraphrase, ...]`, such as `model_paraphraser`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..batching import pad_token_id
from ..data.languages import LANGUAGE_NAMES, language_name
from ..data.requests import EditRequest, FactView, Target
from ..devices import input_device
from .config import LocatorConfig

#: `(prompt, language) -> paraphrases of prompt in that language`.
Paraphraser = Callable[[str, str], Sequence[str]]


@dataclass
class PromptGroup:
    """One language's prompts (the prompt first, then its paraphrases) and their target, if known."""

    prompts: list[str]
    target: Target | None


def _as_group(value: Any, language: str) -> PromptGroup:
    if isinstance(value, FactView):
        return PromptGroup([value.prompt, *value.rephrases], value.target)
    if isinstance(value, str):
        return PromptGroup([value], None)
    if isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value):
        return PromptGroup(list(value), None)
    raise TypeError(
        f"The {language!r} version must be a FactView, a prompt string or a list of prompts (the first is the "
        f"prompt, the rest its paraphrases); got {value!r}."
    )


def prompt_groups(request_or_views: Any, languages: Sequence[str] | None) -> dict[str, PromptGroup]:
    """`{language: PromptGroup}` of an `EditRequest` or a `{language: FactView | prompts}` mapping.

    Prompts are stripped, and empty ones and repeats dropped; `languages` (default: all) picks and orders them.
    """
    if isinstance(request_or_views, EditRequest):
        views: Mapping[str, Any] = request_or_views.views
    elif isinstance(request_or_views, Mapping):
        views = request_or_views
    else:
        raise TypeError(
            "locate_neurons takes an EditRequest or a mapping {language: FactView | prompts}, "
            f"got {type(request_or_views).__name__}."
        )
    if languages is not None:
        missing = [lang for lang in languages if lang not in views]
        if missing:
            raise ValueError(f"Languages {missing} have no version here (have {sorted(views)}).")
        views = {lang: views[lang] for lang in languages}
    if not views:
        raise ValueError("No languages to locate neurons in.")
    groups = {}
    for lang, view in views.items():
        group = _as_group(view, lang)
        group.prompts = [p for p in dict.fromkeys(p.strip() for p in group.prompts) if p]
        if not group.prompts:
            raise ValueError(f"The {lang!r} version has no non-empty prompt.")
        groups[lang] = group
    return groups


def add_paraphrases(groups: dict[str, PromptGroup], paraphraser: Paraphraser | None, config: LocatorConfig) -> None:
    """Give each language that has only its prompt the `paraphraser`'s paraphrases, in place.

    A language left with one prompt raises `ValueError` (saying how to supply paraphrases) unless
    `config.require_paraphrases` is off.
    """
    for lang, group in groups.items():
        if len(group.prompts) > 1:
            continue
        generated: list[str] = []
        if paraphraser is not None:
            output = paraphraser(group.prompts[0], lang)
            if isinstance(output, str) or not all(isinstance(p, str) for p in output):
                raise TypeError(f"The paraphraser must return a list of strings, got {output!r} for {lang!r}.")
            generated = [p.strip() for p in output]
            group.prompts = [p for p in dict.fromkeys([group.prompts[0], *generated]) if p]
        if len(group.prompts) == 1 and config.require_paraphrases:
            source = (
                f"the paraphraser returned none usable ({generated!r})"
                if paraphraser is not None
                else "none in the data and no paraphraser was given"
            )
            raise ValueError(
                f"Language {lang!r} has no paraphrases of its prompt {group.prompts[0]!r} ({source}), but the "
                "neurons are those selected for every paraphrase. Add rephrases to its FactView, pass "
                "paraphraser=model_paraphraser(model, tokenizer) (or any (prompt, language) -> list[str]), or set "
                "LocatorConfig(require_paraphrases=False) to locate on the single prompt."
            )


# -- paraphrases from a model -----------------------------------------------------------------------------------

#: The prompt `model_paraphraser` completes by default.
DEFAULT_PARAPHRASE_TEMPLATE = (
    "Rewrite the following {language} sentence with other words, keeping its meaning and its language.\n"
    "Sentence: {prompt}\n"
    "Rewritten sentence:"
)


def model_paraphraser(
    model: nn.Module,
    tokenizer: Any,
    n: int = 2,
    template: str = DEFAULT_PARAPHRASE_TEMPLATE,
    *,
    num_beams: int | None = None,
    max_new_tokens: int = 48,
) -> Paraphraser:
    """A paraphraser `(prompt, language) -> [paraphrase, ...]` that asks a causal LM.

    `template` (slots `{prompt}` and `{language}`, the language's English name where known) is completed
    by beam search (`num_beams` beams, default `n`; greedy when both are 1) and the first line of each of
    the `n` returned continuations is kept (empty ones, repeats and the prompt itself are dropped, so fewer
    than `n` may come back).

    The quality is the model's: an instruction-tuned model gives usable paraphrases; a small base model (such
    as Gemma-3-270M) gives mediocre ones (continuations, translations, repeats). Check `NeuronLocation.prompts`
    and prefer the data's own rephrases when they exist.
    """
    if "{prompt}" not in template:
        raise ValueError(f"The paraphrase template needs a '{{prompt}}' slot, got {template!r}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    beams = max(n, num_beams or n)

    def paraphrase(prompt: str, language: str) -> list[str]:
        text = template.replace("{prompt}", prompt).replace("{language}", language_name(language))
        device = input_device(model)
        inputs = {k: v.to(device) for k, v in tokenizer(text, return_tensors="pt").items() if k != "token_type_ids"}
        with torch.no_grad():
            output = model.generate(
                **inputs,
                do_sample=False,
                num_beams=beams,
                num_return_sequences=n,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_token_id(tokenizer),
            )
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        lines = [t.strip().split("\n", 1)[0].strip() for t in texts]
        return [line for line in dict.fromkeys(lines) if line and line != prompt.strip()]

    return paraphrase


__all__ = ["DEFAULT_PARAPHRASE_TEMPLATE", "LANGUAGE_NAMES", "Paraphraser", "model_paraphraser"]
