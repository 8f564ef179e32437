"""The page's headline: what `generate()` shows after an edit, with the teacher-forced reading beside it.

A run judged since the judge reads generation (`peft_mpn.metrics.generation`) carries ``*_gen`` readings: the
greedy answer up to its first line break, an exact match after normalisation; for locality, the unrelated
prompt's first generated tokens unchanged by the edit. Older runs are teacher-forced only and have no headline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peft_mpn.bench.curve_report import format_rate

from .runs import generality_not_held_out, language_average, method_key, run_label, unedited, unseen_by_every_run
from .stats import BOOTSTRAP_SAMPLES, format_difference, paired_difference

#: Headline columns: (header, language set, per-language measure, per-case probe, copied cases only / translated
#: only / all). The language sets are the group's: ``edit`` (the edit language), ``trained`` (the judged languages
#: a run of the group trained on), ``untrained`` (judged, trained on by no run), ``all`` (every judged language).
COLUMNS = (
    ("edit lang.", "edit", "reliability", "reliability", None),
    ("trained langs, translated", "trained", "reliability_translated", "reliability", False),
    ("untrained langs, translated", "untrained", "reliability_translated", "reliability", False),
    ("untrained langs, copied", "untrained", "reliability_copied", "reliability", True),
    ("generality (edit lang.)", "edit", "generality", "generality", None),
    ("locality (all langs)", "all", "locality", "locality", None),
)


def has_generation(run: Mapping[str, Any]) -> bool:
    """Whether ``run`` was judged on generated text too (runs made before that are teacher-forced only)."""
    return run["metrics"].get("reliability_gen") is not None


def language_sets(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The headline's language sets for one dataset × mode group (see `COLUMNS`)."""
    first = runs[0]
    edit = first["edit_language"]
    trained = list(dict.fromkeys(lang for run in runs for lang in run.get("seen_languages") or ()))
    judged = list(dict.fromkeys(lang for run in runs for lang in run["languages"]))
    return {"edit": [edit], "trained": trained, "untrained": unseen_by_every_run(runs), "all": judged}


def _value(result: Mapping[str, Any], languages: Sequence[str], measure: str) -> float | None:
    return language_average(result, languages, measure) if languages else None


def _tables(runs: Sequence[Mapping[str, Any]], sets: Mapping[str, list[str]]) -> list[str]:
    """The generated table (exact match of the greedy answer; `stops`) and the teacher-forced one, same rows."""
    entries = [("unedited model", unedited(runs)), *((run_label(run), run) for run in runs)]
    columns = [  # a column no entry has a value in (no copied target among the cases, say) is left out
        column
        for column in COLUMNS
        if any(_value(result, sets[column[1]], column[2]) is not None for _, result in entries)
    ]
    header = " | ".join(name for name, *_ in columns)
    generated = [f"| method | {header} | answer stops (edit lang.) |", "|---|" + "---:|" * (len(columns) + 1)]
    forced = [f"| method | {header} |", "|---|" + "---:|" * len(columns)]
    for label, result in entries:
        cells = [format_rate(_value(result, sets[where], f"{measure}_gen")) for _, where, measure, _, _ in columns]
        stops = format_rate(_value(result, sets["edit"], "reliability_stops"))
        generated.append(f"| {label} | " + " | ".join(cells) + f" | {stops} |")
        pairs = []
        for _, where, measure, _, _ in columns:
            token, exact = _value(result, sets[where], measure), _value(result, sets[where], f"{measure}_em")
            pairs.append("–" if token is None else f"{token:.2f} / {exact:.2f}")
        forced.append(f"| {label} | " + " | ".join(pairs) + " |")
    return [
        "Generated (greedy; the answer up to its first line break, exact match after normalisation; locality: the "
        "unrelated prompt's first generated tokens unchanged):",
        "",
        *generated,
        "",
        "Teacher-forced, the same cells (token accuracy / exact match of the answer tokens):",
        "",
        *forced,
        *generality_not_held_out(runs),
    ]


def _difference(mpn: Mapping[str, Any], other: Mapping[str, Any], languages: Sequence[str], column) -> str:
    _, _, _, probe, copied = column
    return format_difference(paired_difference(mpn, other, languages, probe, copied, reading="gen"))


def _short_label(run: Mapping[str, Any]) -> str:
    """The method, marked where the group may hold it twice (`method_key`): ``mpn (disjoint)``."""
    labels = {"mpn-disjoint": "mpn (disjoint)", "ft-m-augmented": "ft-m (augmented)", "lafn-ungated": "lafn (ungated)"}
    return labels.get(method_key(run), run["method"])


def _ranked(runs: Sequence[Mapping[str, Any]], values: Sequence[float | None]) -> str:
    """``t-patcher 1.00, mpn 0.98, ...``: the runs with a value, highest first."""
    pairs = sorted(((v, _short_label(run)) for run, v in zip(runs, values) if v is not None), key=lambda p: -p[0])
    return ", ".join(f"{label} {format_rate(value)}" for value, label in pairs) or "–"


def bottom_line(dataset: str, mode: str, runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One paragraph: what the methods of one group write after an edit, reading by reading (generated cells),
    each method ranked, then MPN − T-Patcher with its interval."""
    sets = language_sets(runs)
    mpn = next((run for run in runs if run["method"] == "mpn" and run.get("seen_languages")), None)
    patcher = next((run for run in runs if run["method"] == "t-patcher"), None)

    def ranked(where: str, measure: str, among: Sequence[Mapping[str, Any]] = runs) -> str:
        return _ranked(among, [_value(run, sets[where], f"{measure}_gen") for run in among])

    edits = "" if "edits)" in dataset else f" ({runs[0]['num_edits']} edits)"  # a title may carry the count
    readings = [
        f"unrelated continuations left unchanged: {ranked('all', 'locality')}",
        f"the new answer written in the edit language: {ranked('edit', 'reliability')}",
    ]
    trained = [run for run in runs if run.get("seen_languages")]
    if trained:
        readings.append(
            f"in the languages a run trained on ({' '.join(sets['trained'])}; translated answers): "
            + ranked("trained", "reliability_translated", trained)
        )
    if sets["untrained"]:
        readings.append(
            f"in the languages no run trained on (translated answers): {ranked('untrained', 'reliability_translated')}"
        )
    said = [f"**{dataset}, {mode} editing{edits}** (generated, greedy): " + "; ".join(readings) + "."]
    if mpn is not None and patcher is not None and sets["trained"]:
        untrained, locality = COLUMNS[2], COLUMNS[5]
        said.append(
            f"MPN − T-Patcher, with a 95% paired bootstrap interval over the cases ({BOOTSTRAP_SAMPLES} "
            f"resamples): on MPN's training languages {_difference(mpn, patcher, sets['trained'], COLUMNS[1])}, on "
            f"the untrained ones {_difference(mpn, patcher, sets['untrained'], untrained)}, locality "
            f"{_difference(mpn, patcher, sets['all'], locality)}."
        )
    return [" ".join(said), ""]


def generation_headline(grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]) -> list[str]:
    """The page's first section: per dataset × mode with generation-judged runs, a bottom line and two tables."""
    lines: list[str] = []
    for (dataset, mode), group in grouped.items():
        runs = [run for run in group if has_generation(run)]
        if not runs:
            continue
        sets = language_sets(runs)
        lines += bottom_line(dataset, mode, runs)
        lines += [
            f"Languages: edit `{sets['edit'][0]}`; trained ({' '.join(sets['trained']) or 'none'}); untrained "
            f"({' '.join(sets['untrained']) or 'none'}).",
            "",
            *_tables(runs, sets),
            "",
        ]
    if not lines:
        return []
    return [
        "## What `generate()` shows after an edit",
        "",
        "The headline readings: each edit judged the way a user reads the model, on its greedy output. Teacher "
        "forcing (the tables further down, and the second table here) feeds the target and checks each next "
        "token; it cannot see an answer that runs on (`Airbus Airbus Airbus…`) or an unrelated continuation that "
        "drifts after the answer tokens.",
        "",
        *lines,
    ]
