"""One call from edited model to metric result: `evaluate_edits`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from peft import PeftModel

from ..data.requests import EditRequest
from .generation import GenerationSettings
from .judge import Judge


def evaluate_edits(
    model: Any,
    tokenizer: Any,
    requests: EditRequest | Iterable[EditRequest],
    *,
    unedited: Any | None = None,
    languages: Sequence[str] | None = None,
    augment_languages: Sequence[str] = (),
    generation: GenerationSettings | None = GenerationSettings(),  # noqa: B008 - frozen, never mutated
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Judge an edited model on its edit requests, as `peft-mpn bench` does, and return the metric's result.

    Every probe of every request (reliability, generality, portability, locality) in every language, teacher
    forced (token accuracy, exact match) and, unless `generation` is None, on greedy generation; locality is
    judged against the model before the edits.

    Args:
        model: the edited model (e.g. `editor.model`).
        tokenizer: its tokenizer.
        requests: the edit requests (one, or several with the same edit language).
        unedited: the model before the edits. Default: `model` with its adapters disabled, which needs a
            `peft.PeftModel` (MPN, LAFN); for an editor that changes weights in place (FT), pass a copy made before
            editing, or use `peft_mpn.metrics.Judge` (its `reference` before editing, `rows` after).
        languages: the languages to judge; None: each request's own.
        augment_languages: the languages the editor trained on besides the edit language, reported as *seen*.
        generation: how greedy generation is read; None for the teacher-forced readings only (faster).
        batch_size: scoring batch size (the numbers do not depend on it).
        progress: progress bars.

    Returns:
        `compute_cross_lingual_edit`'s result: `reliability`, `generality`, `locality`, `portability` in the edit
        language with `_em` (exact match), `_gen` (generated answer exact) and `_stops` beside each, `per_language`,
        `average`, `average_augment` / `average_unseen` and `counts`.

    Examples:
        ```py
        >>> editor.edit(request)
        >>> result = evaluate_edits(editor.model, tokenizer, [request], augment_languages=["de", "fr"])
        >>> result["per_language"]["es"]["reliability_gen"]
        ```
    """
    requests = [requests] if isinstance(requests, EditRequest) else list(requests)
    if not requests:
        raise ValueError("No edit requests given: pass the EditRequests the model was edited with.")
    judge = Judge(
        tokenizer,
        languages=languages,
        augment_languages=augment_languages,
        batch_size=batch_size,
        generation=generation,
    )
    if unedited is not None:
        judge.reference(unedited, requests, progress=progress)
    elif isinstance(model, PeftModel):
        with model.disable_adapter():
            judge.reference(model, requests, progress=progress)
    else:
        raise ValueError(
            f"The model ({type(model).__name__}) is not a PeftModel, so its state before the edits is unknown and "
            "locality cannot be judged: pass unedited=<the model before the edits> (a copy made before editing), or "
            "judge with peft_mpn.metrics.Judge (reference() before editing, rows() after)."
        )
    rows = [row for request in requests for row in judge.rows(model, request)]
    return judge.scores(rows)


__all__ = ["evaluate_edits"]
