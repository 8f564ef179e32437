"""Locating language-agnostic factual neurons: the FFN neurons a LAFN adapter edits.

A reconstruction of the locating step of LU-LAFNs (Zhang et al., arXiv 2406.16416; see METHODS.md §3). For
every language of a fact, every FFN neuron of the chosen layers is scored on the fact's prompt and on each of
its paraphrases; a language keeps the neurons selected for *all* of its paraphrases, and a neuron is
language-agnostic when enough languages keep it (``language_vote``; 1.0 is the paper's strict intersection).
Optionally the *generic* neurons (selected for many other facts: "a question ends here") are subtracted.

Scores (``LocatorConfig.scoring``), for neuron ``k`` of a layer whose FFN is ``y = W_down · a``, read at one
token position (``LocatorConfig.position``):

- ``"activation"``: ``|a_k| · ||W_down[:, k]||``, the magnitude of the neuron's contribution ``a_k · W_down[:, k]``
  to the FFN output.
- ``"integrated_gradients"``: ``a_k · (1/m) Σ_{s=1..m} ∂ log p(t | x) / ∂ a_k`` evaluated with the layer's
  activation vector at the read position scaled to ``((s - ½)/m) · a`` (a midpoint Riemann sum from 0 to ``a``,
  ``m = ig_steps``; other positions and layers run as usual). Summed over a layer's neurons it approximates
  ``log p(t | a) − log p(t | a = 0 at the read position)`` (completeness). ``t`` is the first token of the
  target (the label for classifiers). Signed: positive means the neuron raises the target; only positive scores
  are ever selected.

Measured pitfalls (METHODS.md §3): a plain intersection is mostly generic neurons, so pass
``reference_requests`` (other facts) with ``generic_facts_fraction`` (≈ 0.2); read every language at the same
token (``template="Q: {prompt}\\nA:"``); prefer a vote (≈ 0.75) to a strict intersection; and compare against
shuffled-fact controls, not only random neurons.

Example:

    ```py
    >>> from peft import get_peft_model
    >>> import peft_mpn
    >>> from peft_mpn.locating import LocatorConfig, locate_neurons
    >>> config = LocatorConfig(top_k=50, language_vote=0.75, template="Q: {prompt}\\nA:", generic_facts_fraction=0.2)
    >>> location = locate_neurons(model, tokenizer, request, config, reference_requests=other_requests)
    >>> print(location.summary())
    >>> model = get_peft_model(model, peft_mpn.LAFNConfig(neurons=location.neurons))
    ```
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..batching import encode_target, eval_mode, left_padded_positions, pad_token_id
from ..data.requests import EditRequest, FactView, Target
from ..tuners.ffn import FFNBlocks, ffn_blocks
from ..tuners.lafn import LAFNConfig
from .config import LocatorConfig

#: ``(prompt, language) -> paraphrases of prompt in that language``.
Paraphraser = Callable[[str, str], Sequence[str]]


# -- the model's FFNs -------------------------------------------------------------------------------------------
def _column_norms(down: nn.Module) -> torch.Tensor:
    """``||W_down[:, k]||`` per neuron (GPT-2's Conv1D stores W_down as [F, d]: a row norm there)."""
    weight = down.weight.detach().float()
    return weight.norm(dim=1) if isinstance(down, Conv1D) else weight.norm(dim=0)


def searched_blocks(model: nn.Module, config: LocatorConfig | None = None) -> FFNBlocks:
    """The FFNs the locator searches: ``config.layers`` at or above ``config.lowest_layer_fraction`` of the depth."""
    config = config or LocatorConfig()
    ffns = ffn_blocks(model, config.layers)
    if config.lowest_layer_fraction:
        lowest = int(ffns.num_layers * config.lowest_layer_fraction)
        kept = [layer for layer in ffns.layers if layer >= lowest]
        if not kept:
            raise ValueError(
                f"No layer of {ffns.layers} is at or above lowest_layer_fraction={config.lowest_layer_fraction} of "
                f"this {ffns.num_layers}-layer model (block {lowest}); lower the fraction or pick higher layers."
            )
        ffns = ffn_blocks(model, kept)
    return ffns


def locator_layers(model: nn.Module, config: LocatorConfig | None = None) -> list[int]:
    """The layers :func:`score_neurons` scores, in the order of its layer dimension."""
    return searched_blocks(model, config).layers


# -- batches ----------------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _batch(
    tokenizer: Any, texts: Sequence[str], *, encoder: bool, position: str, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Padded model inputs (left for decoders, right for encoders) and the read position of every row."""
    ids = [list(tokenizer(text)["input_ids"]) for text in texts]
    for text, row in zip(texts, ids):
        if not row:
            raise ValueError(f"The prompt {text!r} encodes to no tokens.")
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_token_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    read = torch.zeros(len(ids), dtype=torch.long)
    for i, row in enumerate(ids):
        if encoder:
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            read[i] = 0 if position == "target_first" else len(row) - 1
        else:
            input_ids[i, length - len(row) :] = torch.tensor(row)
            mask[i, length - len(row) :] = 1
            read[i] = length - 1
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    if not encoder:
        inputs["position_ids"] = left_padded_positions(mask)
    return {k: v.to(device) for k, v in inputs.items()}, read.to(device)


def _target_ids(tokenizer: Any, texts: Sequence[str], targets: Sequence[Target], encoder: bool) -> list[int]:
    ids = []
    for text, target in zip(texts, targets):
        if encoder:
            if isinstance(target, bool) or not isinstance(target, int):
                raise ValueError(f"Integrated gradients on a classifier needs int label targets, got {target!r}.")
            ids.append(target)
        else:
            if not isinstance(target, str):
                raise ValueError(f"Integrated gradients on a causal LM needs string targets, got {target!r}.")
            ids.append(encode_target(tokenizer, text, target).target_ids[0])
    return ids


def _target_log_probs(logits: torch.Tensor, read: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(len(target_ids), device=logits.device)
    if logits.dim() == 3:  # causal LM: the logits at the read position predict the target's first token
        logits = logits[rows, read]
    elif logits.dim() != 2:
        raise ValueError(f"Cannot read target log-probs from logits of shape {tuple(logits.shape)}.")
    return torch.log_softmax(logits.float(), dim=-1)[rows, target_ids]


def _activations(ffns: FFNBlocks, inputs: dict[str, torch.Tensor], read: torch.Tensor) -> dict[int, torch.Tensor]:
    """``a`` at the read positions, ``{layer: [B, F]}``, all layers in one forward pass (stopped after the last)."""
    captured: dict[int, torch.Tensor] = {}
    rows = torch.arange(len(read), device=read.device)
    last = max(ffns.layers)

    def hook(layer: int):
        def capture(module: nn.Module, args: tuple[Any, ...]) -> None:
            captured[layer] = args[0][rows, read].detach().float()
            if layer == last:
                raise _Stop

        return capture

    handles = [down.register_forward_pre_hook(hook(layer)) for layer, down in ffns.downs.items()]
    try:
        with torch.no_grad():
            ffns.model(**inputs)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _integrated_gradients(
    ffns: FFNBlocks,
    inputs: dict[str, torch.Tensor],
    read: torch.Tensor,
    target_ids: torch.Tensor,
    base: dict[int, torch.Tensor],
    steps: int,
) -> dict[int, torch.Tensor]:
    """IG of log p(target) w.r.t. each layer's activation at the read position, ``{layer: [B, F]}``."""
    batch = len(read)
    repeated = {k: v.repeat_interleave(steps, 0) for k, v in inputs.items()}
    read_r = read.repeat_interleave(steps)
    targets_r = target_ids.repeat_interleave(steps)
    rows = torch.arange(batch * steps, device=read.device)
    alphas = ((torch.arange(steps, device=read.device, dtype=torch.float32) + 0.5) / steps).repeat(batch)  # midpoints
    result: dict[int, torch.Tensor] = {}
    for layer, down in ffns.downs.items():
        x = (alphas[:, None] * base[layer].repeat_interleave(steps, 0)).requires_grad_(True)

        def plant(module: nn.Module, args: tuple[Any, ...], x: torch.Tensor = x) -> tuple[Any, ...]:
            a = args[0].clone()
            a[rows, read_r] = x.to(a.dtype)
            return (a, *args[1:])

        handle = down.register_forward_pre_hook(plant)
        try:
            with torch.enable_grad():
                logits = ffns.model(**repeated).logits
                log_probs = _target_log_probs(logits, read_r, targets_r)
                (grad,) = torch.autograd.grad(log_probs.sum(), x)
        finally:
            handle.remove()
        result[layer] = grad.view(batch, steps, -1).mean(1) * base[layer]
    return result


def score_neurons(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    config: LocatorConfig | None = None,
    *,
    targets: Sequence[Target] | None = None,
) -> torch.Tensor:
    """Scores of every FFN neuron for each prompt: a CPU float32 tensor ``[prompts, layers, neurons]``.

    ``config.template`` is applied to the prompts; the layer dimension follows :func:`locator_layers`.
    ``targets`` (one per prompt: a string for causal LMs, an int label for classifiers) are needed only for
    integrated gradients.
    """
    config = config or LocatorConfig()
    ffns = searched_blocks(model, config)
    texts = [config.apply_template(p) for p in prompts]
    if not texts:
        raise ValueError("No prompts to score.")
    if config.scoring == "integrated_gradients" and (
        targets is None or len(targets) != len(texts) or any(t is None for t in targets)
    ):
        raise ValueError(
            "Integrated gradients scores the log-prob of the target: give one target per prompt (pass "
            "FactViews or an EditRequest rather than bare prompt strings), or use scoring='activation'."
        )
    encoder = ffns.spec.encoder
    device = next(ffns.model.parameters()).device
    norms = {layer: _column_norms(down).to(device) for layer, down in ffns.downs.items()}
    per_batch = config.batch_size if config.scoring == "activation" else max(1, config.batch_size // config.ig_steps)
    chunks = []
    with eval_mode(ffns.model):
        for start in range(0, len(texts), per_batch):
            chunk = texts[start : start + per_batch]
            inputs, read = _batch(tokenizer, chunk, encoder=encoder, position=config.position, device=device)
            acts = _activations(ffns, inputs, read)
            if config.scoring == "activation":
                scores = {layer: acts[layer].abs() * norms[layer] for layer in ffns.layers}
            else:
                ids = _target_ids(tokenizer, chunk, targets[start : start + per_batch], encoder)
                target_ids = torch.tensor(ids, dtype=torch.long, device=device)
                scores = _integrated_gradients(ffns, inputs, read, target_ids, acts, config.ig_steps)
            chunks.append(torch.stack([scores[layer] for layer in ffns.layers], dim=1).cpu())
    return torch.cat(chunks)


def select_neurons(scores: torch.Tensor, config: LocatorConfig) -> torch.Tensor:
    """Boolean mask ``[prompts, layers, neurons]`` of the neurons selected for each prompt (score > 0 always)."""
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


# -- what is located --------------------------------------------------------------------------------------------
def _mask_to_sets(mask: torch.Tensor, layers: Sequence[int]) -> dict[int, list[int]]:
    """``[layers, neurons]`` bool -> ``{layer: sorted indices}`` (empty layers left out)."""
    sets = {}
    for i, layer in enumerate(layers):
        indices = torch.nonzero(mask[i]).flatten().tolist()
        if indices:
            sets[layer] = indices
    return sets


def _int_keys(mapping: Mapping[Any, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items()}


@dataclass
class NeuronLocation:
    """The located neurons of one fact, and how they were found.

    Attributes:
        neurons: layer -> sorted neuron indices, the language-agnostic set (generic neurons removed); pass it to
            ``LAFNConfig(neurons=...)``.
        scores: layer -> neuron -> mean score over every prompt read (all languages and paraphrases).
        per_language: language -> layer -> the neurons selected for all of that language's paraphrases.
        languages: the languages combined, in order.
        config: the :class:`LocatorConfig` used.
        prompts: language -> the prompts read (prompt first, then paraphrases), before the template.
        layers: the layers searched.
        generic: layer -> the generic neurons (selected for >= generic_facts_fraction of the reference facts);
            empty when no reference facts were used.
        num_references: how many reference facts estimated ``generic``.
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
        return sum(len(v) for v in self.neurons.values())

    def counts(self) -> dict[int, int]:
        """Located neurons per layer (every searched layer, zeros included)."""
        return {layer: len(self.neurons.get(layer, [])) for layer in self.layers or sorted(self.neurons)}

    def language_counts(self) -> dict[str, dict[int, int]]:
        layers = self.layers or sorted({layer for sets in self.per_language.values() for layer in sets})
        return {
            lang: {layer: len(sets.get(layer, [])) for layer in layers} for lang, sets in self.per_language.items()
        }

    def jaccard(self) -> list[list[float]]:
        """Jaccard similarity of the per-language sets of (layer, neuron) pairs, in ``languages`` order."""
        sets = [
            {(layer, n) for layer, ns in self.per_language.get(lang, {}).items() for n in ns}
            for lang in self.languages
        ]
        return [[len(a & b) / len(a | b) if a | b else 1.0 for b in sets] for a in sets]

    def lafn_config(self, **kwargs: Any):
        """A :class:`~peft_mpn.LAFNConfig` for these neurons (``kwargs`` go to the config)."""
        return LAFNConfig(neurons={layer: list(ns) for layer, ns in self.neurons.items()}, **kwargs)

    def summary(self) -> str:
        """Counts per layer: located, per language and generic."""
        config = self.config
        need = _votes_needed(config.language_vote, len(self.languages))
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
        """A JSON-friendly record (layer and neuron keys become strings in JSON; :meth:`from_dict` reads both)."""
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

    # -- plots (matplotlib imported only here) ---------------------------------------------------------------
    def plot_layers(self, ax: Any = None, per_language: bool = True) -> Any:
        """Bar chart of the located neurons per layer, with each language's own count as a line; returns the Axes."""
        created = ax is None
        if created:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(self.counts()) + 2), 3.5))
        counts = self.counts()
        layers = list(counts)
        ax.bar(layers, [counts[layer] for layer in layers], color="tab:blue", label="language-agnostic", zorder=2)
        if per_language:
            for lang, lang_counts in self.language_counts().items():
                ax.plot(layers, [lang_counts.get(layer, 0) for layer in layers], marker=".", lw=1, label=lang)
        ax.set_xlabel("layer")
        ax.set_ylabel("neurons")
        ax.set_xticks(layers)
        ax.set_title(f"Located neurons per layer ({self.num_neurons} in all)")
        ax.legend(fontsize="small", ncols=2 if len(self.languages) > 6 else 1)
        if created:
            ax.figure.tight_layout()
        return ax

    def plot_overlap(self, ax: Any = None) -> Any:
        """Language × language Jaccard heatmap of the per-language neuron sets, annotated; returns the Axes."""
        created = ax is None
        if created:
            import matplotlib.pyplot as plt

            size = max(3.5, 0.5 * len(self.languages) + 2)
            _, ax = plt.subplots(figsize=(size + 0.8, size))
        matrix = self.jaccard()
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        n = len(self.languages)
        ax.set_xticks(range(n), self.languages)
        ax.set_yticks(range(n), self.languages)
        for i in range(n):
            for j in range(n):
                value = matrix[i][j]
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small", color=color)
        ax.figure.colorbar(image, ax=ax, label="Jaccard")
        ax.set_title("Overlap of per-language neuron sets")
        if created:
            ax.figure.tight_layout()
        return ax


# -- locating ---------------------------------------------------------------------------------------------------
@dataclass
class _Group:
    prompts: list[str]
    target: Target | None


def _votes_needed(vote: float, languages: int) -> int:
    return max(1, math.ceil(vote * languages - 1e-9))


def _as_group(value: Any, language: str) -> _Group:
    if isinstance(value, FactView):
        return _Group([value.prompt, *value.rephrases], value.target)
    if isinstance(value, str):
        return _Group([value], None)
    if isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value):
        return _Group(list(value), None)
    raise TypeError(
        f"The {language!r} version must be a FactView, a prompt string or a list of prompts (the first is the "
        f"prompt, the rest its paraphrases); got {value!r}."
    )


def _groups(request_or_views: Any, languages: Sequence[str] | None) -> dict[str, _Group]:
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


def _paraphrase(groups: dict[str, _Group], paraphraser: Paraphraser | None, config: LocatorConfig) -> None:
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


@dataclass
class _Located:
    per_language: dict[str, torch.Tensor]  # language -> [layers, neurons] bool
    agnostic: torch.Tensor  # [layers, neurons] bool
    mean_scores: torch.Tensor  # [layers, neurons]


def _locate_groups(model: nn.Module, tokenizer: Any, groups: dict[str, _Group], config: LocatorConfig) -> _Located:
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
    agnostic = votes >= _votes_needed(config.language_vote, len(groups))
    return _Located(per_language, agnostic, scores.mean(0))


@dataclass
class GenericNeurons:
    """Each reference fact's language-agnostic set, estimated once and reused for every located fact."""

    languages: list[str]
    layers: list[int]
    masks: dict[str, torch.Tensor]  # reference case id -> [layers, neurons] bool

    def mask(self, fraction: float, exclude: str | None = None) -> tuple[torch.Tensor, int]:
        """Neurons selected for >= ``fraction`` of the references (never counting ``exclude``), and how many."""
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
    """Locate every reference fact (its own prompts and rephrases, the same config) in ``languages``."""
    masks: dict[str, torch.Tensor] = {}
    for number, reference in enumerate(reference_requests):
        common = [lang for lang in languages if lang in reference.views]
        if not common:
            continue
        located = _locate_groups(model, tokenizer, _groups(reference, common), config)
        masks[reference.case_id if reference.case_id is not None else f"#{number}"] = located.agnostic
    if not masks:
        raise ValueError(
            f"None of the {len(reference_requests)} reference requests has a version in {list(languages)}: give "
            "other facts in the same languages to estimate the generic neurons."
        )
    return GenericNeurons(list(languages), locator_layers(model, config), masks)


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

    Args:
        model: a causal LM or encoder classifier of an architecture in ``FFN_SPECS`` (a ``PeftModel`` is read
            through ``get_base_model()``; adapters' own neurons are not scored).
        tokenizer: its tokenizer.
        request_or_views: an :class:`EditRequest` (every language's prompt and rephrases), or a mapping
            ``{language: FactView | prompt | [prompt, paraphrase, ...]}`` (bare prompts have no target, so they
            support activation scoring only).
        config: a :class:`LocatorConfig` (default: activation scoring, top-50 per layer, strict intersection).
        reference_requests: other facts; with ``config.generic_facts_fraction``, the neurons that the same
            procedure (same config and languages, the facts' own prompts and rephrases, no paraphraser and no
            paraphrase requirement) selects for at least that fraction of them are removed. A reference with the
            request's own ``case_id`` is skipped. Pass a :class:`GenericNeurons` from
            :func:`estimate_generic_neurons` to locate many facts against the same references without
            re-locating them each time.
        paraphraser: ``(prompt, language) -> [paraphrase, ...]``, called for each language that has no paraphrase
            (see :func:`model_paraphraser`).
        languages: restrict to these languages (default: all of the request's).

    For each language, every neuron of the chosen layers is scored on each of its prompts (one forward pass
    per batch, all layers at once, hooks on the down projections); the language keeps the neurons selected for
    all of them; a neuron is language-agnostic if at least ``ceil(language_vote · n)`` of the ``n`` languages
    keep it. Raises ``ValueError`` when that set (after generic removal) is empty.
    """
    config = config or LocatorConfig()
    ffns = searched_blocks(model, config)  # checks the architecture and the layers first
    groups = _groups(request_or_views, languages)
    _paraphrase(groups, paraphraser, config)
    located = _locate_groups(model, tokenizer, groups, config)
    case_id = request_or_views.case_id if isinstance(request_or_views, EditRequest) else None

    generic = torch.zeros_like(located.agnostic)
    used = 0
    if reference_requests:
        if config.generic_facts_fraction is None:
            raise ValueError(
                "reference_requests were given but LocatorConfig.generic_facts_fraction is None: set it (e.g. 0.2 "
                "drops the neurons selected for >= 20% of the reference facts) or leave the references out."
            )
        if not isinstance(reference_requests, GenericNeurons):
            reference_requests = estimate_generic_neurons(model, tokenizer, reference_requests, list(groups), config)
        elif set(reference_requests.languages) != set(groups):
            raise ValueError(
                f"The generic neurons were estimated in {reference_requests.languages}, this fact is located in "
                f"{list(groups)}; estimate them in the same languages."
            )
        generic, used = reference_requests.mask(config.generic_facts_fraction, exclude=case_id)
    elif config.generic_facts_fraction is not None:
        warnings.warn(
            "LocatorConfig.generic_facts_fraction is set but no reference_requests were given: no generic "
            "neurons are removed.",
            stacklevel=2,
        )
    final = located.agnostic & ~generic
    layers = ffns.layers
    per_language = {lang: _mask_to_sets(mask, layers) for lang, mask in located.per_language.items()}
    if not final.any():
        sizes = ", ".join(f"{lang}: {int(mask.sum())}" for lang, mask in located.per_language.items())
        need = _votes_needed(config.language_vote, len(groups))
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
        raise ValueError(
            f"No language-agnostic neurons found in layers {layers}: per language, {sizes} neurons were selected "
            f"for every paraphrase, but {problem}. To find an overlap, {advice}."
        )
    neurons = _mask_to_sets(final, layers)
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
        generic=_mask_to_sets(generic, layers),
        num_references=used,
        case_id=case_id,
    )


# -- paraphrases from a model -----------------------------------------------------------------------------------
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch",
    "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip

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
    """A paraphraser ``(prompt, language) -> [paraphrase, ...]`` that asks a causal LM.

    ``template`` (slots ``{prompt}`` and ``{language}``, the language's English name where known) is completed
    by beam search (``num_beams`` beams, default ``n``; greedy when both are 1) and the first line of each of
    the ``n`` returned continuations is kept (empty ones, repeats and the prompt itself are dropped, so fewer
    than ``n`` may come back).

    The quality is the model's: an instruction-tuned model gives usable paraphrases; a small base model (such
    as Gemma-3-270M) gives mediocre ones (continuations, translations, repeats). Check ``NeuronLocation.prompts``
    and prefer the data's own rephrases when they exist.
    """
    if "{prompt}" not in template:
        raise ValueError(f"The paraphrase template needs a '{{prompt}}' slot, got {template!r}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    beams = max(n, num_beams or n)

    def paraphrase(prompt: str, language: str) -> list[str]:
        text = template.replace("{prompt}", prompt).replace("{language}", LANGUAGE_NAMES.get(language, language))
        device = next(model.parameters()).device
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


__all__ = [
    "DEFAULT_PARAPHRASE_TEMPLATE",
    "LocatorConfig",
    "NeuronLocation",
    "Paraphraser",
    "locate_neurons",
    "locator_layers",
    "model_paraphraser",
    "score_neurons",
    "select_neurons",
]
