"""The paired bootstrap: one run minus another on a transfer reading, with a 95% interval over the edited cases."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

BOOTSTRAP_SAMPLES = 2000


#: Where each reading sits in a ``per_case`` cell: ``[token accuracy, exact match, generated, stops]``.
READINGS = {"token": 0, "em": 1, "gen": 2, "stops": 3}


def _case_cells(run: Mapping[str, Any], languages: Sequence[str], probe: str, copied: bool | None, reading: str):
    """``{language: {case: value}}`` from a run's ``per_case`` table, the cases the reading covers."""
    index = READINGS[reading]
    cells: dict[str, dict[str, float]] = {}
    for case, by_language in run["per_case"].items():
        for lang in languages:
            cell = by_language.get(lang, {})
            if probe in cell and (copied is None or cell.get("copied") is copied):
                values = cell[probe]
                if index < len(values) and values[index] is not None:
                    cells.setdefault(lang, {})[case] = values[index]
    return cells


def _macro(cells: Mapping[str, Mapping[str, float]], cases: Sequence[str]) -> float | None:
    means = []
    for by_case in cells.values():
        values = [by_case[case] for case in cases if case in by_case]
        if values:
            means.append(sum(values) / len(values))
    return sum(means) / len(means) if means else None


def paired_difference(
    run_a: Mapping[str, Any],
    run_b: Mapping[str, Any],
    languages: Sequence[str],
    probe: str,
    copied: bool | None,
    exact: bool = False,
    reading: str | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """``a - b`` on one transfer reading over ``languages``, with a 95% paired bootstrap interval over cases.

    ``reading``: ``"token"`` (the default), ``"em"`` (also ``exact=True``), ``"gen"`` (the generated answer) or
    ``"stops"``. ``None`` when the runs edited different cases or a run has no ``per_case`` table (older JSON).
    """
    if (
        run_a.get("case_ids") != run_b.get("case_ids")
        or run_a.get("judged_case_ids") != run_b.get("judged_case_ids")
        or "per_case" not in run_a
        or "per_case" not in run_b
    ):
        return None
    reading = reading or ("em" if exact else "token")
    cells_a = _case_cells(run_a, languages, probe, copied, reading)
    cells_b = _case_cells(run_b, languages, probe, copied, reading)
    cases = list(run_a.get("judged_case_ids", run_a["case_ids"]))
    a, b = _macro(cells_a, cases), _macro(cells_b, cases)
    if a is None or b is None:
        return None
    rng = random.Random(seed)
    differences = []
    for _ in range(samples):
        drawn = rng.choices(cases, k=len(cases))
        da, db = _macro(cells_a, drawn), _macro(cells_b, drawn)
        if da is not None and db is not None:
            differences.append(da - db)
    differences.sort()
    low = differences[int(0.025 * (len(differences) - 1))]
    high = differences[int(0.975 * (len(differences) - 1))]
    return a - b, low, high


def format_difference(value: tuple[float, float, float] | None) -> str:
    """``+0.12 [+0.05, +0.19]`` from `paired_difference`'s result; ``–`` when there is none."""
    if value is None:
        return "–"
    difference, low, high = value
    return f"{difference:+.2f} [{low:+.2f}, {high:+.2f}]"


def case_interval(
    result: Mapping[str, Any],
    cases: Sequence[str],
    languages: Sequence[str],
    probe: str,
    copied: bool | None,
    reading: str = "token",
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """One reading of `result` (a run, or its ``before``) over ``languages`` (macro, as the metric averages),
    with a 95% bootstrap interval over ``cases``: ``(value, low, high)``; None without a ``per_case`` table."""
    if "per_case" not in result:
        return None
    cells = _case_cells(result, languages, probe, copied, reading)
    value = _macro(cells, cases)
    if value is None:
        return None
    rng = random.Random(seed)
    draws = sorted(
        v for v in (_macro(cells, rng.choices(cases, k=len(cases))) for _ in range(samples)) if v is not None
    )
    return value, draws[int(0.025 * (len(draws) - 1))], draws[int(0.975 * (len(draws) - 1))]
