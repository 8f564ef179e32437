"""The one judge: how an edited model is scored on a case in every language, before and after.

Every consumer (the bench, the demo, the examples, the studies, `EditTrainer`) goes through here and only
formats the result. [`Judge`][peft_mpn.metrics.judge.Judge] scores the unedited model once per case (keeping its
locality predictions as the reference), then scores edited models against that reference; its
[`scores`][peft_mpn.metrics.judge.Judge.scores] are those of
[`compute_cross_lingual_edit`][peft_mpn.metrics.edit_metrics.compute_cross_lingual_edit].
[`exact_matches`][peft_mpn.metrics.judge.exact_matches] reads a result as counts of cases ("7/8") for tables.
Each probe is read teacher-forced and, by default, on greedy generation (`peft_mpn.metrics.generation`). The
lower-level row functions ([`metric_rows`][peft_mpn.metrics.rows.metric_rows],
[`locality_predictions`][peft_mpn.metrics.rows.locality_predictions]) are public for code that batches
differently; code that produces the teacher-forced predictions itself (a Trainer's evaluation loop) takes the
probes from [`Judge.probes`][peft_mpn.metrics.judge.Judge.probes] and builds rows with
[`Judge.row`][peft_mpn.metrics.judge.Judge.row].
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.requests import EditRequest
from ..files import atomic_write_text
from .edit_metrics import COLUMNS, MEASURES, compute_cross_lingual_edit
from .generation import GenerationSettings
from .probes import Probe, edit_probes
from .rows import (
    Row,
    judged_probes,
    locality_generations,
    locality_predictions,
    metric_rows,
    ordered_languages,
    probe_row,
    rows_to_columns,
)

logger = logging.getLogger(__name__)


def model_fingerprint(model: Any) -> str:
    """An identity of a model's weights: a hash of every named tensor's shape, sum and sum of squares.

    Two models that differ in any tensor (one fine-tuned layer, one edited bias) get different fingerprints;
    it reads every weight once (about 0.3 s for 270M parameters on 2 cores), not their bytes.
    """
    base = getattr(model, "get_base_model", lambda: model)()
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in [*base.named_parameters(), *base.named_buffers()]:
            values = tensor.detach().double()
            digest.update(
                f"{name}:{list(tensor.shape)}:{float(values.sum())!r}:{float((values**2).sum())!r};".encode()
            )
    label = getattr(getattr(base, "config", None), "_name_or_path", None) or type(base).__name__
    return json.dumps([label, digest.hexdigest()])


def _read_cache_entry(
    path: Path, request: EditRequest, languages: Sequence[str], generated: bool
) -> tuple[list[Row], dict[str, tuple], dict[str, tuple]] | None:
    """A judge-cache entry if it is whole and has this case's shape; None (with a warning) to recompute it.

    An entry written by another version, truncated, or edited by hand must not silently drop a case's rows.
    """
    expected = [(p.language, p.probe) for p in judged_probes(request, languages)]
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        rows = stored["rows"]
        shape = [(row["language"], row["probe"]) for row in rows]
        whole = all(set(COLUMNS) <= set(row) and (not generated or "generated" in row) for row in rows)
        locality = {lang: tuple(int(t) for t in ids) for lang, ids in stored["locality"].items()}
        generation = {lang: tuple(int(t) for t in ids) for lang, ids in stored["generation"].items()}
        if shape == expected and whole:
            return rows, locality, generation
        problem = "its rows do not match the case's probes"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        problem = f"it cannot be read ({type(error).__name__}: {error})"
    logger.warning("Judge cache entry %s is not usable (%s): judging the case again and rewriting it.", path, problem)
    return None


class Judge:
    """Scores edits of a set of cases in every language, before and after, the same way everywhere.

    Args:
        tokenizer: the model's tokenizer.
        languages: the languages to judge (the edit language is always judged first); None: each case's own.
        augment_languages: the languages an editor trained on besides the edit language ("seen"); the others
            are reported as unseen.
        machine_translated_languages: languages the editor trained on machine-written versions of
            (`peft_mpn.data.translation`): reported as their own group, neither seen nor unseen.
        batch_size: scoring batch size (scores do not depend on it).
        cache: a folder that keeps the unedited model's judgements per case, so later runs on the same model and
            cases skip them (about half of a benchmark run's judging).
        generation: how to read greedy generation beside teacher forcing (answers judged on the generated text,
            locality on the first generated tokens); None: teacher-forced readings only.

    Examples:
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
        machine_translated_languages: Sequence[str] = (),
        batch_size: int = 16,
        cache: str | Path | None = None,
        generation: GenerationSettings | None = GenerationSettings(),  # noqa: B008 - frozen, never mutated
    ) -> None:
        self.tokenizer = tokenizer
        self.generation = generation
        self.generation_reference: dict[str, dict[str, tuple[int, ...]]] = {}
        self.languages = None if languages is None else list(languages)
        self.augment_languages = list(augment_languages)
        self.machine_translated_languages = list(machine_translated_languages)
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
            if settings is not None:
                del settings["batch_size"]  # how many rows decode together does not change a reading
            key = [fingerprint, list(self.languages or languages), str(request.case_id), probes, settings]
            path = self.cache / f"{hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:32]}.json"
            if path.is_file():
                cached = _read_cache_entry(path, request, languages, self.generation is not None)
                if cached is not None:
                    return cached
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
            machine_translated_languages=[lang for lang in self.machine_translated_languages if lang in present],
        )


def exact_matches(
    scores: Mapping[str, Any], language: str, measure: str = "reliability", reading: str = "em"
) -> tuple[int, int]:
    """`(cases that hold, cases judged)` of `measure` in `language`, from a `Judge.scores` result.

    The judge's rate (a mean over cases) times its `counts`, for a table that counts facts ("7/8"). `measure` is
    one of `peft_mpn.metrics.edit_metrics.MEASURES`, e.g. `"reliability_translated"`; `reading` is `"em"`
    (teacher-forced exact match), `"gen"` (the generated answer is exact) or `"stops"` (it ends in time).

    Raises:
        ValueError: an unknown language, measure or reading, a reading the scores lack (no generation judged), or a
            measure that holds on part of a case (a case with several rephrases can be half right on
            `generality`): show its rate instead.
    """
    if reading not in ("em", "gen", "stops"):
        raise ValueError(f"Unknown reading {reading!r}; use 'em', 'gen' or 'stops'.")
    try:
        count = scores["counts"][language][measure]
        rate = scores["per_language"][language][f"{measure}_{reading}"]
    except KeyError:
        raise ValueError(
            f"No {measure!r} in {language!r} in these scores (languages {sorted(scores.get('counts', {}))}; "
            f"measures {list(MEASURES)})."
        ) from None
    if not count:
        return 0, 0
    if rate is None:
        raise ValueError(
            f"These scores have no {reading!r} reading of {measure!r}: judge with generation (the Judge's default)."
        )
    held = rate * count
    if abs(held - round(held)) > 1e-6:
        raise ValueError(
            f"{measure!r} in {language!r} holds on {held:.2f} of {count} cases: some cases hold in part (several rows "
            "per case); show its rate."
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
