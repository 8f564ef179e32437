"""Cross-lingual edit scores from teacher-forced predictions.

`compute_cross_lingual_edit` is the logic of the ``evaluate`` metric module
``peft_mpn/metrics/cross_lingual_edit`` (path: `peft_mpn.metrics.CROSS_LINGUAL_EDIT`); the module is a
thin wrapper that declares the input ``Features`` and calls this function, so the package can compute the
same numbers without ``evaluate`` copying scripts into the HF cache. Only the standard library is used.

Input: one row per (case, language, probe) -- six equally long columns:

* ``case_id`` (str): the edit case.
* ``language`` (str): the language of the prompt that was scored.
* ``probe`` (str): one of `PROBES`:

  - ``reliability``: the edit prompt in ``language`` against the target written in ``language`` (in the edit
    language: reliability proper; elsewhere: cross-lingual generalization on the prompt);
  - ``generality``: a rephrase of the prompt in ``language`` against the same target (several rephrases of a
    case give several rows, averaged within the case);
  - ``locality``: an unrelated prompt; ``predictions`` are the post-edit argmax tokens and ``references`` the
    *pre-edit* argmax tokens at the same positions (agreement, not accuracy against the locality answer);
  - ``portability``: the follow-up question against its answer;
  - ``edit_language_answer``: the prompt in ``language`` against the *edit-language* target (the fact
    transferred but answered in the edit language); not allowed in the edit language itself.

* ``predictions`` / ``references`` (list of int): argmax token ids and target token ids under teacher
  forcing, one per target token (equal, non-zero lengths) -- ``TargetScore.predicted`` / ``.target``.
* ``copied`` (bool): whether the target written in ``language`` is the same string as the edit-language
  target. Read on ``reliability`` and ``generality`` rows outside the edit language (it must agree between
  them for a case and language); ignored on the other probes and in the edit language, whose
  ``reliability_translated``/``reliability_copied``/``reliability_edit_language_answer`` are ``None``: the
  split and the third reading describe transfer to the other languages.

Optionally, a seventh column ``generated`` reads the same rows on greedy generation (see
`peft_mpn.metrics.generation`): per row a mapping with ``exact`` and ``stops`` (answer probes: the generated
answer equals the target after normalisation; it ends on its own in time) or ``unchanged`` (``locality``: the
first generated tokens of the unrelated prompt are those of the unedited model), or ``None`` where the row was not
generated. They become ``{measure}_gen`` (generated exact match; for locality, unchanged generation) and
``{measure}_stops`` (answers that stop; ``None`` for locality) beside the teacher-forced readings.

Pre-edit ("before") numbers come from a second call with the unedited model's predictions; leave the
locality rows out of it (they would compare the model with itself), so its ``locality`` is ``None``.

Each row scores its token accuracy (mean over target tokens) and exact match (every token right); rows of
the same case, language and probe are averaged, then cases are averaged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PROBES = ("reliability", "generality", "locality", "portability", "edit_language_answer")
"""The probe kinds a row can hold."""

COLUMNS = ("case_id", "language", "probe", "predictions", "references", "copied")
"""The input columns, one row per (case, language, probe)."""

MEASURES = (
    "reliability",
    "generality",
    "locality",
    "portability",
    "reliability_translated",
    "reliability_copied",
    "reliability_edit_language_answer",
)
"""Per-language measures; each is reported as token accuracy (``name``) and exact match (``name + "_em"``) under
teacher forcing, and on generation as ``name + "_gen"`` and ``name + "_stops"``."""

READINGS = ("", "_em", "_gen", "_stops")
"""The suffixes of each measure's readings: token accuracy, exact match (teacher-forced), generated exact match
(locality: unchanged generation), generated answers that stop."""

_HEADLINE = ("reliability", "generality", "locality", "portability")

Score = tuple[float | None, ...]  # one value per reading of `READINGS` (None: not read)


def compute_cross_lingual_edit(
    predictions: Sequence[Sequence[int]],
    references: Sequence[Sequence[int]],
    *,
    case_id: Sequence[Any],
    language: Sequence[str],
    probe: Sequence[str],
    copied: Sequence[bool],
    edit_language: str = "en",
    augment_languages: Iterable[str] = (),
    languages: Iterable[str] | None = None,
    generated: Sequence[Mapping[str, Any] | None] | None = None,
    machine_translated_languages: Iterable[str] = (),
) -> dict[str, Any]:
    """Reliability, generality, locality and portability of an edit, per language and averaged.

    Args:
        predictions: per row, the argmax token ids under teacher forcing (see the module docstring for the rows).
        references: per row, the target token ids (for ``locality`` rows: the pre-edit argmax tokens).
        case_id: per row, the edit case.
        language: per row, the language of the scored prompt.
        probe: per row, one of `PROBES`.
        copied: per row, whether ``language``'s target is the same string as the edit-language target.
        edit_language: the language the edit was made in.
        augment_languages: languages whose parallel versions were used while editing (MPN's augmentation);
            the other non-edit languages are "unseen".
        languages: the languages the rows must cover (default: those present); a language named here with no
            row, or a row in a language not named, is an error -- it catches a language silently dropped.
        generated: per row, its generation reading (``exact``/``stops``, or ``unchanged`` for locality) or None;
            see the module docstring. Without it the ``_gen``/``_stops`` readings are None.
        machine_translated_languages: languages the editor trained on versions a translator wrote
            (`peft_mpn.data.translation`), not a person: their own group, neither "seen" nor "unseen".

    Returns:
        ``reliability``, ``generality``, ``locality``, ``portability`` (+ ``_em``): the edit language's scores;
        ``per_language``: ``{language: {measure: value}}`` for every measure in `MEASURES` and its
        ``_em``, ``_gen`` and ``_stops`` twins (``None`` where a language has no case for it or was not
        generated); ``average`` (all languages),
        ``average_cross_lingual`` (all but the edit language), ``average_augment``, ``average_unseen``,
        ``average_machine_translated`` (only with such languages):
        the per-language values averaged over those languages (a language without a value is skipped);
        ``counts``: ``{language: {measure: number of cases}}``;
        ``per_case``: ``{case: {language: {probe: [token, exact, generated, stops]}}}`` (token accuracy and
        exact match; the last two with ``generated``), the case scores every per-language value averages (rows
        of a case, language and probe averaged), with ``"copied"`` outside the edit language, for comparing two
        edits case by case; ``edit_language``, ``augment_languages``, ``machine_translated_languages`` (only
        with such languages),
        ``unseen_languages``, ``num_cases``. Every score is a fraction in [0, 1] or ``None``.

    Raises:
        ValueError: columns of different lengths, no rows, an unknown probe, a row whose predictions and
            references differ in length or are empty, a language missing (the edit language, an
            augmentation language, or one of ``languages``), an ``edit_language_answer`` row in the edit
            language, or ``copied`` flags that contradict each other for a case and language.
    """
    columns = {
        "predictions": predictions,
        "references": references,
        "case_id": case_id,
        "language": language,
        "probe": probe,
        "copied": copied,
    }
    if generated is not None:
        columns["generated"] = generated
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"Every column needs one entry per row, got lengths {lengths}; give one "
            "(case_id, language, probe, predictions, references, copied) per scored prompt."
        )
    if not lengths["predictions"]:
        raise ValueError("No rows to score: give at least one (case_id, language, probe, ...) row.")

    # (language, probe, case) -> row scores; (case, language) -> copied flag (from reliability/generality rows)
    rows: dict[tuple[str, str, str], list[Score]] = {}
    flags: dict[tuple[str, str], bool] = {}
    seen_languages: list[str] = []
    readings = generated if generated is not None else [None] * len(predictions)
    for i, (pred, ref, case, lang, kind, same, reading) in enumerate(
        zip(predictions, references, case_id, language, probe, copied, readings)
    ):
        case = str(case)
        where = f"Row {i} (case {case!r}, language {lang!r}, probe {kind!r})"
        if kind not in PROBES:
            raise ValueError(f"{where}: unknown probe {kind!r}; use one of {list(PROBES)}.")
        if not isinstance(lang, str) or not lang:
            raise ValueError(f"{where}: the language must be a non-empty string.")
        pred, ref = [int(t) for t in pred], [int(t) for t in ref]
        if not ref:
            raise ValueError(f"{where}: empty references; a target has at least one token.")
        if len(pred) != len(ref):
            raise ValueError(
                f"{where}: {len(pred)} predictions for {len(ref)} reference tokens; under teacher forcing there "
                "is one argmax per target token (TargetScore.predicted / .target)."
            )
        if kind == "edit_language_answer" and lang == edit_language:
            raise ValueError(
                f"{where}: edit_language_answer scores the edit-language target on another language's prompt; "
                f"in the edit language {edit_language!r} it is reliability itself."
            )
        if kind in ("reliability", "generality") and lang != edit_language:
            same = bool(same)
            if flags.setdefault((case, lang), same) != same:
                raise ValueError(
                    f"{where}: copied={same} contradicts copied={not same} on another row of the same case and "
                    "language; the flag says whether that language's target equals the edit-language target."
                )
        if lang not in seen_languages:
            seen_languages.append(lang)
        right = sum(p == r for p, r in zip(pred, ref))
        rows.setdefault((lang, kind, case), []).append(
            (right / len(ref), float(right == len(ref)), *_generation_reading(reading, kind, where))
        )

    if languages is not None:
        languages = [languages] if isinstance(languages, str) else list(dict.fromkeys(languages))
    augment = _check_languages(seen_languages, edit_language, augment_languages, languages)
    machine = _check_languages(
        seen_languages, edit_language, machine_translated_languages, languages, "machine_translated_languages"
    )
    both = [lang for lang in machine if lang in augment]
    if both:
        raise ValueError(
            f"Language(s) {both} are both augmentation (human) and machine-translated languages; a language's "
            "trained version came from one of them: list it once."
        )
    ordered = [edit_language] + [lang for lang in (languages or seen_languages) if lang != edit_language]
    unseen = [lang for lang in ordered if lang != edit_language and lang not in augment and lang not in machine]

    # per (language, probe): {case: (token accuracy, exact match)} averaged over the case's rows
    by_case: dict[tuple[str, str], dict[str, Score]] = {}
    for (lang, kind, case), scores in rows.items():
        by_case.setdefault((lang, kind), {})[case] = _mean_pairs(scores)

    per_case: dict[Any, dict[str, dict[str, Any]]] = {}
    for (lang, kind), cases in by_case.items():
        for case, score in cases.items():
            per_case.setdefault(case, {}).setdefault(lang, {})[kind] = list(score if generated else score[:2])
    for (case, lang), same in flags.items():
        per_case[case][lang]["copied"] = same

    per_language: dict[str, dict[str, float | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    for lang in ordered:
        reliability = by_case.get((lang, "reliability"), {})
        transfer = lang != edit_language  # the copied/translated split and the third reading describe transfer
        groups = {
            "reliability": reliability,
            "generality": by_case.get((lang, "generality"), {}),
            "locality": by_case.get((lang, "locality"), {}),
            "portability": by_case.get((lang, "portability"), {}),
            "reliability_translated": {c: s for c, s in reliability.items() if transfer and not flags[(c, lang)]},
            "reliability_copied": {c: s for c, s in reliability.items() if transfer and flags[(c, lang)]},
            "reliability_edit_language_answer": by_case.get((lang, "edit_language_answer"), {}),
        }
        values: dict[str, float | None] = {}
        for measure in MEASURES:
            scores = list(groups[measure].values())
            means = _mean_pairs(scores) if scores else (None,) * len(READINGS)
            values.update({measure + suffix: value for suffix, value in zip(READINGS, means)})
        per_language[lang] = values
        counts[lang] = {measure: len(groups[measure]) for measure in MEASURES}

    cross_lingual = [lang for lang in ordered if lang != edit_language]
    result: dict[str, Any] = {}
    for measure in _HEADLINE:
        for suffix in READINGS:
            result[measure + suffix] = per_language[edit_language][measure + suffix]
    result.update(
        per_language=per_language,
        average=_average(per_language, ordered),
        average_cross_lingual=_average(per_language, cross_lingual),
        average_augment=_average(per_language, augment),
        average_unseen=_average(per_language, unseen),
        **({"average_machine_translated": _average(per_language, machine)} if machine else {}),
        counts=counts,
        per_case=per_case,
        edit_language=edit_language,
        augment_languages=augment,
        **({"machine_translated_languages": machine} if machine else {}),
        unseen_languages=unseen,
        num_cases=len({case for (_, _, case) in rows}),
    )
    return result


def _check_languages(
    seen: list[str],
    edit_language: str,
    augment_languages: Iterable[str],
    languages: list[str] | None,
    name: str = "augment_languages",
) -> list[str]:
    if isinstance(augment_languages, str):
        augment_languages = [augment_languages]
    augment = list(dict.fromkeys(augment_languages))
    if edit_language not in seen:
        raise ValueError(
            f"The edit language {edit_language!r} has no row (languages given: {seen}); add its reliability rows "
            "or pass the right edit_language."
        )
    if edit_language in augment:
        raise ValueError(
            f"The edit language {edit_language!r} is also listed in {name}; list only the other "
            "languages whose parallel versions were used while editing."
        )
    missing = [lang for lang in augment if lang not in seen]
    if missing:
        raise ValueError(f"Language(s) {missing} of {name} have no row (languages given: {seen}).")
    if languages is not None:
        missing = [lang for lang in languages if lang not in seen]
        if missing:
            raise ValueError(f"Language(s) {missing} have no row (languages given: {seen}).")
        extra = [lang for lang in seen if lang not in languages]
        if extra:
            raise ValueError(f"Rows in language(s) {extra} that are not in languages={languages}.")
    return augment


def _generation_reading(reading: Mapping[str, Any] | None, kind: str, where: str) -> tuple[float | None, float | None]:
    """(generated, stops) of one row's generation reading; (None, None) when it has none."""
    if reading is None:
        return None, None
    needed = ("unchanged",) if kind == "locality" else ("exact", "stops")
    missing = [key for key in needed if key not in reading]
    if missing:
        raise ValueError(f"{where}: the generation reading needs {list(needed)}, it lacks {missing}.")
    if kind == "locality":
        return float(bool(reading["unchanged"])), None
    return float(bool(reading["exact"])), float(bool(reading["stops"]))


def _mean_pairs(scores: Sequence[Score]) -> Score:
    """The mean of each reading over `scores`, skipping None (None where none has it)."""
    means: list[float | None] = []
    for values in zip(*scores):
        present = [v for v in values if v is not None]
        means.append(sum(present) / len(present) if present else None)
    return tuple(means)


def _average(per_language: dict[str, dict[str, float | None]], langs: Sequence[str]) -> dict[str, float | None]:
    averaged: dict[str, float | None] = {}
    for measure in MEASURES:
        for key in (measure + suffix for suffix in READINGS):
            values = [per_language[lang][key] for lang in langs if per_language[lang][key] is not None]
            averaged[key] = sum(values) / len(values) if values else None
    return averaged


__all__ = ["COLUMNS", "MEASURES", "PROBES", "READINGS", "compute_cross_lingual_edit"]
