"""In-context editing (IKE-like): no weight changes; the new fact is put in front of every prompt.

`ICLEditor` stores each edited fact; its ``.model`` is an `InContextModel`, a wrapper module
whose forward takes the same batch a causal LM takes (``input_ids``, ``attention_mask``, optional
``position_ids`` / ``logits_to_keep``, left or right padding) and, for every row, runs the wrapped model on

    <bos>New fact: {prompt} {target}\\n<the row's own tokens without its <bos>>

with the fact chosen for that row (see below). It returns logits laid out like the input, so any code that
scores a causal LM by calling it on a batch (``peft_mpn.metrics.score_targets``, the evaluate module's inputs)
scores the in-context edit with no change: reliability, generality, cross-lingual and locality prompts all
see the demonstration, as in IKE.

Retrieval (sequential editing): with several stored facts, each row gets the ``num_demonstrations`` stored
facts whose edit prompts share the most tokens with it (Jaccard overlap of token-id sets, special tokens
left out; ties go to the most recent fact), the best match last, closest to the question. IKE retrieves
demonstrations by sentence-embedding similarity; token overlap needs no second model and finds the fact
whenever the question shares its subject's tokens (names are often copied across languages).

The context is tokenised on its own and joined as token ids, so the question is tokenised exactly as
without it; for tokenisers that split at newlines this equals tokenising the joined text. ``generate`` reads
the same joined rows with the wrapped model's own ``generate`` (its key-value cache, the demonstrations' shared
tokens run once) and returns the input followed by the new tokens, as ``generate`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from ...batching import (
    check_length,
    left_pad,
    left_padded_positions,
    pad_token_id,
    position_limit,
    takes_logits_to_keep,
)
from ...devices import input_device
from ...shared_prefix import SharedPrefix
from .config import ICLEditorConfig
from .gate import RetrievalGate


@dataclass(frozen=True)
class _Fact:
    text: str  # the demonstration
    prompt_tokens: frozenset[int]  # the edit prompt's tokens, for retrieval


class InContextModel(nn.Module):
    """A causal LM that reads the stored facts in front of every input (see the module docstring).

    With no stored fact it is the wrapped model: same logits.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: ICLEditorConfig) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = config
        self.facts: list[_Fact] = []
        self._special = frozenset(tokenizer.all_special_ids)
        self._pad = pad_token_id(tokenizer)
        self._keeps_logits = takes_logits_to_keep(model)
        self._limit = position_limit(model)
        self._contexts: dict[tuple[int, ...], list[int]] = {}
        self.gate = None
        if config.gate_depth is not None:
            self.gate = RetrievalGate(model, config.gate_depth, config.gate_margin, self._pad)

    @property
    def config(self) -> Any:
        """The wrapped model's config."""
        return self.model.config

    @property
    def device(self) -> torch.device:
        return input_device(self.model)

    def get_output_embeddings(self) -> nn.Module | None:
        """The wrapped model's output layer."""
        return self.model.get_output_embeddings()

    def add_fact(self, prompt: str, target: str) -> None:
        """Store a fact. A target that ends the way a prompt format ends an answer (a line break) gives that ending
        to the template, so the demonstration is not followed by two line breaks where the format has one (a
        model that reads "A: London\n\n" goes on to predict a blank line after the answer)."""
        text = self.settings.template.format(prompt=prompt, target=target.rstrip())
        tokens = self.tokenizer(prompt)["input_ids"]
        if self.gate is not None:
            self.gate.add_fact(tokens)
        self.facts.append(_Fact(text, self._content_tokens(tokens)))

    def restore_facts(self, facts: Sequence[tuple[str, frozenset[int]]]) -> None:
        """Replace the stored facts with `facts` (demonstration text, prompt tokens), as `ICLEditor.state_dict`
        saved them."""
        self.facts = [_Fact(text, frozenset(tokens)) for text, tokens in facts]
        self._contexts.clear()

    def clear(self, keep: int = 0) -> None:
        """Forget the stored facts after the first `keep` (default: all of them)."""
        del self.facts[keep:]
        self._contexts.clear()
        if self.gate is not None:
            self.gate.clear(keep)

    def retrieve(self, tokens: Sequence[int], key: torch.Tensor | None = None) -> list[int]:
        """Indices of the facts put in front of ``tokens``, least similar first. With the retrieval gate, only
        facts whose gate ``key`` (``gate.keys_of``; computed here if not given) opens, by hidden-state likeness."""
        if not self.facts:
            return []
        if self.gate is not None:
            key = self.gate.keys_of([list(tokens)])[0] if key is None else key
            opened = sorted(self.gate.open_facts(key))
            return [index for _, index in opened[-self.settings.num_demonstrations :]]
        query = self._content_tokens(tokens)

        def similarity(index: int) -> tuple[float, int]:
            fact = self.facts[index].prompt_tokens
            union = len(fact | query)
            return (len(fact & query) / union if union else 0.0, index)

        best = sorted(range(len(self.facts)), key=similarity)
        return best[-self.settings.num_demonstrations :]

    def context_ids(self, facts: Sequence[int]) -> list[int]:
        """The demonstrations of ``facts`` as token ids (with the tokenizer's special prefix, e.g. ``<bos>``)."""
        key = tuple(facts)
        if key not in self._contexts:
            text = "".join(self.facts[i].text for i in facts)
            self._contexts[key] = list(self.tokenizer(text)["input_ids"])
        return self._contexts[key]

    def _content_tokens(self, tokens: Iterable[int]) -> frozenset[int]:
        return frozenset(int(t) for t in tokens) - self._special

    def _joined(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[list[int]], list[int]]:
        """Each row's own tokens, and its stored facts' demonstrations followed by them (the row's own <bos> gives
        way to the context's: the context's last token then predicts what it did)."""
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]
        bos = self.tokenizer.bos_token_id
        keys = self.gate.keys_of(rows) if self.gate is not None and self.facts else [None] * len(rows)
        joined = []
        for row, key in zip(rows, keys):
            context = self.context_ids(self.retrieve(row, key))
            own = row[1:] if context and row and context[0] == bos and row[0] == bos else row
            check_length(
                self._limit,
                len(context) + len(own),
                f"An input with the stored facts in front ({len(own)} tokens of its own, {len(context)} of "
                "demonstrations)",
                "Shorten the prompt or the target, or the demonstrations (a shorter ICLEditorConfig.template, "
                "a smaller num_demonstrations).",
            )
            joined.append(context + own)
        return rows, joined

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """The wrapped model's ``generate`` on context + each row; returns ``input_ids`` followed by the new
        tokens (``[B, S + new]``). Rows must be left-padded (or unpadded), as for any decoder's ``generate``;
        ``kwargs`` (``max_new_tokens``, ``do_sample``, ``eos_token_id``, ...) go to the wrapped model's."""
        taken = sorted(k for k in ("past_key_values", "position_ids", "inputs_embeds") if kwargs.get(k) is not None)
        if taken:
            raise ValueError(f"InContextModel.generate builds its own {taken}; pass input_ids and attention_mask.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("InContextModel.generate needs left-padded rows (tokenizer.padding_side = 'left').")
        _, joined = self._joined(input_ids, attention_mask)
        new_tokens = int(kwargs.get("max_new_tokens") or 0)
        inputs = SharedPrefix(joined, self._pad).inputs(self.model, full_ids=True, new_tokens=new_tokens)
        kwargs.setdefault("pad_token_id", self._pad)
        output = self.model.generate(**inputs, **kwargs)
        return torch.cat([input_ids, output[:, inputs["input_ids"].shape[1] :].to(input_ids.device)], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits of the wrapped model on context + each row, at the row's own positions (``[B, S, V]``).

        ``position_ids`` are recomputed for the longer rows; ``logits_to_keep`` keeps the last positions.
        """
        unsupported = sorted(k for k, v in kwargs.items() if v is not None and k not in ("use_cache", "return_dict"))
        if unsupported:
            raise ValueError(
                f"InContextModel.forward takes input_ids, attention_mask, position_ids and logits_to_keep; got "
                f"{unsupported}. Score it with teacher forcing (peft_mpn.metrics.score_targets)."
            )
        length = input_ids.shape[1]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        rows, joined = self._joined(input_ids, attention_mask)
        ids, mask = left_pad(joined, self._pad, min_length=length)  # at least the input's width (over-padded inputs)
        ids, mask = ids.to(input_ids.device), mask.to(input_ids.device)
        inputs = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": left_padded_positions(mask),
            "use_cache": False,
        }
        if bool(attention_mask[:, -1].all()):
            # Left padding: every row ends in the last column here and in the joined batch, so the kept tail lines
            # up as it is. Only the kept positions reach the output layer (and a hook on it: score_targets).
            keep = logits_to_keep or length
            if self._keeps_logits:
                return CausalLMOutputWithPast(logits=self.model(**inputs, logits_to_keep=keep).logits)
            return CausalLMOutputWithPast(logits=self.model(**inputs).logits[:, -keep:])
        if self._keeps_logits:
            inputs["logits_to_keep"] = length
        tail = self.model(**inputs).logits[:, -length:]  # each row's tokens are its last len(row) positions
        logits = tail.clone()
        for r, (row, row_mask) in enumerate(zip(rows, attention_mask)):
            positions = row_mask.nonzero().squeeze(-1)
            logits[r, positions] = tail[r, length - len(row) :]
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return CausalLMOutputWithPast(logits=logits)
