"""Run the tokens every row of a batch starts with once, then only what differs.

The prompt formats a base model answers in put the same answered questions before every question (`qa-2shot`:
about 25 of a prompt's 40-60 tokens), so a batch of prompts spends most of its forward pass on identical
tokens. `SharedPrefix` runs those once (one row), repeats their key-value cache over the batch, and lays each
row out as ``[shared prefix][padding][rest]``: the attention mask hides the padding and the position ids count
on from the prefix, so every real token sees exactly what it saw in the left-padded batch. Outputs are
right-aligned like the left-padded batch's, so ``[:, -k:]`` means the same positions in both.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .batching import left_pad, left_padded_positions
from .devices import input_device

#: Fewer shared tokens than this are not worth a separate pass.
MIN_SHARED_TOKENS = 8


def shared_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, keeping at least one token of each row out of it."""
    if len(rows) < 2:
        return 0
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def supports_shared_prefix(model: nn.Module, length: int) -> bool:
    """Whether `model` is a decoder whose forward takes a key-value cache, and sequences of `length` tokens fit
    within its sliding attention window if it has one (the window counts padding, which moves in the split
    layout). Encoders and wrappers without a cache run the plain batch."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or not getattr(config, "use_cache", False):
        return False
    window = getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None)
    if isinstance(window, int) and length > window - 1:
        return False
    base = getattr(model, "get_base_model", lambda: model)()
    # a wrapper with a `generate` of its own (`InContextModel`) takes no cache from outside
    takes_cache = "past_key_values" in inspect.signature(base.forward).parameters
    return callable(getattr(base, "generate", None)) and takes_cache


class SharedPrefix:
    """Left-padded token rows split into the tokens they all start with and the rest of each row.

    Args:
        rows: token ids, one list per row (no padding).
        pad_token_id: the id padding positions hold.
        min_shared: the fewest shared tokens worth splitting for; with fewer, `active` is False and
            `inputs` gives the plain left-padded batch.
    """

    def __init__(self, rows: Sequence[Sequence[int]], pad_token_id: int, min_shared: int = MIN_SHARED_TOKENS) -> None:
        self.rows = [list(row) for row in rows]
        self.pad_token_id = pad_token_id
        length = shared_length(self.rows)
        self.length = length if length >= min_shared else 0
        self.active = self.length > 0

    def usable(self, model: nn.Module, new_tokens: int = 0) -> bool:
        """Whether the split applies: enough shared tokens, and `model` supports it for these rows plus
        `new_tokens` generated after them (`supports_shared_prefix`)."""
        longest = max((len(row) for row in self.rows), default=0)
        return self.active and supports_shared_prefix(model, longest + new_tokens)

    def inputs(self, model: nn.Module, *, full_ids: bool = False, new_tokens: int = 0) -> dict[str, Any]:
        """Model inputs for the batch. When `usable` (with `new_tokens` to be generated): ``input_ids`` holds the
        rest of each row (``full_ids``: the whole ``[prefix][padding][rest]`` layout, as ``generate`` wants it),
        ``attention_mask`` covers prefix and rest, and ``past_key_values`` holds the prefix, run now with `model`
        as it is (fresh for each call: a forward or ``generate`` extends it). Otherwise the plain left-padded
        batch (with ``position_ids`` unless ``full_ids``)."""
        device = input_device(model)
        if not self.usable(model, new_tokens):
            input_ids, attention_mask = (t.to(device) for t in left_pad(self.rows, self.pad_token_id))
            plain = {"input_ids": input_ids, "attention_mask": attention_mask}
            return plain if full_ids else {**plain, "position_ids": left_padded_positions(attention_mask)}
        prefix = torch.tensor([self.rows[0][: self.length]], dtype=torch.long, device=device)
        no_position = torch.zeros(0, dtype=torch.long, device=device)  # Gemma 3's output layer: a quarter of this pass
        with torch.no_grad():
            cache = model(input_ids=prefix, use_cache=True, logits_to_keep=no_position).past_key_values
        cache.batch_repeat_interleave(len(self.rows))
        rest_ids, rest_mask = left_pad([row[self.length :] for row in self.rows], self.pad_token_id)
        rest_ids, rest_mask = rest_ids.to(device), rest_mask.to(device)
        mask = torch.cat([torch.ones(len(self.rows), self.length, dtype=rest_mask.dtype, device=device), rest_mask], 1)
        inputs: dict[str, Any] = {"attention_mask": mask, "past_key_values": cache}
        if full_ids:
            inputs["input_ids"] = torch.cat([prefix.expand(len(self.rows), -1), rest_ids], dim=1)
        else:
            inputs["input_ids"] = rest_ids
            inputs["position_ids"] = left_padded_positions(mask)[:, self.length :]
        return inputs
