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

from .config import LocatorConfig
from .locate import locate_neurons
from .location import NeuronLocation
from .paraphrasing import DEFAULT_PARAPHRASE_TEMPLATE, Paraphraser, model_paraphraser
from .scoring import locator_layers, score_neurons
from .selection import GenericNeurons, estimate_generic_neurons, select_neurons

__all__ = [
    "DEFAULT_PARAPHRASE_TEMPLATE",
    "GenericNeurons",
    "LocatorConfig",
    "NeuronLocation",
    "Paraphraser",
    "estimate_generic_neurons",
    "locate_neurons",
    "locator_layers",
    "model_paraphraser",
    "score_neurons",
    "select_neurons",
]
