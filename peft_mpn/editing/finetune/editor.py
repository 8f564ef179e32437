"""Fine-tuning baselines FT-L and FT-M: train one FFN down-projection on the edit, as EasyEdit does.

Both follow EasyEdit's ``easyeditor/models/ft/ft_main.py`` (the FT-L of Zhu et al. 2020 / ROME's constrained
fine-tuning, and the FT-M of the EasyEdit survey):

- the only trainable tensor is one block's FFN down-projection weight (``mlp.down_proj``, GPT-2's
  ``mlp.c_proj``, BERT's ``output.dense``), trained with Adam;
- after every step the weight is clamped into ``[W₀ - ε, W₀ + ε]`` (an L∞ ball of radius ``norm_constraint``
  around the weight before this edit);
- ``objective="prompt_last"`` (**FT-L**): the model reads the prompt only, and the loss is the mean NLL of
  *every* target token under the distribution at the prompt's last position. For a one-token target that is
  the ordinary NLL; for a longer target it pushes all its tokens into that one next-token distribution, and
  nothing trains the later positions. (EasyEdit also tokenises the target with special tokens, so Llama's
  ``<s>`` joins that bag; here the target is encoded without them.)
- ``objective="target_new"`` (**FT-M**): teacher forcing on ``prompt + " " + target``, loss = mean NLL over the
  target tokens, the prompt masked out.

Where this differs from EasyEdit: it stops as soon as every target token is the argmax under teacher forcing
(or, as EasyEdit does, once the loss is below 0.01), and the weight change lives on the model only until
`FTEditor.reset`, which writes the original weight back bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ...batching import (
    TargetBatch,
    collate_targets,
    decision_logits,
    encode_targets,
    pad_token_id,
    takes_logits_to_keep,
)
from ...data.requests import EditRequest, EditRequestError
from ...devices import check_placed, input_device
from ...tuners.ffn import ffn_blocks, ffn_spec
from ..base import Editor, EditResult
from ..common import check_generation_requests, fixed_languages, frozen
from ..prefix import PrefixCache
from .config import FTEditorConfig

#: EasyEdit's stopping rule: the loss of a step is below this.
_EASYEDIT_LOSS_STOP = 1e-2


class FTEditor(Editor):
    """Fine-tunes one FFN down-projection until the edit holds (FT-L or FT-M, by ``config.objective``).

    The weight is changed in place, so ``editor.model`` is the model passed in (a plain transformers model
    stays one: it saves and scores as usual). Edits accumulate (sequential editing); `reset` restores
    the weight as it was when the editor was built, exactly.

    Args:
        model: a causal LM (or a PeftModel around one; the tuned weight is then the base model's).
        tokenizer: its tokenizer.
        config: the fine-tuning hyper-parameters (default: FT-L's).
        progress: show a progress bar in `edit_stream`.

    Examples:
        ```py
        >>> editor = make_editor("ft-m", model, tokenizer)
        >>> editor.edit(EditRequest.single("The capital of France is", "Lyon"))
        >>> score_targets(editor.model, tokenizer, [("The capital of France is", "Lyon")])
        >>> editor.reset()  # the base model again
        ```
    """

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        config: FTEditorConfig | None = None,
        *,
        progress: bool = True,
    ) -> None:
        check_placed(model)
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or FTEditorConfig()
        self.progress = progress
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        if type(base).__name__.endswith("ForSequenceClassification"):
            raise EditRequestError(
                f"FT-L/FT-M edit causal LMs; {type(base).__name__} is a classifier. Use MPNEditor for classifiers."
            )
        ffns = ffn_blocks(base, [self.config.layer])
        (self.layer_index,) = ffns.layers
        down = ffns.downs[self.layer_index]
        self.module_name = next(name for name, module in base.named_modules() if module is down)
        self.weight: torch.nn.Parameter = down.weight
        self._original = self.weight.detach().clone()
        self._base = base
        self._pad = pad_token_id(tokenizer)
        self._keeps_logits = takes_logits_to_keep(base)

    @classmethod
    def ft_l(cls, model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> FTEditor:
        """FT-L: ``config`` (if given) with ``objective="prompt_last"``."""
        config = kwargs.pop("config", None) or FTEditorConfig()
        return cls(model, tokenizer, FTEditorConfig(**{**config.to_dict(), "objective": "prompt_last"}), **kwargs)

    @classmethod
    def ft_m(cls, model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> FTEditor:
        """FT-M: ``config`` (if given) with ``objective="target_new"``."""
        config = kwargs.pop("config", None) or FTEditorConfig()
        return cls(model, tokenizer, FTEditorConfig(**{**config.to_dict(), "objective": "target_new"}), **kwargs)

    @property
    def weight_delta(self) -> torch.Tensor:
        """How far the tuned weight is from the original (every edit since construction or `reset`)."""
        return self.weight.detach() - self._original

    def reset(self) -> None:
        """Write the original weight back: the model is exactly the one the editor was built on."""
        with torch.no_grad():
            self.weight.copy_(self._original)

    supports_checkpoints = True

    def state_dict(self) -> dict[str, Any]:
        """The tuned weight (every edit so far)."""
        return {"weight": self.weight.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.weight.copy_(state["weight"])

    # -- editing ---------------------------------------------------------------------------------------------
    def edit_batch(self, requests: Sequence[EditRequest]) -> EditResult:
        """Fine-tune on several requests at once (one batch, one constraint ball)."""
        check_generation_requests(requests, "FT-L/FT-M")
        start = time.perf_counter()
        augment = self.config.augment_languages
        rows = [
            (language, request.views[language])
            for request in requests
            for language in [request.edit_language, *self.augmentation_versions(request, augment)]
        ]
        languages = list(dict.fromkeys(language for language, _ in rows))
        pairs = [(view.prompt, view.target) for _, view in rows]
        batch = collate_targets(encode_targets(self.model, self.tokenizer, pairs), self._pad, input_device(self.model))
        with frozen(self.model):
            steps, losses, correct = self._train(batch)
        fixed = fixed_languages(correct, [language for language, _ in rows])
        status = "skipped" if steps == 0 else "edited" if len(fixed) == len(languages) else "unfixed"
        return EditResult(
            [request.case_id for request in requests],
            status,
            steps=steps,
            seconds=time.perf_counter() - start,
            languages=languages,
            fixed_languages=fixed,
            losses=losses,
        )

    def _train(self, batch: TargetBatch) -> tuple[int, dict[str, float], list[bool]]:
        """The update loop; returns (optimizer steps, last losses, per-row correctness after the edit)."""
        config = self.config
        inputs = batch.model_inputs()
        if self._keeps_logits:
            inputs["logits_to_keep"] = batch.window
        # The output layer (262k rows on Gemma 3) runs only where a target token is predicted: the same loss and
        # stopping rule, without the left padding of shorter targets inside the logits window.
        head = self._base.get_output_embeddings() if self._keeps_logits else None
        cache = PrefixCache(
            self.model,
            self.module_name,
            batch.model_inputs(),
            root=self._base,
            enabled=config.prefix_cache,
            positions=batch.decision_positions(),
            attention=ffn_spec(self._base.config).attention,
        )
        rows, slots = batch.decision_slots()
        targets = batch.target_ids[rows, slots]
        before = self.weight.detach().clone()
        self.weight.requires_grad_(True)
        optimizer = torch.optim.Adam([self.weight], lr=config.learning_rate, weight_decay=config.weight_decay)
        steps, losses = 0, {}
        while True:
            with cache.replay():
                if cache.positionwise:  # the short pass: the decision positions only ([B, T, V])
                    logits = self.model(**cache.at_positions(inputs)).logits[rows, slots]
                else:
                    logits = decision_logits(self.model, inputs, batch, head)
            wrong = torch.zeros(len(batch.encodings), dtype=torch.long, device=logits.device).index_add_(
                0, rows, (logits.argmax(-1) != targets).long()
            )
            correct = wrong == 0
            if bool(correct.all()) or steps == config.max_steps:
                break
            loss = self._loss(logits, targets, rows)
            losses = {"edit": loss.item()}
            if loss.item() < _EASYEDIT_LOSS_STOP:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if config.norm_constraint is not None:
                with torch.no_grad():
                    eps = config.norm_constraint
                    self.weight.copy_(torch.clamp(self.weight, before - eps, before + eps))
            if not bool(torch.isfinite(self.weight).all()):  # diverged: the model would answer NaN everywhere
                with torch.no_grad():
                    self.weight.copy_(before)
                return steps, {**losses, "diverged": 1.0}, [False] * len(batch.encodings)
        return steps, losses, correct.tolist()

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """FT-L or FT-M loss, the mean over rows; ``logits`` [N, V] predict ``targets`` [N] of row ``rows`` [N]."""
        tokens = torch.bincount(rows)  # target tokens per row (every row has at least one)

        def mean_over_rows(per_token: torch.Tensor) -> torch.Tensor:  # each row's mean, then their mean
            return (per_token.new_zeros(len(tokens)).index_add(0, rows, per_token) / tokens).mean()

        logits = logits.float()  # a bfloat16 softmax over 262k tokens loses the small probabilities being raised
        if self.config.objective == "target_new":
            return mean_over_rows(F.cross_entropy(logits, targets, reduction="none"))
        # prompt_last: every row's distribution after its prompt (its first target slot), scored on all its tokens
        first_slot = tokens.cumsum(0) - tokens
        log_probs = logits[first_slot].log_softmax(-1)  # [B, V]
        return -mean_over_rows(log_probs[rows, targets])


__all__ = ["FTEditor"]
