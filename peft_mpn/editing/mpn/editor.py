"""The MPN editor: learns patch neurons for edit requests (T-Patcher + cross-lingual sampling)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from peft import PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ...batching import (
    TargetBatch,
    collate_targets,
    encode_targets,
    pad_token_id,
    takes_logits_to_keep,
    window_logits_at_targets,
)
from ...data.requests import EditRequest, EditRequestError
from ...devices import check_placed, input_device
from ...tuners.ffn import ffn_spec
from ...tuners.mpn import MPNConfig, MPNModel, PatchSet
from ..base import Editor, EditResult, unrelated_strings
from ..common import CandidateVocabulary, frozen
from ..prefix import PrefixCache, capture_ffn_inputs
from . import losses
from .after_answer import after_answer_inputs
from .config import MPNEditorConfig
from .history import EditHistory
from .memory import MemoryBank, decision_index, decoder_memory_vectors, encode_texts
from .neighbours import SubjectPool, neighbour_inputs
from .objective import MPNTrainerObjective
from .planning import (
    EditRows,
    PatchPlan,
    PlannedPatch,
    apart_from_anchors,
    correct_tokens,
    held_languages,
    init_patches,
    joined_rows,
    plan_patches,
    sample_rows,
)
from .state import MPNEditorState
from .stopping import StopRule
from .subject_gate import SubjectGates
from .warm_start import warm_start_patches

logger = logging.getLogger(__name__)


class MPNEditor(MPNEditorState, Editor):
    """Learns patch neurons that make edit requests hold, in the edit language and in its parallel versions.

    Args:
        model: a model with an MPN adapter (``get_peft_model(model, MPNConfig(...))``), or a plain transformers
            model, which is then wrapped with ``peft_config`` (default ``MPNConfig()``: the last block's FFN).
        tokenizer: its tokenizer.
        config: the editing hyper-parameters (default: T-Patcher's, with cross-lingual sampling on).
        unrelated_texts: unrelated text for the memory bank (strings or a `datasets.Dataset` with a `text`
            column). Keep them apart from the prompts you judge locality on.
        adapter_name: the adapter to add patches to (default: the active one).
        memory: a memory bank to share (e.g. with another editor on the same model and layer).

    Examples:
        ```py
        >>> editor = MPNEditor(model, tokenizer, unrelated_texts=unrelated_questions)
        >>> editor.edit(EditRequest.single("The capital of France is", "Lyon",
        ...                                parallel={"de": ("Die Hauptstadt von Frankreich ist", "Lyon")}))
        >>> editor.model.save_pretrained("my-edit")
        ```
    """

    uses_unrelated_text = True

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        config: MPNEditorConfig | None = None,
        *,
        unrelated_texts: Iterable[str] | Any | None = None,
        adapter_name: str | None = None,
        peft_config: MPNConfig | None = None,
        memory: MemoryBank | None = None,
        progress: bool = True,
    ) -> None:
        check_placed(model)
        if not isinstance(model, PeftModel):
            model = get_peft_model(model, peft_config or MPNConfig())
        tuner = model.base_model
        if not isinstance(tuner, MPNModel):
            raise TypeError(
                f"The model carries a {type(tuner).__name__} adapter, not MPN; wrap it with "
                "get_peft_model(model, MPNConfig()) or pass the plain model."
            )
        self.model = model
        self.tuner = tuner
        self.tokenizer = tokenizer
        self.config = config or MPNEditorConfig()
        self.progress = progress
        self.adapter_name = tuner.resolve_adapter(adapter_name)
        layers = tuner.patch_layers(self.adapter_name)
        if len(layers) != 1:
            raise ValueError(
                f"The editor patches one FFN, but adapter {self.adapter_name!r} targets {len(layers)} "
                f"({sorted(layers)}). Set layers_to_transform to a single block."
            )
        ((self.layer_name, self.layer),) = layers.items()
        base = model.get_base_model()
        self.is_classifier = type(base).__name__.endswith("ForSequenceClassification")
        self.is_encoder = ffn_spec(base).encoder
        self.memory = memory if memory is not None else MemoryBank(self.config.memory_size, self.config.seed)
        self.subjects = SubjectPool()
        self.history = EditHistory()
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._keeps_logits = takes_logits_to_keep(base)
        self._pad = pad_token_id(tokenizer)
        self.gates = SubjectGates.for_editor(self)
        if unrelated_texts is not None:
            self.add_unrelated_texts(unrelated_texts)

    @classmethod
    def t_patcher(cls, model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, **kwargs: Any):
        """Transformer-Patcher: this editor with cross-lingual augmentation off."""
        config = kwargs.pop("config", None) or MPNEditorConfig()
        config = MPNEditorConfig(**{**config.to_dict(), "augment_languages": []})
        return cls(model, tokenizer, config, **kwargs)

    # -- memory ----------------------------------------------------------------------------------------------
    def add_unrelated_texts(self, texts: Iterable[str] | Any) -> None:
        """Encode unrelated `texts` and add their FFN inputs to the memory bank."""
        texts = unrelated_strings(texts)
        if not texts:
            raise ValueError("No unrelated texts given: pass unrelated, non-empty strings.")
        size = self.config.memory_batch_size
        if not self.is_classifier and not self.is_encoder:
            model, layer, tokenizer = self.model, self.layer, self.tokenizer
            gate = self.gates.gate if self.gates else None
            for vectors, at_gate in decoder_memory_vectors(
                model, layer, tokenizer, texts, size, self._pad, self.progress, gate
            ):
                self.memory.add_unrelated(vectors)
                if at_gate is not None:
                    self.gates.memory.add_unrelated(at_gate)
            return
        for start in tqdm(range(0, len(texts), size), desc="memory bank", disable=not self.progress, leave=False):
            inputs = self._encode_texts(texts[start : start + size])
            with frozen(self.model):
                h = capture_ffn_inputs(self.model, self.layer, inputs)
            self.memory.add_unrelated(self._memory_positions(h, inputs["attention_mask"]))

    def add_unrelated_from_requests(self, requests: Iterable[EditRequest]) -> None:
        """Use the locality prompts of `requests` as unrelated text, and their subjects for neighbour questions."""
        requests = list(requests)
        super().add_unrelated_from_requests(requests)
        self.subjects.add_unrelated(requests)

    def _encode_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return encode_texts(self.model, self.tokenizer, texts, encoder=self.is_encoder)

    def _memory_positions(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.is_classifier:
            return h[torch.arange(len(h), device=h.device), self._decision_index(mask).to(h.device)]
        return h[mask.bool()]

    def _decision_index(self, mask: torch.Tensor) -> torch.Tensor:
        return decision_index(mask, encoder=self.is_encoder)

    def reset(self) -> None:
        """Remove every patch this adapter holds and forget past edits' inputs: back to the base model. The random
        draws start again from the seed, so an edit made after a reset does not depend on the edits before it."""
        self.tuner.clear_patches(self.adapter_name)
        self.memory.clear_edits()
        self.subjects.clear_edits()
        self.history.clear()
        self._generator.manual_seed(self.config.seed)
        if self.gates:
            self.gates.memory.clear_edits()
            self.gates.generator.manual_seed(self.config.seed)

    # -- editing ---------------------------------------------------------------------------------------------
    def _progress_postfix(self) -> dict[str, Any]:
        return {"patches": self.tuner.num_patches(self.adapter_name)}

    def edit_batch(self, requests: Sequence[EditRequest]) -> EditResult:
        """Learn patches for several requests in one run (each request gets its own patches)."""
        if not requests:
            raise EditRequestError("No edit requests given.")
        for request in requests:
            if request.is_generation == self.is_classifier:
                kind = "a label" if self.is_classifier else "a string"
                raise EditRequestError(
                    f"This model is {'a classifier' if self.is_classifier else 'a causal LM'}: "
                    f"targets must be {kind}, got {request.edit.target!r}."
                )
        start = time.perf_counter()
        with frozen(self.model):
            # a later edit of the same fact replaces the earlier one: it trains without the earlier patches
            earlier, replaced = self.history.earlier_versions(list(requests))
            set_aside = self.tuner.drop_patches(earlier, self.adapter_name) if earlier else None
            result = self._train(list(requests))
            if set_aside is not None and result.patches_added == 0 and result.status != "skipped":
                self.tuner.restore_patches(set_aside, self.adapter_name)  # rolled back: the earlier edit stays
            elif set_aside is not None:
                if result.status == "skipped":  # right without the earlier patches: nothing left to record
                    self.history.replace(list(requests), [0] * len(requests))
                result.replaced = replaced
        result.seconds = time.perf_counter() - start
        return result

    def training_languages(self, request: EditRequest) -> list[str]:
        """The languages whose versions of ``request`` an edit trains on (the edit language first)."""
        allowed = self.config.augment_languages
        if allowed == [] or self.config.samples_per_step == 0:
            return [request.edit_language]
        return [request.edit_language, *self.augmentation_versions(request, allowed)]

    def _encode_rows(self, requests: list[EditRequest]) -> tuple[EditRows, Any]:
        rows = EditRows([], [], [])
        prompts, targets = [], []
        for index, request in enumerate(requests):
            for language in self.training_languages(request):
                view = request.views[language]
                rows.request.append(index)
                rows.language.append(language)
                rows.is_edit.append(language == request.edit_language)
                prompts.append(view.prompt)
                targets.append(view.target)
        if self.is_classifier:
            batch = self._encode_texts(prompts)
            batch["labels"] = torch.tensor(targets, dtype=torch.long, device=batch["input_ids"].device)
            return rows, batch
        encodings = encode_targets(self.model, self.tokenizer, list(zip(prompts, targets)))
        return rows, collate_targets(encodings, self._pad, input_device(self.model))

    def _model_inputs(self, batch: Any, rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if isinstance(batch, TargetBatch):
            inputs = batch.model_inputs(rows)
            if self._keeps_logits:
                inputs["logits_to_keep"] = batch.window
            return inputs
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs if rows is None else {k: v[rows] for k, v in inputs.items()}

    def _forward(
        self,
        batch: Any,
        cache: PrefixCache | None,
        rows: torch.Tensor | None,
        vocab: CandidateVocabulary | None = None,
    ) -> torch.Tensor:
        """Logits at the decision points: [B, T, V] for generation (V: ``vocab`` if given), [B, C] for classifiers."""
        inputs = self._model_inputs(batch, rows)
        short = cache is not None and cache.positionwise  # the decision positions only: no window to cut
        with (
            cache.replay(rows) if cache is not None else nullcontext(),
            vocab.restrict(self.model) if vocab is not None else nullcontext(),
        ):
            logits = self.model(**(cache.at_positions(inputs, rows) if short else inputs)).logits
        if isinstance(batch, TargetBatch) and not short:
            return window_logits_at_targets(logits, batch.targets(rows))
        return logits

    def _targets(
        self, batch: Any, rows: torch.Tensor | None, vocab: CandidateVocabulary | None = None
    ) -> torch.Tensor:
        if isinstance(batch, TargetBatch):
            targets = batch.targets(rows)
            return targets if vocab is None else vocab.map(targets)
        return batch["labels"] if rows is None else batch["labels"][rows]

    def _decision_positions(self, batch: Any) -> torch.Tensor:
        """[B, T] positions in the padded batch whose FFN inputs the patches read (-1 for padding)."""
        if isinstance(batch, TargetBatch):
            return batch.decision_positions()
        return self._decision_index(batch["attention_mask"]).unsqueeze(-1)

    def plan_patches(self, requests: Sequence[EditRequest]) -> PatchPlan:
        """Plan and initialise the patches ``requests`` need, without training them (for training elsewhere).

        The same rule as `edit_batch` (``patch_plan``, ``max_patches_per_edit``, ``key_init``, ``amplifier_init``);
        train them against `edit_loss` plus `patch_losses` (e.g. with `peft_mpn.training.EditTrainer`).
        """
        requests = list(requests)
        rows, batch = self._encode_rows(requests)
        with frozen(self.model), torch.no_grad(), self.layer.record_inputs() as recorded:
            correct = correct_tokens(self._forward(batch, None, None), self._targets(batch, None))
        h = recorded[0].float()
        positions, one_label = self._decision_positions(batch), self.is_classifier
        plan, skipped = plan_patches(len(requests), rows, correct, positions, h, self.config, one_label=one_label)
        if not plan:
            d = self.layer.hidden_size
            return PatchPlan([], PatchSet(torch.zeros(0, d), torch.zeros(0), torch.zeros(0, d)), skipped)
        keys, bias, noise, amplifier = init_patches(plan, self.config, self._generator)
        silent = self._edit_silent(requests, rows, batch, h, torch.arange(len(rows.request)))
        return PatchPlan(plan, PatchSet(keys, bias, noise * amplifier), skipped, silent, rows)

    def _train(self, requests: list[EditRequest]) -> EditResult:
        config = self.config
        rows, batch = self._encode_rows(requests)
        positions = self._decision_positions(batch)
        with self.layer.record_inputs() as recorded:
            cache = PrefixCache(
                self.model,
                self.layer_name,
                self._model_inputs(batch, None),
                root=self.tuner.model,
                enabled=config.prefix_cache,
                stop_after=self.layer,
                positions=positions if isinstance(batch, TargetBatch) else None,
                attention=self.layer.spec.attention,
                gate=self.gates.gate if self.gates else None,  # earlier patches open and shut as at inference
                continue_steps=max(config.silent_after_answer - 1, 0) if isinstance(batch, TargetBatch) else 0,
                pad_token_id=self._pad,
            )
        with torch.no_grad():
            full_logits = self._forward(batch, cache, None)
            correct = correct_tokens(full_logits, self._targets(batch, None))
        vocab = None
        if isinstance(batch, TargetBatch) and config.vocab_candidates is not None:
            vocab = CandidateVocabulary(batch.target_ids, full_logits, config.vocab_candidates)
        h = recorded[0].float()  # FFN inputs at the patched layer: fixed while the edit trains
        plan, skipped = plan_patches(len(requests), rows, correct, positions, h, config, one_label=self.is_classifier)
        case_ids = [r.case_id for r in requests]
        languages = list(dict.fromkeys(rows.language))
        if not plan:
            return EditResult(case_ids, "skipped", languages=languages, fixed_languages=languages)

        if self.memory.vectors is None:
            logger.warning("The memory bank is empty: patches are trained without the memory loss (less local).")
        active = sorted({p.request for p in plan})
        trained_rows = torch.tensor([r for r in range(len(rows.request)) if rows.request[r] in active])
        silent = self._edit_silent(requests, rows, batch, h, trained_rows, cache.continued)
        memory = apart_from_anchors(self._silent_vectors(silent), plan)
        keys, bias, noise, amplifier = init_patches(plan, config, self._generator)
        if config.warm_start:  # the start value goes into the noise; a zero amplifier would hold no value
            keys, bias, values = self._warm_start(plan, memory, batch, cache, trained_rows, vocab)
            amplifier = amplifier if config.amplifier_init != 0 else torch.ones_like(amplifier)
            noise = values / amplifier
        params = [keys.requires_grad_(), bias.requires_grad_(), noise.requires_grad_(), amplifier.requires_grad_()]
        optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        memory_weight, rule, step, loss_values = self.memory_weight, StopRule(config, memory is not None), 0, {}
        for step in range(1, config.max_steps + 1):  # noqa: B007 - `step` is reported after the loop
            step_rows = sample_rows(rows, active, config, self._generator)
            logits, targets = self._patched(PatchSet(keys, bias, noise * amplifier), batch, cache, step_rows, vocab)
            edit_loss = self.edit_loss(logits, targets)
            activation_terms, memory_terms, memory_peak = losses.patch_losses(plan, keys, bias, memory, config)
            activation_loss, memory_loss = activation_terms.mean(), memory_terms.mean()
            loss = edit_loss + config.activation_weight * activation_loss + memory_weight * memory_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            loss_values = {
                "edit": edit_loss.item(),
                "activation": activation_loss.item(),
                "memory": memory_loss.item(),
            }

            memory_settled = rule.memory_settled(memory_loss.item(), memory_peak)
            if rule.monitors(step):  # how many trained versions hold, and their mean edit loss
                with torch.no_grad():
                    seen, wanted = self._patched(
                        PatchSet(keys, bias, noise * amplifier), batch, cache, trained_rows, vocab
                    )
                rule.record_progress(
                    step, int(correct_tokens(seen, wanted).all(-1).sum()), self.edit_loss(seen, wanted).item()
                )
            if rule.stalled(step):
                break
            # The full check (every trained version, whole vocabulary) runs only when this step's batch is fixed
            # and the memory has settled: it is the one pass over the full output layer.
            if memory_settled and bool(correct_tokens(logits.detach(), targets).all()):
                with torch.no_grad():
                    check_logits, check_targets = self._patched(
                        PatchSet(keys, bias, noise * amplifier), batch, cache, trained_rows
                    )
                    fixed = correct_tokens(check_logits, check_targets)
                if vocab is not None:
                    vocab.extend(check_logits)
                if bool(fixed.all()):
                    break

        with torch.no_grad():
            final = PatchSet(keys.detach(), bias.detach(), (noise * amplifier).detach())
            if not all(bool(torch.isfinite(t).all()) for t in (final.keys, final.bias, final.values)):
                logger.warning(
                    "Training diverged (non-finite patch values after %d steps; losses %s): no patch was added. "
                    "Lower learning_rate or the loss weights.",
                    step,
                    loss_values,
                )
                return EditResult(case_ids, "unfixed", step, 0, 0.0, languages, [], loss_values)
            correct = correct_tokens(*self._patched(final, batch, cache, None))
        fixed_languages = held_languages(correct, rows, active, languages)
        edit_languages = {requests[i].edit_language for i in active}
        if not config.keep_unfixed and not edit_languages <= set(fixed_languages):
            logger.warning(
                "Edit %s does not hold in its edit language after %d steps: rolled back (no patch added; "
                "keep_unfixed=True keeps such patches).",
                case_ids,
                step,
            )
            return EditResult(case_ids, "unfixed", step, 0, 0.0, languages, fixed_languages, loss_values)
        if self.gates is not None:
            final = self.gates.fit(final, plan, rows, requests, h, positions)
        with torch.no_grad():
            self.tuner.add_patches(self.layer_name, final, self.adapter_name)
        self.history.replace(requests, [sum(p.request == i for p in plan) for i in range(len(requests))])
        if config.add_edits_to_memory:
            self.memory.add_edit(self._edit_memory(batch, h))
        self.subjects.add_edits(requests)  # later edits keep silent on this fact's questions
        status = "edited" if len(fixed_languages) == len(languages) else "unfixed"
        return EditResult(case_ids, status, step, len(plan), 0.0, languages, fixed_languages, loss_values)

    def _patched(
        self, patches: PatchSet, batch: Any, cache: PrefixCache | None, rows: torch.Tensor | None, vocab: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(logits, targets)` of the edit batch's `rows` with `patches` added to the adapter's (see `_forward`)."""
        with self.layer.extra_patches(self.adapter_name, patches):
            logits = self._forward(batch, cache, rows, vocab)
        return logits, self._targets(batch, rows, vocab)

    def _warm_start(
        self,
        plan: list[PlannedPatch],
        silent: torch.Tensor | None,
        batch: Any,
        cache: PrefixCache | None,
        rows: torch.Tensor,
        vocab: CandidateVocabulary | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(keys, bias, values)` in closed form (`warm_start_patches`) on the trained `rows` of the edit batch."""

        def edit_loss_with(keys: torch.Tensor, bias: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, bool]:
            logits, targets = self._patched(PatchSet(keys, bias, values), batch, cache, rows, vocab)
            return self.edit_loss(logits, targets), bool(correct_tokens(logits.detach(), targets).all())

        return warm_start_patches(plan, silent, self.config.memory_margin, edit_loss_with)

    def _neighbours(self, requests: list[EditRequest], rows: EditRows, trained: torch.Tensor) -> torch.Tensor | None:
        """The FFN inputs where neighbour questions (the trained prompts about other subjects) are answered."""
        if self.is_classifier or not self.config.neighbour_negatives:
            return None
        views = [(requests[rows.request[r]].views[rows.language[r]], rows.language[r]) for r in trained.tolist()]
        return neighbour_inputs(self, views)

    def _edit_silent(
        self, requests: list, rows: EditRows, batch: Any, h: torch.Tensor, trained: torch.Tensor, continued: Any = None
    ) -> torch.Tensor | None:
        """This edit's own FFN inputs where its patches must stay silent: after each trained answer (`continued`:
        `PrefixCache.continued`, if any), and on the neighbour questions of each trained version (None: none)."""
        after = None
        if isinstance(batch, TargetBatch):
            steps = self.config.silent_after_answer
            after = after_answer_inputs(self.model, self.layer, batch, h, trained, steps, self._pad, continued)
        parts = [after, self._neighbours(requests, rows, trained)]
        return joined_rows(parts)

    def _silent_vectors(self, extra: torch.Tensor | None) -> torch.Tensor | None:
        """Where the patches must stay silent: the memory bank, plus `extra` (from `_edit_silent`)."""
        return joined_rows([self.memory.vectors, extra])

    def _edit_memory(self, batch: Any, h: torch.Tensor) -> torch.Tensor:
        mask = batch.attention_mask if isinstance(batch, TargetBatch) else batch["attention_mask"]
        return self._memory_positions(h, mask)

    @property
    def memory_weight(self) -> float:
        """The memory loss weight c_m (``config.memory_weight``, or T-Patcher's default for the model kind)."""
        if self.config.memory_weight is not None:
            return self.config.memory_weight
        return 5.0 if self.is_classifier else 10.0

    def edit_loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The edit loss (label-smoothed NLL, or NLL minus entropy for classifiers); see `losses.edit_loss`."""
        return losses.edit_loss(logits, targets, self.config, reduction)

    def patch_losses(
        self,
        patches: Sequence[PlannedPatch],
        keys: torch.Tensor,
        bias: torch.Tensor,
        silent: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """T-Patcher's activation and memory losses of each patch ([P] each) against this editor's memory bank,
        plus `silent` (more FFN inputs where the patches must stay silent, e.g. `PatchPlan.silent`)."""
        return losses.patch_losses(patches, keys, bias, self._silent_vectors(silent), self.config)

    def trainer_objective(self, requests: Sequence[EditRequest]) -> MPNTrainerObjective:
        """Plan and add patches for `requests`; `EditTrainer` then trains them with T-Patcher's losses."""
        return MPNTrainerObjective(self, requests)
