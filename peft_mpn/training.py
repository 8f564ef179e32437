"""Editing with 🤗 Trainer: many facts at once, with the editors' own objectives inside the HF training loop.

`EditTrainer` takes an editor with a Trainer objective (`MPNEditor`, including T-Patcher, or `LAFNEditor`) and a
`datasets.Dataset` of edit cases (`peft_mpn.data.requests_to_dataset`). The editor's `trainer_objective` grows the
adapter for those cases the way the editor would (MPN: `MPNEditor.plan_patches`, one patch per wrong target token;
LAFN: located neurons added with zero deltas); `transformers.Trainer` then optimises that objective (MPN's
T-Patcher losses; LAFN's edit NLL + KL locality + norm penalty) on the adapter only, with everything
`TrainingArguments` offers: gradient accumulation, logging, evaluation with the `cross_lingual_edit` metric,
checkpoints and `resume_from_checkpoint`.

Examples:
    ```py
    >>> editor = MPNEditor(model, tokenizer, unrelated_texts=unrelated_questions)
    >>> trainer = EditTrainer(editor, TrainingArguments("out", learning_rate=0.05, max_steps=200),
    ...                       train_dataset=requests_to_dataset(requests), eval_dataset=requests_to_dataset(requests))
    >>> trainer.train()
    >>> trainer.evaluate()["eval_per_language"]["de"]["reliability"]
    >>> trainer.model.save_pretrained("my-edits")
    ```
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import EvalPrediction, PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .batching import (
    collate_targets,
    encode_target,
    eval_mode,
    pad_token_id,
    takes_logits_to_keep,
    window_logits_at_targets,
)
from .data import EditRequest, dataset_to_requests
from .editing import Editor, TrainerObjective
from .metrics import Judge, Probe, edit_probes

EDIT_INDEX = "edit_index"
"""Column `EditTrainer` adds to the training set: each case's position, which keys its patches."""

_CASE_COLUMNS = ("case_id", "edit_language", "views")
_PROBE_COLUMNS = ("prompt", "target")


def probe_rows(requests: Sequence[EditRequest]) -> list[dict[str, Any]]:
    """The `cross_lingual_edit` probes of `requests` as (prompt, target) rows with their metadata.

    Per case and language: `reliability` (the prompt), `generality` (each rephrase), `locality`, `portability`
    and, outside the edit language, `edit_language_answer` (the prompt against the edit-language target),
    wherever the view has the fields ([`edit_probes`][peft_mpn.metrics.edit_probes]). A case without a
    `case_id` is named by its position. Locality rows are judged against the pre-edit predictions, which the
    caller fills in; `EditTrainer` takes its probes and locality reference from
    [`Judge`][peft_mpn.metrics.judge.Judge] instead.
    """
    return [
        {"case_id": case, "language": language, "probe": probe, "prompt": prompt, "target": target, "copied": copied}
        for index, request in enumerate(requests)
        for case in [request.case_id if request.case_id is not None else str(index)]
        for language, probe, prompt, target, copied in edit_probes(request)
    ]


class EditDataCollator:
    """Teacher-forced, left-padded batches with `labels` only on target tokens (`-100` elsewhere).

    Rows of an edit-case dataset ([`requests_to_dataset`][peft_mpn.data.requests_to_dataset]) become one sequence
    per trained version of each case (`languages(request)`: the edit language and its parallel versions; with
    `rephrases`, each rephrase too), tagged with the case's `edit_index`. Rows with `prompt`/`target` (the
    probes an evaluation scores) become one sequence each.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        languages: Callable[[EditRequest], Sequence[str]] | None = None,
        rephrases: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.languages = languages or (lambda request: request.languages)
        self.rephrases = rephrases
        self.pad = pad_token_id(tokenizer)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        pairs, cases = [], []
        for row in rows:
            if "views" in row:
                request = EditRequest.from_dict(row)
                if not request.is_generation:
                    raise ValueError("EditTrainer edits causal LMs: targets must be strings, not labels.")
                for language in self.languages(request):
                    view = request.views[language]
                    for prompt in (view.prompt, *(view.rephrases if self.rephrases else ())):
                        pairs.append((prompt, view.target))
                        cases.append(row.get(EDIT_INDEX, -1))
            elif "prompt" in row and "target" in row:
                pairs.append((row["prompt"], row["target"]))
            else:
                raise ValueError(
                    f"Cannot read an edit case from a row with columns {sorted(row)}: give rows of "
                    "peft_mpn.data.requests_to_dataset (case_id, edit_language, views), or prompt/target rows."
                )
        batch = collate_targets([encode_target(self.tokenizer, p, t) for p, t in pairs], self.pad)
        labels = torch.full_like(batch.input_ids, -100)
        labels[:, -batch.target_ids.shape[1] :] = batch.target_ids
        out = {**batch.model_inputs(), "labels": labels}
        if cases:
            out[EDIT_INDEX] = torch.tensor(cases, dtype=torch.long)
        return out


class EditTrainer(Trainer):
    """A `transformers.Trainer` that edits many facts at once with an editor's Trainer objective (MPN or LAFN).

    At construction the adapter is grown for every case of `train_dataset` (so a fresh trainer on the same
    unedited model and data has the same adapter shape, which is what `resume_from_checkpoint` needs); then
    [`train`][peft_mpn.training.EditTrainer.train] optimises only those new patches / neurons (earlier edits and
    the base model stay frozen). The loss is a sum over target tokens normalised by `num_items_in_batch` (the
    target tokens of the accumulated batch), so gradient accumulation gives the gradient of the whole batch
    (`loss_is_scaled_for_ga`); the regularisers are weighted by each batch's share of those tokens.

    Evaluation is the judge's ([`Judge`][peft_mpn.metrics.judge.Judge]): its probes are the evaluation set, its
    locality reference is the model with the adapter off, and its `scores` are the metrics; the Trainer's loop
    only produces the teacher-forced predictions.

    Args:
        editor: an editor with a Trainer objective, `MPNEditor` or `LAFNEditor` (its model, tokenizer, loss
            weights, unrelated texts and training languages are used).
        args: the `TrainingArguments`. The editors' learning rates are far above fine-tuning's (MPN values
            are trained directly here, so use ~0.05; LAFN ~0.02); keep `weight_decay=0` with earlier edits
            in the adapter (decay would shrink their frozen rows).
        train_dataset: edit cases (rows of [`requests_to_dataset`][peft_mpn.data.requests_to_dataset]).
        eval_dataset: edit cases to judge with the `cross_lingual_edit` metric in every language they carry
            (locality is agreement with the base model, adapter off).
        compute_metrics: default: the judge's `cross_lingual_edit` scores (headline numbers, `per_language`,
            `average_cross_lingual` ...); a function of `EvalPrediction` (token-level argmax `predictions`
            and `label_ids`, one row per scored prompt) replaces it.
        **kwargs: passed to `transformers.Trainer` (`callbacks`, `optimizers`, ...).
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        editor: Editor,
        args: TrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        *,
        data_collator: Callable | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(getattr(editor, "trainer_objective", None)):
            raise TypeError(
                f"EditTrainer needs an editor with a Trainer objective (MPNEditor or LAFNEditor), got "
                f"{type(editor).__name__}."
            )
        self.editor = editor
        self.objective: TrainerObjective | None = None
        self.augment_languages: list[str] = []
        if train_dataset is not None:
            train_dataset = train_dataset.add_column(EDIT_INDEX, list(range(len(train_dataset))))
            requests = dataset_to_requests(train_dataset)
            self.objective = editor.trainer_objective(requests)
            self.augment_languages = list(
                dict.fromkeys(
                    lang for r in requests for lang in editor.training_languages(r) if lang != r.edit_language
                )
            )
        if not isinstance(editor.model, PeftModel):
            raise ValueError("The editor's model has no adapter yet; give a train_dataset to create it.")
        self.judge: Judge | None = None
        self._probes: list[tuple[EditRequest, Probe]] = []
        if eval_dataset is not None:  # after the objective: the judge knows the trained languages
            eval_dataset = self._probe_dataset(eval_dataset)
        self._keeps_logits = takes_logits_to_keep(editor.model.get_base_model())
        collator = data_collator or EditDataCollator(
            editor.tokenizer,
            editor.training_languages,
            rephrases=self.objective is not None and self.objective.rephrases,
        )
        super().__init__(
            model=editor.model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=editor.tokenizer,
            compute_metrics=compute_metrics or self.cross_lingual_edit_metrics,
            **kwargs,
        )

    # -- data ------------------------------------------------------------------------------------------------
    def _set_signature_columns_if_needed(self) -> None:
        # The collator reads the edit-case columns itself; the model's forward signature does not name them.
        if self._signature_columns is None:
            self._signature_columns = [*_CASE_COLUMNS, EDIT_INDEX, *_PROBE_COLUMNS]

    def _probe_dataset(self, dataset: Any):
        """Edit cases -> one row per probe the judge scores; the judge keeps the base model's locality answers."""
        from datasets import Dataset

        if isinstance(dataset, dict):
            raise ValueError("EditTrainer evaluates one dataset of edit cases; pass a Dataset, not a dict.")
        requests = [
            request if request.case_id is not None else replace(request, case_id=str(index))
            for index, request in enumerate(dataset_to_requests(dataset))
        ]
        edit_languages = {r.edit_language for r in requests}
        if len(edit_languages) != 1:
            raise ValueError(f"The eval cases mix edit languages {sorted(edit_languages)}; evaluate each separately.")
        judge = Judge(self.editor.tokenizer, augment_languages=self.augment_languages)
        model = self.editor.model
        with model.disable_adapter() if isinstance(model, PeftModel) else nullcontext():
            judge.reference_locality(model, requests)
        self.judge = judge
        self._probes = [(request, probe) for request in requests for probe in judge.probes(request)]
        return Dataset.from_list([{"prompt": probe.prompt, "target": str(probe.target)} for _, probe in self._probes])

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ):
        """As `transformers.Trainer.evaluate`; `eval_dataset` (edit cases) replaces the one given before."""
        if eval_dataset is not None:
            eval_dataset = self._probe_dataset(eval_dataset)
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    # -- loss ------------------------------------------------------------------------------------------------
    def _target_logits(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]):
        """Logits predicting each target column ([B, T, V]) and the targets ([B, T]), in eval mode (no dropout)."""
        labels = inputs["labels"]
        first = int((labels != -100).any(0).float().argmax())
        targets = labels[:, first:]
        forward = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
        if self._keeps_logits:
            forward["logits_to_keep"] = targets.shape[1] + 1
        with eval_mode(model):
            logits = model(**forward).logits
        return window_logits_at_targets(logits, targets), targets

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The editor's objective on this batch, summed over target tokens and divided by `num_items_in_batch`."""
        if self.objective is None:
            raise ValueError("This EditTrainer has no train_dataset: nothing to edit.")
        logits, targets = self._target_logits(model, inputs)
        if num_items_in_batch is None:  # the model takes no loss kwargs: this batch's tokens, times the GA steps
            num_items_in_batch = (targets != -100).sum() * self.current_gradient_accumulation_steps
        edit = self.objective.edit_loss(logits, targets)
        regularizer, parts = self.objective.regularizer(targets, inputs[EDIT_INDEX])
        loss = (edit + regularizer) / num_items_in_batch
        return (loss, {"logits": logits, **parts}) if return_outputs else loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """Teacher-forced argmax at each target token ([B, T]) and the targets ([B, T], -100 on padding)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            logits, targets = self._target_logits(model, inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        if prediction_loss_only:
            return loss.detach(), None, None
        predictions = logits.argmax(-1).masked_fill(targets == -100, -100)
        return loss.detach(), predictions, targets

    def cross_lingual_edit_metrics(self, prediction: EvalPrediction) -> dict[str, Any]:
        """The judge's `cross_lingual_edit` scores of an evaluation (the default `compute_metrics`).

        The loop's teacher-forced predictions, one per probe of
        [`Judge.probes`][peft_mpn.metrics.judge.Judge.probes], become the judge's rows
        ([`Judge.row`][peft_mpn.metrics.judge.Judge.row]); the numbers are
        [`Judge.scores`][peft_mpn.metrics.judge.Judge.scores].
        """
        if self.judge is None:
            raise ValueError(
                "Nothing to judge: give EditTrainer an eval_dataset of edit cases (or pass one to evaluate)."
            )
        predicted, targets = prediction.predictions, prediction.label_ids
        if len(predicted) != len(self._probes):
            raise ValueError(f"{len(predicted)} predictions for {len(self._probes)} scored prompts.")
        rows = []
        for (request, probe), pred, target in zip(self._probes, predicted, targets):
            mask = target != -100
            rows.append(self.judge.row(request, probe, pred[mask].tolist(), target[mask].tolist()))
        scores = self.judge.scores(rows)
        keep = ("per_language", "average", "average_cross_lingual", "average_augment", "average_unseen")
        return {k: v for k, v in scores.items() if k in keep or isinstance(v, float) or k == "num_cases"}

    # -- training --------------------------------------------------------------------------------------------
    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Trainer's optimizer; tensors the objective scales (MPN values) get their own group and learning rate,
        and each step ends with the objective's `after_step` (LAFN's preservation projection)."""
        given = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        if self.objective is None:
            return optimizer
        if not getattr(optimizer, "_peft_mpn_after_step", False):  # the objective's constraint, once per optimizer
            objective = self.objective
            optimizer.register_step_post_hook(lambda *_: objective.after_step())
            optimizer._peft_mpn_after_step = True
        if given:
            return optimizer
        for param, scale in self.objective.learning_rate_scales().items():
            for group in optimizer.param_groups:
                if any(p is param for p in group["params"]):
                    group["params"] = [p for p in group["params"] if p is not param]
                    optimizer.add_param_group({**group, "params": [param], "lr": group["lr"] * scale})
                    break
        optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
        return optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """As `transformers.Trainer.train`, training only this edit's patches / neurons."""
        if self.objective is None:
            raise ValueError("This EditTrainer has no train_dataset: nothing to edit.")
        if self.args.weight_decay and self.objective.keeps_earlier_edits:
            raise ValueError(
                f"weight_decay={self.args.weight_decay} would shrink the earlier edits this adapter holds (their "
                "rows get no gradient but are decayed); set weight_decay=0 in the TrainingArguments."
            )
        if resume_from_checkpoint:
            self._check_checkpoint(resume_from_checkpoint)
        with ExitStack() as stack:
            trainable = stack.enter_context(self.objective.trainable())
            ids = {id(p) for p in trainable}
            for param in self.model.parameters():
                if id(param) not in ids:
                    param.requires_grad_(False)
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self.objective.finish()
        return output

    def _check_checkpoint(self, checkpoint: str | bool) -> None:
        """Refuse a checkpoint whose adapter has another shape than the one grown for this training set."""
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                raise ValueError(f"No checkpoint found in {self.args.output_dir!r} to resume from.")
        path = os.path.join(checkpoint, "adapter_config.json")
        if not os.path.isfile(path):
            return  # Trainer reports a missing checkpoint itself
        with open(path) as handle:
            saved = json.load(handle)
        expected = self.objective.adapter_size()
        found = self.objective.adapter_size(saved)
        if found != expected:
            raise ValueError(
                f"The checkpoint {checkpoint!r} holds an adapter of shape {found}, but this trainer grew {expected} "
                "for its training set. Resume with the same unedited model, editor settings and train_dataset."
            )


__all__ = ["EDIT_INDEX", "EditDataCollator", "EditTrainer", "probe_rows"]
