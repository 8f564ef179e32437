"""How a sequential run's lifelong curves read: a Markdown table and a plot (see `peft_mpn.bench.curves`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write

#: Each curve: (label, where it is read in a point, colour fixed for the curve).
CURVES = (
    ("retention en, every edit, exact", ("retention_all",), "#17becf"),
    ("retention en, exact", ("per_language", "{edit}", "reliability_em"), "#1f77b4"),
    ("retention en, generated", ("per_language", "{edit}", "reliability_gen"), "#6baed6"),
    ("retention seen translated, exact", ("metrics", "average_augment", "reliability_translated_em"), "#d62728"),
    ("generality en, exact", ("per_language", "{edit}", "generality_em"), "#2ca02c"),
    ("locality all, token", ("metrics", "average", "locality"), "#7f7f7f"),
    ("locality all, generated", ("metrics", "average", "locality_gen"), "#bcbd22"),
    ("locality patched languages, token", ("metrics", "average_augment", "locality"), "#9467bd"),
)


def read(point: Mapping[str, Any], path: Sequence[str], edit_language: str) -> float | None:
    value: Any = point
    for key in path:
        value = value.get(key.format(edit=edit_language)) if isinstance(value, Mapping) else None
    return value if isinstance(value, (int, float)) else None


def wilson(rate: float | None, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson interval of a rate over `n` cases (None without cases)."""
    if rate is None or n < 1:
        return None
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def format_rate(value: float | None) -> str:
    """A table cell: two decimals, or "–" where there is no value."""
    return "–" if value is None else f"{value:.2f}"


def curve_markdown(results: Mapping[str, Any]) -> list[str]:
    """The curve table: one row per point, retention first (empty when the run measured no curve)."""
    curve, edit = results.get("curve") or [], results["edit_language"]
    if not curve:
        return []
    sample = results.get("curve_settings", {}).get("sample")
    lines = [
        "",
        f"### Lifelong curve (a sample of up to {sample} edited cases judged every "
        f"{results.get('curve_settings', {}).get('every')} edits)",
        "",
        "| edits | judged | "
        + " | ".join(label for label, _, _ in CURVES)
        + " | s/edit (median) | fixed | memory | adapter KB "
        "| tokens/s vs base |",
        "|---:|---:|" + "---:|" * (len(CURVES) + 5),
    ]
    for point in curve:
        cells = [format_rate(read(point, path, edit)) for _, path, _ in CURVES]
        speed = point.get("tokens_per_second") or {}
        adapter = point.get("adapter_bytes")
        lines.append(
            f"| {point['edits']} | {len(point['judged_cases'])} | "
            + " | ".join(cells)
            + f" | {format_rate(point.get('seconds_per_edit_median'))} | {format_rate(point.get('fixed_rate'))} | "
            f"{point.get('memory_size') if point.get('memory_size') is not None else '–'} | "
            f"{'–' if adapter is None else f'{adapter / 1024:.0f}'} | {format_rate(speed.get('ratio'))} |"
        )
    lines += [
        "",
        "Retention: earlier edits judged on the model as it is at that point (exact match of the teacher-forced "
        "answer; *generated*: the greedy answer); *every edit*: all the edits made so far, in the edit language, "
        "the others on the judged sample. Locality: the sampled cases' own unrelated questions, which no "
        "memory bank holds. *fixed*: share of the window's edits that held when made.",
    ]
    return lines


def plot_curve(results: Mapping[str, Any], path: str | Path) -> None:
    """The curves against the number of edits (95% Wilson intervals on English retention), and seconds per edit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, edit = results["curve"], results["edit_language"]
    edits = [point["edits"] for point in curve]
    fig, (quality, speed) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for label, where, colour in CURVES:
        values = [read(point, where, edit) for point in curve]
        xs = [x for x, v in zip(edits, values) if v is not None]
        quality.plot(xs, [v for v in values if v is not None], marker="o", color=colour, label=label)
        if where[-1] == "reliability_em" and where[0] == "per_language":
            counts = [point["counts"].get(edit, {}).get("reliability", 0) for point in curve]
            bounds = [wilson(v, n) for v, n in zip(values, counts)]
            kept = [(x, b) for x, b in zip(edits, bounds) if b is not None]
            if kept:
                quality.fill_between(
                    [x for x, _ in kept], [b[0] for _, b in kept], [b[1] for _, b in kept], color=colour, alpha=0.15
                )
    quality.set_ylim(0, 1.05)
    quality.set_ylabel("rate")
    quality.grid(alpha=0.3)
    quality.legend(fontsize=7, ncol=2, loc="lower left")
    seconds = [point.get("seconds_per_edit_median") for point in curve]
    speed.plot(edits, [s if s is not None else float("nan") for s in seconds], marker="o", color="#333333")
    speed.set_ylabel("s / edit (median)")
    speed.set_xlabel("edits made")
    speed.grid(alpha=0.3)
    fig.suptitle(
        f"{results['method']} on {results.get('dataset', '?')}: {results['num_edits']} edits in a row", fontsize=10
    )
    fig.tight_layout()
    atomic_write(Path(path), lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)
