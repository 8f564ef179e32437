"""Locating language-agnostic factual neurons: the FFN neurons a LAFN adapter edits.

A reconstruction of the locating step of LU-LAFNs (Zhang et al., arXiv 2406.16416; see METHODS.md §3). For
every language of a fact, every FFN neuron of the chosen layers is scored on the fact's prompt and on each of
its paraphrases; a language keeps the neurons selected for *all* of its paraphrases, and a neuron is
language-agnostic when enough languages keep it (`language_vote`; 1.0 is the paper's strict intersection).
Optionally the *generic* neurons (selected for many other facts: "a question ends here") are subtracted.

The package, in the order of the method:

- `config`: `LocatorConfig`, every choice below.
- `paraphrasing`: each language's prompt and paraphrases (from the data, a `Paraphraser` or
  `model_paraphraser`).
- `scoring`: every neuron's score on each prompt at the read position (`score_neurons`).
- `selection`: the neurons each prompt selects, each language keeps and enough languages share
  (`select_neurons`), and the generic neurons (`estimate_generic_neurons`).
- `locate`: `locate_neurons`, which runs these steps for one fact and returns a `NeuronLocation` (`location`:
  `summary`, `lafn_config`, JSON records; `plots`: its two matplotlib plots, matplotlib imported only there).

Import the public names from `peft_mpn.locating` itself.

Measured pitfalls (METHODS.md §3): a plain intersection is mostly generic neurons, so pass
`reference_requests` (other facts) with `generic_facts_fraction` (≈ 0.2); read every language at the same
token (`template="Q: {prompt}\\nA:"`); prefer a vote (≈ 0.75) to a strict intersection; and compare against
shuffled-fact controls, not only random neurons.

For example:

```python
from peft import get_peft_model
import peft_mpn
from peft_mpn.locating import LocatorConfig, locate_neurons

config = LocatorConfig(top_k=50, language_vote=0.75, template="Q: {prompt}\\nA:", generic_facts_fraction=0.2)
location = locate_neurons(model, tokenizer, request, config, reference_requests=other_requests)
print(location.summary())
model = get_peft_model(model, peft_mpn.LAFNConfig(neurons=location.neurons))
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
