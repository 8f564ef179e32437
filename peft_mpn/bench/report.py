"""What a benchmark run writes: the JSON, a Markdown table (before → after, per language) and a plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import atomic_write, atomic_write_text

#: Columns of the per-language plot and table: (measure, label).
TRANSFER = (
    ("reliability", "reliability"),
    ("reliability_translated", "translated"),
    ("reliability_copied", "copied"),
    ("reliability_edit_language_answer", "edit-language answer"),
    ("generality", "generality"),
    ("locality", "locality"),
    ("portability", "portability"),
)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _change(before: float | None, after: float | None) -> str:
    if before is None:
        return _fmt(after)
    return f"{_fmt(before)} → {_fmt(after)}"


def _language_role(results: Mapping[str, Any], language: str) -> str:
    if language == results["edit_language"]:
        return "edit language"
    return "seen" if language in results["seen_languages"] else "unseen"


def results_markdown(results: Mapping[str, Any]) -> str:
    """Per-language tables (token accuracy, then exact match), before → after, seen/unseen marked."""
    title = f"## {results['method']} on {results.get('dataset', '?')}"
    if results.get("split"):
        title += f" ({results['split']})"
    lines = [
        title,
        "",
        f"{results['num_edits']} edits, {results['mode']} mode, edit language `{results['edit_language']}`, "
        f"augmentation languages: {', '.join(results['augment_languages']) or 'none'}, seed {results['seed']}, "
        f"model `{results.get('model', '?')}`. "
        f"Seconds per edit: {results['timing']['seconds_per_edit_mean']:.2f} (mean), "
        f"edit success: {_fmt(results['timing']['success_rate'])}.",
    ]
    for suffix, name in (("", "Token accuracy"), ("_em", "Exact match")):
        lines += [
            "",
            f"### {name} (before → after)",
            "",
            "| language | role | " + " | ".join(label for _, label in TRANSFER) + " |",
            "|---|---|" + "---:|" * len(TRANSFER),
        ]
        rows = [
            (lang, results["before"]["per_language"][lang], results["per_language"][lang])
            for lang in results["languages"]
        ]
        for lang, before, after in rows:
            cells = [_change(before[m + suffix], after[m + suffix]) for m, _ in TRANSFER]
            lines.append(f"| {lang} | {_language_role(results, lang)} | " + " | ".join(cells) + " |")
        for label, key in (("seen average", "average_augment"), ("unseen average", "average_unseen")):
            before, after = results["before"]["metrics"][key], results["metrics"][key]
            cells = [_change(before[m + suffix], after[m + suffix]) for m, _ in TRANSFER]
            lines.append(f"| **{label}** | | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reliability outside the edit language is cross-lingual: the prompt in that language against the target "
        "written in it. *translated*: cases whose target is written differently from the edit-language one; "
        "*copied*: the same string (transferable by copying). *edit-language answer*: the prompt in that language "
        "against the edit-language target. Locality: share of the unrelated question's tokens whose prediction is "
        "unchanged (before: not measured). '–': no such case.",
    ]
    return "\n".join(lines) + "\n"


def plot_results(results: Mapping[str, Any], path: str | Path) -> None:
    """Grouped bars per language (before, translated, copied, edit-language answer), seen languages shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = results["languages"]
    bars = [
        ("before: reliability", results["before"]["per_language"], "reliability", "#b0b0b0"),
        ("after: reliability", results["per_language"], "reliability", "#1f77b4"),
        ("after: translated", results["per_language"], "reliability_translated", "#d62728"),
        ("after: copied", results["per_language"], "reliability_copied", "#ff7f0e"),
        ("after: edit-language answer", results["per_language"], "reliability_edit_language_answer", "#2ca02c"),
    ]
    width = 0.8 / len(bars)
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.75 * len(languages) + 2), 6.5), sharex=True)
    for ax, suffix, name in zip(axes, ("", "_em"), ("token accuracy", "exact match")):
        for i, lang in enumerate(languages):
            role = _language_role(results, lang)
            if role != "unseen":
                ax.axvspan(i - 0.45, i + 0.45, color="#fff3c4" if role == "seen" else "#dcecff", zorder=0)
        for j, (label, table, measure, color) in enumerate(bars):
            values = [table[lang][measure + suffix] for lang in languages]
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(languages))]
            ax.bar(
                [x for x, v in zip(xs, values) if v is not None],
                [v for v in values if v is not None],
                width,
                label=label,
                color=color,
                zorder=2,
            )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3, zorder=1)
    axes[1].set_xticks(range(len(languages)))
    axes[1].set_xticklabels([f"{lang}\n({_language_role(results, lang)})" for lang in languages], fontsize=8)
    fig.suptitle(
        f"{results['method']} on {results.get('dataset', '?')}, {results['num_edits']} edits, {results['mode']} "
        "(shaded: edit language blue, seen languages yellow)",
        fontsize=9,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    atomic_write(Path(path), lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)


def write_results(results: Mapping[str, Any], output: str | Path) -> dict[str, Path]:
    """Write ``output`` (JSON) and, with the same stem, the Markdown table (``.md``) and the plot (``.png``)."""
    output = Path(output)
    if output.suffix != ".json":
        raise ValueError(f"The output must be a .json path (the .md and .png go next to it), got {output}.")
    paths = {"json": output, "markdown": output.with_suffix(".md"), "plot": output.with_suffix(".png")}
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(paths["json"], text)
    markdown = results_markdown(results)
    atomic_write_text(paths["markdown"], markdown)
    plot_results(results, paths["plot"])
    return paths


