"""Summaries of the timed edits: statistics per configuration, ratios on shared cases, prefix-caching exactness."""

from __future__ import annotations

import statistics
from typing import Any

from .configs import EXACTNESS_PAIRS, REFERENCE


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(values: list[float]) -> dict[str, float]:
    """Median, p10, p90, mean, min and max."""
    return {
        "median": statistics.median(values),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def variant_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's edits: seconds, CPU seconds, steps, seconds per step, statuses, RSS."""
    seconds = [r["seconds"] for r in records]
    stepped = [r for r in records if r["steps"]]
    statuses = {s: sum(r["status"] == s for r in records) for s in ("edited", "unfixed", "skipped")}
    return {
        "edits": len(records),
        "cases": [r["case"] for r in records],
        "seconds": summarise(seconds),
        "cpu_seconds": summarise([r["cpu_seconds"] for r in records]),
        "steps": summarise([float(r["steps"]) for r in records]),
        "seconds_per_step": summarise([r["seconds"] / r["steps"] for r in stepped]) if stepped else None,
        "total_seconds_per_step": sum(r["seconds"] for r in stepped) / sum(r["steps"] for r in stepped)
        if stepped
        else None,
        "status": statuses,
        "rss_peak_mb": max(r["rss_peak_mb"] for r in records),
        "rss_delta_mb": summarise([r["rss_delta_mb"] for r in records]),
    }


def ratios_on_shared_cases(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each configuration against ``cached`` and ``baseline`` on the cases both ran."""
    out = {}
    by_case = {name: {r["case"]: r for r in rows} for name, rows in records.items()}
    for name in records:
        entry = {}
        for other in (REFERENCE, "baseline"):
            shared = [c for c in by_case[name] if c in by_case[other]]
            if not shared or other == name:
                continue
            mine = [by_case[name][c] for c in shared]
            theirs = [by_case[other][c] for c in shared]

            def per_step(rows: list[dict[str, Any]]) -> float | None:
                steps = sum(r["steps"] for r in rows)
                return sum(r["seconds"] for r in rows) / steps if steps else None

            mine_step, theirs_step = per_step(mine), per_step(theirs)
            entry[f"vs_{other}"] = {
                "cases": shared,
                "median_seconds_ratio": statistics.median(r["seconds"] for r in mine)
                / statistics.median(r["seconds"] for r in theirs),
                "total_seconds_ratio": sum(r["seconds"] for r in mine) / sum(r["seconds"] for r in theirs),
                "total_cpu_seconds_ratio": sum(r["cpu_seconds"] for r in mine) / sum(r["cpu_seconds"] for r in theirs),
                "seconds_per_step_ratio": mine_step / theirs_step if mine_step and theirs_step else None,
            }
        out[name] = entry
    return out


def exactness(records: dict[str, list[dict[str, Any]]], patches: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Prefix caching on vs off, case by case: same status, steps and patch count; largest patch difference."""
    checks = []
    for with_cache, without in EXACTNESS_PAIRS:
        for i, (a, b) in enumerate(zip(records[with_cache], records[without])):
            pa, pb = patches[with_cache][i], patches[without][i]
            same_shape = all(x.shape == y.shape for x, y in zip(pa, pb))
            diff = max((float((x - y).abs().max()) for x, y in zip(pa, pb) if x.numel()), default=0.0)
            scale = max((float(x.abs().max()) for x in pa if x.numel()), default=0.0)
            checks.append(
                {
                    "pair": f"{with_cache} vs {without}",
                    "case": a["case"],
                    "status": [a["status"], b["status"]],
                    "steps": [a["steps"], b["steps"]],
                    "patches": [a["patches"], b["patches"]],
                    "same_status_steps_patches": a["status"] == b["status"]
                    and a["steps"] == b["steps"]
                    and a["patches"] == b["patches"],
                    "max_abs_patch_diff": diff if same_shape else None,
                    "max_abs_patch_value": scale,
                }
            )
    return checks
