"""Scoring: every FFN neuron's score for each prompt, read at one token position.

Scores (`LocatorConfig.scoring`), for neuron `k` of a layer whose FFN is `y = W_down · a`, read at one
token position (`LocatorConfig.position`):

- `"activation"`: `|a_k| · ||W_down[:, k]||`, the magnitude of the neuron's contribution `a_k · W_down[:, k]`
  to the FFN output.
- `"integrated_gradients"`: `a_k · (1/m) Σ_{s=1..m} ∂ log p(t | x) / ∂ a_k` evaluated with the layer's
  activation vector at the read position scaled to `((s - ½)/m) · a` (a midpoint Riemann sum from 0 to `a`,
  `m = ig_steps`; other positions and layers run as usual). Summed over a layer's neurons it approximates
  `log p(t | a) − log p(t | a = 0 at the read position)` (completeness). `t` is the first token of the
  target (the label for classifiers). Signed: positive means the neuron raises the target; only positive scores
  are ever selected.

The activations of all searched layers are read in one forward pass (hooks on the down projections, stopped
after the last); integrated gradients then run `ig_steps` scaled copies of each prompt per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..batching import encode_target, eval_mode, left_padded_positions, pad_token_id
from ..data.requests import Target
from ..devices import input_device
from ..tuners.ffn import FFNBlocks, ffn_blocks, neuron_dim
from .config import LocatorConfig


# -- the model's FFNs -------------------------------------------------------------------------------------------
def _column_norms(down: nn.Module) -> torch.Tensor:
    """`||W_down[:, k]||` per neuron, whichever way the weight is stored (`neuron_dim`); a weight that accelerate
    offloaded (`device_map`) is brought in for the reading."""
    from accelerate.utils import align_module_device

    with align_module_device(down):
        return down.weight.detach().float().norm(dim=1 - neuron_dim(down, down=True))


def searched_blocks(model: nn.Module, config: LocatorConfig | None = None) -> FFNBlocks:
    """The FFNs the locator searches: `config.layers` at or above `config.lowest_layer_fraction` of the depth."""
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
    """The layers `score_neurons` scores, in the order of its layer dimension."""
    return searched_blocks(model, config).layers


# -- batches ----------------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised by the last hook: the layers above it need not run."""


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
    """The token integrated gradients scores per text: the target's first token, or the label of a classifier."""
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
    """`log p(target)` per row, at the read position of a causal LM or from a classifier's logits."""
    rows = torch.arange(len(target_ids), device=logits.device)
    if logits.dim() == 3:  # causal LM: the logits at the read position predict the target's first token
        logits = logits[rows, read]
    elif logits.dim() != 2:
        raise ValueError(f"Cannot read target log-probs from logits of shape {tuple(logits.shape)}.")
    return torch.log_softmax(logits.float(), dim=-1)[rows, target_ids]


def _activations(ffns: FFNBlocks, inputs: dict[str, torch.Tensor], read: torch.Tensor) -> dict[int, torch.Tensor]:
    """`a` at the read positions, `{layer: [B, F]}`, all layers in one forward pass (stopped after the last)."""
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
    """IG of log p(target) w.r.t. each layer's activation at the read position, `{layer: [B, F]}`."""
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
    """Scores of every FFN neuron for each prompt: a CPU float32 tensor `[prompts, layers, neurons]`.

    `config.template` is applied to the prompts; the layer dimension follows `locator_layers`.
    `targets` (one per prompt: a string for causal LMs, an int label for classifiers) are needed only for
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
    device = input_device(ffns.model)
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


__all__ = ["locator_layers", "score_neurons", "searched_blocks"]
