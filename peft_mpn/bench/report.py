"""What a benchmark run writes: the JSON, a Markdown table (before → after, per language) and a plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import atomic_write, atomic_write_text
from .curve_report import curve_markdown, plot_curve

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


#: The generated-answer table: (key in per_language, label). `_gen` is the generated exact match (locality: the
#: first generated tokens unchanged), `_stops` the share of generated answers that end on their own in time.
GENERATED = (
    ("reliability_gen", "reliability"),
    ("reliability_stops", "stops"),
    ("reliability_translated_gen", "translated"),
    ("reliability_copied_gen", "copied"),
    ("generality_gen", "generality"),
    ("locality_gen", "locality"),
    ("portability_gen", "portability"),
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
    if results.get("prompt_format") is not None:
        lines += ["", f"Prompt format: `{json.dumps(results['prompt_format'], ensure_ascii=False)}`."]
    tables = [(name, [(m + suffix, label) for m, label in TRANSFER]) for suffix, name in _TEACHER_FORCED]
    if results.get("generation"):
        tables.insert(0, ("Generated answers, exact match", list(GENERATED)))
    for name, columns in tables:
        lines += _table(results, name, columns)
    lines += [
        "",
        "Reliability outside the edit language is cross-lingual: the prompt in that language against the target "
        "written in it. *translated*: cases whose target is written differently from the edit-language one; "
        "*copied*: the same string (transferable by copying). *edit-language answer*: the prompt in that language "
        "against the edit-language target. Locality: share of the unrelated question's tokens whose prediction is "
        "unchanged (before: not measured). '–': no such case.",
    ]
    if results.get("generation"):
        lines += [
            "",
            "Generated answers: greedy decoding, the answer read up to the first line break and compared after "
            "normalisation (case, Unicode form, outer punctuation). *stops*: the answer ends (line break or end of "
            f"sequence) within the target's length + {results['generation']['stop_slack']} tokens and holds the "
            f"target at most once. Generated locality: the first {results['generation']['locality_tokens']} "
            "generated tokens of the unrelated question are the unedited model's.",
            *_examples(results),
        ]
    lines += curve_markdown(results)
    return "\n".join(lines) + "\n"


_TEACHER_FORCED = (("", "Teacher-forced token accuracy"), ("_em", "Teacher-forced exact match"))


def _table(results: Mapping[str, Any], name: str, columns: list[tuple[str, str]]) -> list[str]:
    lines = [
        "",
        f"### {name} (before → after)",
        "",
        "| language | role | " + " | ".join(label for _, label in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for lang in results["languages"]:
        before, after = results["before"]["per_language"][lang], results["per_language"][lang]
        cells = [_change(before.get(key), after.get(key)) for key, _ in columns]
        lines.append(f"| {lang} | {_language_role(results, lang)} | " + " | ".join(cells) + " |")
    for label, group in (("seen average", "average_augment"), ("unseen average", "average_unseen")):
        before, after = results["before"]["metrics"][group], results["metrics"][group]
        cells = [_change(before.get(key), after.get(key)) for key, _ in columns]
        lines.append(f"| **{label}** | | " + " | ".join(cells) + " |")
    return lines


def _quote(text: str | None) -> str:
    return "`" + json.dumps(text, ensure_ascii=False).replace("`", "'") + "`"


def _examples(results: Mapping[str, Any], cases: int = 3) -> list[str]:
    """Generated text before → after on the first `cases` edits, edit language: the edit and its unrelated prompt."""
    generations = results.get("generations") or {}
    before = {(g["case_id"], g["language"], g["probe"]): g for g in generations.get("before", [])}
    lines = ["", "Generated text on the first edits (edit language):", ""]
    for case in results.get("judged_case_ids", results["case_ids"])[:cases]:
        for g in generations.get("after", []):
            if g["case_id"] != case or g["language"] != results["edit_language"]:
                continue
            if g["probe"] == "reliability":
                was = before.get((case, g["language"], "reliability"), {}).get("text")
                lines.append(f"- `{case}` edit: {_quote(was)} → {_quote(g['text'])}")
            elif g["probe"] == "locality":
                lines.append(f"- `{case}` unrelated: {_quote(g['reference_text'])} → {_quote(g['text'])}")
    return lines if len(lines) > 3 else []


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
    """Write ``output`` (JSON) and, with the same stem, the Markdown table (``.md``) and the plot (``.png``; and
    ``<stem>_curve.png`` for a run with lifelong curves).

    The JSON is written last, so its presence means the run's files are complete (a run killed before has no JSON).
    """
    output = Path(output)
    if output.suffix != ".json":
        raise ValueError(f"The output must be a .json path (the .md and .png go next to it), got {output}.")
    paths = {"json": output, "markdown": output.with_suffix(".md"), "plot": output.with_suffix(".png")}
    if results.get("curve"):
        paths["curve_plot"] = output.with_name(output.stem + "_curve.png")
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(paths["markdown"], results_markdown(results))
    plot_results(results, paths["plot"])
    if "curve_plot" in paths:
        plot_curve(results, paths["curve_plot"])
    atomic_write_text(paths["json"], text)
    return paths
