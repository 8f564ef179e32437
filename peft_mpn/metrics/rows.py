"""The rows the judge scores: one per (case, language, probe), teacher-forced and (optionally) generated.

[`metric_rows`][peft_mpn.metrics.rows.metric_rows] scores a request's probes on a model;
[`locality_predictions`][peft_mpn.metrics.rows.locality_predictions] and
[`locality_generations`][peft_mpn.metrics.rows.locality_generations] give the unedited model's reference for the
locality probes; [`rows_to_columns`][peft_mpn.metrics.rows.rows_to_columns] turns rows into the arguments of
`compute_cross_lingual_edit`. [`Judge`][peft_mpn.metrics.judge.Judge] is the usual way to call them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ..data.requests import EditRequest
from .edit_metrics import COLUMNS, PROBES
from .generation import GenerationSettings, answer_budget, generate_greedy, read_answer
from .probes import Probe, edit_probes
from .scoring import score_targets

Row = dict[str, Any]


def ordered_languages(languages: Iterable[str], edit_language: str) -> list[str]:
    """`languages` without repeats, the edit language first (and always included)."""
    return [edit_language, *(lang for lang in dict.fromkeys(languages) if lang != edit_language)]


def _views(request: EditRequest, languages: Sequence[str]):
    missing = [lang for lang in languages if lang not in request.views]
    if missing:
        raise ValueError(
            f"Case {request.case_id!r} has no version in {missing} (it has {request.languages}); load the data "
            "with those languages or leave them out of the evaluated languages."
        )
    return [(lang, request.views[lang]) for lang in ordered_languages(languages, request.edit_language)]


def _probe_kinds(probes: Collection[str] | None) -> set[str] | None:
    if probes is None:
        return None
    kinds = {probes} if isinstance(probes, str) else set(probes)
    unknown = sorted(kinds - set(PROBES))
    if unknown:
        raise ValueError(f"Unknown probe kind(s) {unknown}; choose among {list(PROBES)}.")
    if not kinds:
        raise ValueError(f"No probe kind given; name some of {list(PROBES)}, or pass probes=None for all of them.")
    return kinds


def locality_predictions(
    model: Any, tokenizer: Any, request: EditRequest, *, languages: Sequence[str], batch_size: int = 16
) -> dict[str, tuple[int, ...]]:
    """The model's argmax tokens on each language's locality question+answer (the pre-edit reference)."""
    scored = [(lang, v) for lang, v in _views(request, languages) if v.locality_prompt and v.locality_answer]
    scores = score_targets(model, tokenizer, [(v.locality_prompt, v.locality_answer) for _, v in scored], batch_size)
    return {lang: score.predicted for (lang, _), score in zip(scored, scores)}


def locality_generations(
    model: Any,
    tokenizer: Any,
    request: EditRequest,
    *,
    languages: Sequence[str],
    settings: GenerationSettings,
) -> dict[str, tuple[int, ...]]:
    """The model's first `settings.locality_tokens` greedy tokens after each language's locality question
    (decoded `settings.batch_size` rows at a time)."""
    prompts = [(lang, v.locality_prompt) for lang, v in _views(request, languages) if v.locality_prompt]
    generated = generate_greedy(
        model, tokenizer, [prompt for _, prompt in prompts], settings.locality_tokens, batch_size=settings.batch_size
    )
    return {lang: tokens for (lang, _), tokens in zip(prompts, generated)}


def judged_probes(
    request: EditRequest,
    languages: Sequence[str],
    *,
    pre_locality: Mapping[str, Sequence[int]] | None = None,
    probes: Collection[str] | None = None,
) -> list[Probe]:
    """The probes [`metric_rows`][peft_mpn.metrics.judge.metric_rows] scores for `request` in `languages`.

    Those of [`edit_probes`][peft_mpn.metrics.probes.edit_probes], the edit language first, with a `locality`
    probe only where `pre_locality` has that language's reference; with `probes`, only those kinds (e.g.
    `{"locality"}` for cases that were not edited).
    """
    kinds = _probe_kinds(probes)
    return [
        probe
        for probe in edit_probes(request, [lang for lang, _ in _views(request, languages)])
        if (probe.probe != "locality" or (pre_locality is not None and probe.language in pre_locality))
        and (kinds is None or probe.probe in kinds)
    ]


def probe_row(
    request: EditRequest,
    probe: Probe,
    predicted: Sequence[int],
    target: Sequence[int],
    pre_locality: Mapping[str, Sequence[int]] | None = None,
) -> Row:
    """The row of one scored probe: `predicted` (teacher-forced argmax) against `target`'s token ids, or for a
    `locality` probe against `pre_locality[language]` (the unedited model's argmax on the same tokens)."""
    lang = probe.language
    reference = tuple(target)
    if probe.probe == "locality":
        if pre_locality is None or lang not in pre_locality:
            raise ValueError(
                f"Case {request.case_id!r}, {lang!r}: a locality probe needs the unedited model's predictions; "
                "compute pre_locality with locality_predictions (or Judge.reference) first."
            )
        reference = tuple(pre_locality[lang])
    if len(reference) != len(predicted):
        raise ValueError(
            f"Case {request.case_id!r}, {lang!r}: the pre-edit locality reference has {len(reference)} tokens "
            f"but the answer has {len(predicted)}; compute pre_locality with locality_predictions on "
            "the same tokenizer and request."
        )
    return {
        "case_id": str(request.case_id),
        "language": lang,
        "probe": probe.probe,
        "predictions": [int(token) for token in predicted],
        "references": [int(token) for token in reference],
        "copied": probe.copied,
    }


def metric_rows(
    model: Any,
    tokenizer: Any,
    request: EditRequest,
    *,
    languages: Sequence[str],
    pre_locality: Mapping[str, Sequence[int]] | None = None,
    probes: Collection[str] | None = None,
    batch_size: int = 16,
    generation: GenerationSettings | None = None,
    pre_generation: Mapping[str, Sequence[int]] | None = None,
) -> list[Row]:
    """Teacher-forced (and generated) rows of `request` in each of `languages` (the edit language always included).

    Per language: `reliability` (prompt → that language's target), one `generality` row per rephrase,
    `portability` where the case has a follow-up question, `edit_language_answer` (prompt → the edit-language
    target) outside the edit language, and `locality` (argmax on the unrelated question against
    `pre_locality[language]`, from `locality_predictions` on the unedited model) when `pre_locality` is
    given. `copied` says whether the language's target is the edit-language target's string. With `probes`,
    only those kinds are scored.

    With `generation`, each row also gets a `generated` reading (`peft_mpn.metrics.generation`): answer probes
    `{"text", "answer", "exact", "stops", "repeats"}`; locality probes, where `pre_generation` has the unedited model's
    first tokens (from `locality_generations`), `{"text", "reference_text", "unchanged"}`.

    Returns:
        dicts with the keys of `peft_mpn.metrics.edit_metrics.COLUMNS` (+ `generated`); `rows_to_columns` turns
        them into the arguments of `compute_cross_lingual_edit`.
    """
    chosen = judged_probes(request, languages, pre_locality=pre_locality, probes=probes)
    scores = score_targets(model, tokenizer, [(probe.prompt, str(probe.target)) for probe in chosen], batch_size)
    rows = [probe_row(request, probe, s.predicted, s.target, pre_locality) for probe, s in zip(chosen, scores)]
    if generation is not None:
        _add_generation(model, tokenizer, chosen, rows, generation, pre_generation)
    return rows


def _add_generation(
    model: Any,
    tokenizer: Any,
    probes: Sequence[Probe],
    rows: list[Row],
    settings: GenerationSettings,
    pre_generation: Mapping[str, Sequence[int]] | None,
) -> None:
    """Add each row's `generated` reading (answers judged on greedy generation; locality against `pre_generation`).

    Answers and unrelated continuations decode together (`generate_greedy`: each step reads every weight once
    whatever the rows): answers end at their line break or `len(target) + stop_slack` tokens, continuations run
    `locality_tokens`."""
    answers = [i for i, probe in enumerate(probes) if probe.probe != "locality"]
    unrelated = [
        i
        for i, probe in enumerate(probes)
        if probe.probe == "locality" and pre_generation and probe.language in pre_generation
    ]
    budgets = [answer_budget(tokenizer, str(probes[i].target), settings) for i in answers]
    generated = generate_greedy(
        model,
        tokenizer,
        [probes[i].prompt for i in [*answers, *unrelated]],
        budgets + [settings.locality_tokens] * len(unrelated),
        batch_size=settings.batch_size,
        stop_at_line_break=[True] * len(answers) + [False] * len(unrelated),
    )
    for i, tokens in zip(answers, generated):
        reading = read_answer(tokenizer, tokens, str(probes[i].target), stop_slack=settings.stop_slack)
        rows[i]["generated"] = {
            "text": reading.text,
            "answer": reading.answer,
            "exact": reading.exact,
            "stops": reading.stops,
            "repeats": reading.repeats,
        }
    for i, tokens in zip(unrelated, generated[len(answers) :]):
        reference = tuple(pre_generation[probes[i].language])
        rows[i]["generated"] = {
            "text": tokenizer.decode(tokens, skip_special_tokens=True),
            "reference_text": tokenizer.decode(reference, skip_special_tokens=True),
            "unchanged": tuple(tokens) == reference,
        }


def rows_to_columns(rows: Sequence[Mapping[str, Any]], *, generated: bool = False) -> dict[str, list[Any]]:
    """`{column: values}` from row dicts: `compute_cross_lingual_edit(**rows_to_columns(rows), ...)`.

    With `generated`, also the `generated` column (None for rows without a generation reading).
    """
    columns = {column: [row[column] for row in rows] for column in COLUMNS}
    if generated:
        columns["generated"] = [row.get("generated") for row in rows]
    return columns


__all__ = [
    "Row",
    "judged_probes",
    "locality_generations",
    "locality_predictions",
    "metric_rows",
    "ordered_languages",
    "probe_row",
    "rows_to_columns",
]
