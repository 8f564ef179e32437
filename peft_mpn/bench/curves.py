"""Lifelong curves: a sequential run measured every so many edits, while it goes on.

After every `CurveSettings.every` edits (and after the last), every edit made so far is read in its edit
language (teacher-forced exact match, one row each: `retention_all`), and a seeded sample of them is
judged on the model as it is then, with the same `Judge` as the final result: retention of earlier edits per
language (seen / unseen, translated / copied, exact match beside token accuracy, generated beside teacher-forced),
generality, and locality on the sampled cases' own unrelated prompts, which no memory bank holds (editors keep
the *other* cases' prompts). Beside it: seconds per edit over the window, the memory bank's size, the adapter's
size, and the edited model's tokens per second against the base model's (adapters disabled).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..batching import takes_logits_to_keep
from ..data import EditRequest
from ..devices import input_device
from ..editing.base import Editor
from ..metrics.judge import Judge
from ..metrics.scoring import score_targets
from ..tuners.ffn import base_model
from .checkpoint import every_nth


@dataclass(frozen=True)
class CurveSettings:
    """When and how much a sequential run is measured on its way.

    Args:
        every: measure after every this many edits (and after the last one).
        sample: edited cases judged per point, a seeded sample of those edited so far (all of them when fewer).
        speed_batch: ``(rows, tokens)`` of the forward pass timed for tokens per second.
        speed_repeats: timed repeats per model (the median is kept).
    """

    every: int = 100
    sample: int = 50
    speed_batch: tuple[int, int] = (8, 32)
    speed_repeats: int = 5

    def __post_init__(self) -> None:
        if self.every < 1 or self.sample < 1:
            raise ValueError(
                f"Curve points need every >= 1 and sample >= 1, got every={self.every}, sample={self.sample}."
            )

    def due(self, done: int, total: int) -> bool:
        return every_nth(done, total, self.every)


def curve_point(
    editor: Editor,
    judge: Judge,
    edited: Sequence[EditRequest],
    records: Sequence[Mapping[str, Any]],
    settings: CurveSettings,
    seed: int,
    judged: Collection[str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One point of the curves after ``len(edited)`` edits (``records``: the bench's per-edit records so far), and
    the judge's rows it was computed from (in editing order).

    The cases judged are `ranked_sample`'s: a uniform sample of those edited so far that mostly repeats from one
    point to the next (a retention curve follows the same facts, and their unedited judgements are made once);
    `judged` limits them to those case ids (the run's judged sample, `run_benchmark(judge_sample=...)`).
    """
    candidates = edited if judged is None else [r for r in edited if str(r.case_id) in judged]
    sample = ranked_sample(candidates, settings.sample, seed)
    rows = [row for request in sample for row in judge.rows(editor.model, request)]
    scores = judge.scores(rows) if rows else {"per_language": {}, "counts": {}}  # no sampled case edited yet
    window = [record["seconds"] for record in records[-settings.every :]]
    memory = getattr(editor, "memory", None)
    point = {
        "edits": len(edited),
        "retention_all": retention_of_every_edit(editor.model, judge.tokenizer, edited, judge.batch_size),
        "judged_cases": [str(request.case_id) for request in sample],
        "metrics": {key: value for key, value in scores.items() if key not in ("per_language", "counts", "per_case")},
        "per_language": scores["per_language"],
        "counts": scores["counts"],
        "seconds_per_edit_median": statistics.median(window) if window else None,
        "seconds_per_edit_mean": statistics.fmean(window) if window else None,
        "fixed_rate": statistics.fmean(bool(r["success"]) for r in records[-settings.every :]) if records else None,
        "memory_size": len(memory) if memory is not None and hasattr(memory, "__len__") else None,
        "adapter_bytes": adapter_bytes(editor.model),
        "tokens_per_second": tokens_per_second(editor.model, settings),
    }
    return point, rows


def retention_of_every_edit(model: Any, tokenizer: Any, edited: Sequence[EditRequest], batch_size: int) -> float:
    """The share of `edited` whose edit-language target is still the teacher-forced argmax at every token: one
    row per edit, so a curve point reads every earlier edit, not only the judged sample."""
    pairs = [(request.edit.prompt, request.edit.target) for request in edited]
    scores = score_targets(model, tokenizer, pairs, batch_size=batch_size)
    return statistics.fmean(score.exact for score in scores)


def case_rank(case_id: Any, seed: int) -> float:
    """A case's seeded place in the judging order, in [0, 1): the same whatever else is in the run."""
    return random.Random(f"{seed}/{case_id}").random()


def ranked_sample(requests: Sequence[EditRequest], size: int, seed: int) -> list[EditRequest]:
    """The `size` requests of lowest `case_rank` (all when fewer), in their given order.

    A uniform sample of `requests`; for a longer list that extends this one, the sample keeps every case of this
    one that still ranks among the lowest `size`.
    """
    ranked = sorted(range(len(requests)), key=lambda i: case_rank(requests[i].case_id, seed))
    return [requests[i] for i in sorted(ranked[:size])]


def adapter_bytes(model: Any) -> int | None:
    """Bytes of the active adapter's saved weights (None for a model without a PEFT adapter)."""
    if not hasattr(model, "peft_config"):
        return None
    from peft import get_peft_model_state_dict

    return sum(t.numel() * t.element_size() for t in get_peft_model_state_dict(model).values())


def tokens_per_second(model: Any, settings: CurveSettings) -> dict[str, float | None]:
    """Forward-pass tokens per second of ``model`` as edited and, for a PEFT model, with its adapters disabled."""
    rows, length = settings.speed_batch
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 1000) or 1000)
    input_ids = torch.randint(0, min(vocab, 1000), (rows, length), generator=torch.Generator().manual_seed(0))
    input_ids = input_ids.to(input_device(model))

    kwargs = {"logits_to_keep": 1} if takes_logits_to_keep(base_model(model)) else {}

    def once() -> float:
        start = time.perf_counter()
        model(input_ids=input_ids, **kwargs)
        return time.perf_counter() - start

    # the two models alternate, so that load on a shared machine hits both alike
    edited_times: list[float] = []
    base_times: list[float] = []
    with torch.no_grad():
        for repeat in range(settings.speed_repeats + 1):  # the first round warms up
            edited_time = once()
            base_time = None
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    base_time = once()
            if repeat:
                edited_times.append(edited_time)
                if base_time is not None:
                    base_times.append(base_time)
    tokens = rows * length
    edited = tokens / statistics.median(edited_times)
    base = tokens / statistics.median(base_times) if base_times else None
    return {"edited": edited, "base": base, "ratio": None if base is None else edited / base}
