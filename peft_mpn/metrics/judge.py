"""The one judge: how an edited model is scored on a case in every language, before and after.

Every consumer (the bench, the demo, the examples, the studies, `EditTrainer`) goes through here and only
formats the result. [`Judge`][peft_mpn.metrics.judge.Judge] scores the unedited model once per case (keeping its
locality predictions as the reference), then scores edited models against that reference; its
[`scores`][peft_mpn.metrics.judge.Judge.scores] are those of
[`compute_cross_lingual_edit`][peft_mpn.metrics.edit_metrics.compute_cross_lingual_edit].
[`exact_matches`][peft_mpn.metrics.judge.exact_matches] reads a result as counts of cases ("7/8") for tables.
The lower-level row functions ([`metric_rows`][peft_mpn.metrics.judge.metric_rows],
[`locality_predictions`][peft_mpn.metrics.judge.locality_predictions]) are public for code that batches
differently; code that produces the teacher-forced predictions itself (a Trainer's evaluation loop) takes the
probes from [`Judge.probes`][peft_mpn.metrics.judge.Judge.probes] and builds rows with
[`Judge.row`][peft_mpn.metrics.judge.Judge.row].
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data.requests import EditRequest
from ..files import atomic_write_text
from .edit_metrics import COLUMNS, MEASURES, PROBES, compute_cross_lingual_edit
from .generation import GenerationSettings, answer_readings, generate_greedy
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
    batch_size: int = 16,
) -> dict[str, tuple[int, ...]]:
    """The model's first `settings.locality_tokens` greedy tokens after each language's locality question."""
    prompts = [(lang, v.locality_prompt) for lang, v in _views(request, languages) if v.locality_prompt]
    generated = generate_greedy(
        model, tokenizer, [prompt for _, prompt in prompts], settings.locality_tokens, batch_size=batch_size
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
        _add_generation(model, tokenizer, chosen, rows, generation, pre_generation, batch_size)
    return rows


def _add_generation(
    model: Any,
    tokenizer: Any,
    probes: Sequence[Probe],
    rows: list[Row],
    settings: GenerationSettings,
    pre_generation: Mapping[str, Sequence[int]] | None,
    batch_size: int,
) -> None:
    """Add each row's `generated` reading (answers judged on greedy generation; locality against `pre_generation`)."""
    answers = [i for i, probe in enumerate(probes) if probe.probe != "locality"]
    readings = answer_readings(
        model, tokenizer, [(probes[i].prompt, str(probes[i].target)) for i in answers], settings, batch_size=batch_size
    )
    for i, reading in zip(answers, readings):
        rows[i]["generated"] = {
            "text": reading.text,
            "answer": reading.answer,
            "exact": reading.exact,
            "stops": reading.stops,
            "repeats": reading.repeats,
        }
    unrelated = [
        i
        for i, probe in enumerate(probes)
        if probe.probe == "locality" and pre_generation and probe.language in pre_generation
    ]
    generated = generate_greedy(
        model, tokenizer, [probes[i].prompt for i in unrelated], settings.locality_tokens, batch_size=batch_size
    )
    for i, tokens in zip(unrelated, generated):
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


def model_fingerprint(model: Any) -> str:
    """A cheap identity of a model's weights: its name, parameter count and a checksum of a few tensors."""
    parameters = list(getattr(model, "get_base_model", lambda: model)().parameters())
    sampled = [parameters[0], parameters[len(parameters) // 2], parameters[-1]] if parameters else []
    checksum = [float(p.detach().double().sum()) for p in sampled]
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    return json.dumps([name, sum(p.numel() for p in parameters), checksum])


class Judge:
    """Scores edits of a set of cases in every language, before and after, the same way everywhere.

    Args:
        tokenizer: the model's tokenizer.
        languages: the languages to judge (the edit language is always judged first); None: each case's own.
        augment_languages: the languages an editor trained on besides the edit language ("seen"); the others
            are reported as unseen.
        batch_size: scoring batch size (scores do not depend on it).
        cache: a folder that keeps the unedited model's judgements per case, so later runs on the same model and
            cases skip them (about half of a benchmark run's judging).
        generation: how to read greedy generation beside teacher forcing (answers judged on the generated text,
            locality on the first generated tokens); None: teacher-forced readings only.

    Example:

        ```py
        >>> judge = Judge(tokenizer, languages=["en", "de", "fr"], augment_languages=["de"])
        >>> before = judge.reference(model, requests)      # the unedited model; keeps its locality answers
        >>> editor.edit(requests[0])
        >>> after = judge.rows(editor.model, requests[0])  # locality judged against the reference
        >>> judge.scores(after)["per_language"]["fr"]["reliability_translated"]
        ```
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        languages: Sequence[str] | None = None,
        augment_languages: Sequence[str] = (),
        batch_size: int = 16,
        cache: str | Path | None = None,
        generation: GenerationSettings | None = GenerationSettings(),  # noqa: B008 - frozen, never mutated
    ) -> None:
        self.tokenizer = tokenizer
        self.generation = generation
        self.generation_reference: dict[str, dict[str, tuple[int, ...]]] = {}
        self.languages = None if languages is None else list(languages)
        self.augment_languages = list(augment_languages)
        self.batch_size = batch_size
        self.cache = None if cache is None else Path(cache).expanduser()
        self.locality_reference: dict[str, dict[str, tuple[int, ...]]] = {}
        self.edit_language: str | None = None

    def _languages(self, request: EditRequest) -> list[str]:
        return ordered_languages(self.languages or request.languages, request.edit_language)

    def _check_edit_language(self, requests: Sequence[EditRequest]) -> None:
        edit_languages = {request.edit_language for request in requests} | (
            set() if self.edit_language is None else {self.edit_language}
        )
        if len(edit_languages) > 1:
            raise ValueError(
                f"The cases mix edit languages {sorted(edit_languages)}; judge each edit language with its own Judge."
            )
        self.edit_language = edit_languages.pop() if edit_languages else self.edit_language

    def reference(self, model: Any, requests: Iterable[EditRequest], *, progress: bool = False) -> list[Row]:
        """The unedited `model`'s rows for `requests` (no locality rows); keeps its locality predictions."""
        requests = list(requests)
        self._check_edit_language(requests)
        fingerprint = model_fingerprint(model) if self.cache is not None else ""
        rows: list[Row] = []
        for request in tqdm(requests, desc="before", disable=not progress):
            case_rows, locality, generated = self._unedited(model, request, fingerprint)
            rows += case_rows
            self.locality_reference[str(request.case_id)] = locality
            self.generation_reference[str(request.case_id)] = generated
        return rows

    def reference_locality(self, model: Any, requests: Iterable[EditRequest], *, progress: bool = False) -> None:
        """Keep the unedited `model`'s locality predictions for `requests` without judging it (no "before" rows).

        For consumers that need only the reference: `EditTrainer` (its evaluation scores the edited model alone),
        or unrelated cases whose locality is judged after each edit (`rows(..., probes={"locality"})`). Not cached.
        """
        requests = list(requests)
        self._check_edit_language(requests)
        for request in tqdm(requests, desc="reference", disable=not progress):
            self.locality_reference[str(request.case_id)] = locality_predictions(
                model, self.tokenizer, request, languages=self._languages(request), batch_size=self.batch_size
            )
            self.generation_reference[str(request.case_id)] = self._locality_generations(model, request)

    def _locality_generations(self, model: Any, request: EditRequest) -> dict[str, tuple[int, ...]]:
        if self.generation is None:
            return {}
        return locality_generations(
            model,
            self.tokenizer,
            request,
            languages=self._languages(request),
            settings=self.generation,
            batch_size=self.batch_size,
        )

    def _unedited(
        self, model: Any, request: EditRequest, fingerprint: str
    ) -> tuple[list[Row], dict[str, tuple], dict[str, tuple]]:
        """The unedited model's rows, locality predictions and locality generations for `request`, from the cache
        when it has them.

        They depend only on the weights, the probes and the generation settings, so every method judged on the
        same cases shares them; the key hashes the model fingerprint, the languages, every probe's text and the
        generation settings.
        """
        languages = self._languages(request)
        path = None
        if self.cache is not None:
            probes = [list(probe) for probe in edit_probes(request, languages)]
            settings = None if self.generation is None else asdict(self.generation)
            key = [fingerprint, list(self.languages or languages), str(request.case_id), probes, settings]
            path = self.cache / f"{hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:32]}.json"
            if path.is_file():
                stored = json.loads(path.read_text(encoding="utf-8"))
                return (
                    stored["rows"],
                    {lang: tuple(ids) for lang, ids in stored["locality"].items()},
                    {lang: tuple(ids) for lang, ids in stored["generation"].items()},
                )
        rows = metric_rows(
            model,
            self.tokenizer,
            request,
            languages=languages,
            batch_size=self.batch_size,
            generation=self.generation,
        )
        locality = locality_predictions(
            model, self.tokenizer, request, languages=languages, batch_size=self.batch_size
        )
        generated = self._locality_generations(model, request)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            stored = {"rows": rows, "locality": locality, "generation": generated}
            atomic_write_text(path, json.dumps(stored, ensure_ascii=False))
        return rows, locality, generated

    def _reference_of(self, request: EditRequest) -> dict[str, tuple[int, ...]]:
        key = str(request.case_id)
        if key not in self.locality_reference:
            raise ValueError(
                f"Case {request.case_id!r} has no unedited reference; call judge.reference(unedited_model, "
                "requests) before editing."
            )
        return self.locality_reference[key]

    def probes(self, request: EditRequest, *, probes: Collection[str] | None = None) -> list[Probe]:
        """The probes [`rows`][peft_mpn.metrics.judge.Judge.rows] scores for `request`, in its order.

        For code that produces the teacher-forced predictions itself (`EditTrainer`'s evaluation loop) and turns
        them into rows with [`row`][peft_mpn.metrics.judge.Judge.row].
        """
        return judged_probes(
            request, self._languages(request), pre_locality=self._reference_of(request), probes=probes
        )

    def row(self, request: EditRequest, probe: Probe, predicted: Sequence[int], target: Sequence[int]) -> Row:
        """The row of one of [`probes`][peft_mpn.metrics.judge.Judge.probes] from its teacher-forced argmax tokens
        (`predicted`) and its target token ids (`target`); locality against the unedited reference."""
        return probe_row(request, probe, predicted, target, self._reference_of(request))

    def rows(self, model: Any, request: EditRequest, *, probes: Collection[str] | None = None) -> list[Row]:
        """The edited `model`'s rows for `request`, locality judged against the unedited reference.

        With `probes`, only those kinds (e.g. `{"locality"}` on cases that were not edited).
        """
        return metric_rows(
            model,
            self.tokenizer,
            request,
            languages=self._languages(request),
            pre_locality=self._reference_of(request),
            probes=probes,
            batch_size=self.batch_size,
            generation=self.generation,
            pre_generation=self.generation_reference.get(str(request.case_id)),
        )

    def scores(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """`compute_cross_lingual_edit` of `rows` (from `reference` or `rows`), with this judge's languages."""
        if self.edit_language is None:
            raise ValueError("Nothing judged yet: call judge.reference(unedited_model, requests) first.")
        languages = None if self.languages is None else ordered_languages(self.languages, self.edit_language)
        present = languages or {row["language"] for row in rows}
        return compute_cross_lingual_edit(
            **rows_to_columns(rows, generated=any("generated" in row for row in rows)),
            languages=languages,
            edit_language=self.edit_language,
            augment_languages=[lang for lang in self.augment_languages if lang in present],
        )


def exact_matches(scores: Mapping[str, Any], language: str, measure: str = "reliability") -> tuple[int, int]:
    """`(cases that hold, cases judged)` of `measure` in `language`, from a `Judge.scores` result.

    The judge's exact match (a mean over cases) times its `counts`, for a table that counts facts ("7/8").
    `measure` is one of `peft_mpn.metrics.edit_metrics.MEASURES`, e.g. `"reliability_translated"`.

    Raises:
        ValueError: an unknown language or measure, or a measure that holds on part of a case (a case with several
            rephrases can be half right on `generality`): show its exact match as a rate instead.
    """
    try:
        count = scores["counts"][language][measure]
        rate = scores["per_language"][language][f"{measure}_em"]
    except KeyError:
        raise ValueError(
            f"No {measure!r} in {language!r} in these scores (languages {sorted(scores.get('counts', {}))}; "
            f"measures {list(MEASURES)})."
        ) from None
    if not count:
        return 0, 0
    held = rate * count
    if abs(held - round(held)) > 1e-6:
        raise ValueError(
            f"{measure!r} in {language!r} holds on {held:.2f} of {count} cases: some cases hold in part (several rows "
            "per case); show its exact match as a rate."
        )
    return round(held), count


__all__ = [
    "Judge",
    "exact_matches",
    "judged_probes",
    "locality_generations",
    "locality_predictions",
    "metric_rows",
    "model_fingerprint",
    "ordered_languages",
    "probe_row",
    "rows_to_columns",
]
