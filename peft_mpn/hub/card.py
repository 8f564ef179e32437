"""The model card of an edit adapter: Hub metadata, the edited facts, the metric table, how to load it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .manifest import MANIFEST_NAME, EditManifestError

CARD_TAGS = ("peft-mpn", "knowledge-editing", "cross-lingual")
METRIC_COLUMNS = ("reliability", "generality", "locality", "portability")


def markdown_cell(text: Any) -> str:
    """`text` as literal text in a Markdown table cell: no heading, link, image, HTML, emphasis or line break.

    Manifest records are user data (a prompt can hold `<script>`, `](http://…)` or a new line); the card shows
    them, it does not render them.
    """
    value = " ".join(str(text).split())  # no line breaks: they would end the table row
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + char if char in _MARKDOWN_SPECIALS else char for char in value)


_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-!|~")


def hub_model_id(name: str | None) -> str | None:
    """`name` if it is a Hub repo id (``org/name`` or ``name``), None for a local path or nothing.

    The Hub refuses a card whose ``base_model`` is not a model id, and a local folder means nothing to anyone
    who pulls the adapter.
    """
    if not name:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def eval_results(metrics: Mapping[str, Any]) -> list[EvalResult]:
    """The card's ``model-index``: every per-language reading of `metrics` (token accuracy, exact match and
    generated where the result has them), one `EvalResult` each, the language as the dataset config."""
    results = []
    for language, scores in metrics.get("per_language", {}).items():
        for column in METRIC_COLUMNS:
            for suffix, kind in (("", "token accuracy"), ("_em", "exact match"), ("_gen", "generated exact match")):
                value = scores.get(f"{column}{suffix}")
                if value is None:
                    continue
                results.append(
                    EvalResult(
                        task_type="text-generation",
                        task_name="Knowledge editing",
                        dataset_type="edit-requests",
                        dataset_name="The edited facts",
                        dataset_config=language,
                        metric_type=f"{column}{suffix}",
                        metric_name=f"{column.capitalize()}, {kind} ({language})",
                        metric_value=round(float(value), 4),
                    )
                )
    return results


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_metric_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown table, one row per language, from `peft_mpn.metrics.compute_cross_lingual_edit`'s result."""
    per_language = metrics.get("per_language")
    if not isinstance(per_language, Mapping) or not per_language:
        raise EditManifestError(
            "metrics must be the dict compute_cross_lingual_edit returns (with a non-empty 'per_language'); "
            f"got keys {sorted(metrics)}."
        )
    edit_language = metrics.get("edit_language")
    augment = set(metrics.get("augment_languages") or ())
    lines = [
        "| Language | " + " | ".join(column.capitalize() for column in METRIC_COLUMNS) + " |",
        "|---|" + "---:|" * len(METRIC_COLUMNS),
    ]
    for language, scores in per_language.items():
        role = " (edit)" if language == edit_language else " (augmented)" if language in augment else ""
        cells = " | ".join(_number(scores.get(column)) for column in METRIC_COLUMNS)
        lines.append(f"| {language}{role} | {cells} |")
    for key, label in (("average", "Average"), ("average_cross_lingual", "Average, other languages")):
        if isinstance(metrics.get(key), Mapping):
            cells = " | ".join(_number(metrics[key].get(column)) for column in METRIC_COLUMNS)
            lines.append(f"| *{label}* | {cells} |")
    return "\n".join(lines)


def render_edit_card(
    *,
    method: str,
    edits: Sequence[Mapping[str, Any]],
    base_model: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
) -> ModelCard:
    """The model card of an edit adapter: Hub metadata, what was edited, the metric table, how to load it.

    Args:
        method: the adapter's PEFT type in lower case (`"mpn"` or `"lafn"`); a tag and the card's subject.
        edits: manifest records (`edit_records`).
        base_model: the base model's Hub id (`base_model_name_or_path` of the adapter config); a local path is
            named in the text only, as the Hub's ``base_model`` must be a model id.
        metrics: what `peft_mpn.metrics.compute_cross_lingual_edit` returned for these edits.
        repo_id: the Hub repo the adapter lives in, for the loading snippet.
        revision: its branch, tag or commit, for the same snippet.
    """
    languages = sorted({lang for record in edits for lang in record.get("languages") or [record["edit_language"]]})
    if metrics and isinstance(metrics.get("per_language"), Mapping):
        languages = sorted({*languages, *metrics["per_language"]})
    hub_id = hub_model_id(base_model)
    results = eval_results(metrics) if metrics and isinstance(metrics.get("per_language"), Mapping) else []
    data = ModelCardData(
        library_name="peft",
        base_model=hub_id,
        tags=[*CARD_TAGS[:2], method, CARD_TAGS[2]],
        language=languages or None,
        model_name=(repo_id or f"{method} knowledge edits") if results else None,
        eval_results=results or None,
    )
    if hub_id:
        base_line = f"[{hub_id}](https://huggingface.co/{hub_id})"
    else:
        base_line = f"a local model ({markdown_cell(base_model)}), not on the Hub" if base_model else "unknown"
    name = {"mpn": "MPN (multilingual patch neurons)", "lafn": "LAFN (language-agnostic factual neurons)"}
    where = repo_id or "path/to/this/adapter"
    revision_arg = f', revision="{revision}"' if revision else ""
    lines = [
        f"# Knowledge edits: {len(edits)} fact{'s' if len(edits) != 1 else ''} ({method})",
        "",
        "A peft-mpn knowledge-edit adapter (a PEFT adapter): it corrects the facts listed below in the base "
        "model and is meant to leave everything else as it was.",
        "",
        f"- **Base model:** {base_line}",
        f"- **Method:** {name.get(method, method)}",
        f"- **Facts edited:** {len(edits)}",
        f"- **Languages:** {', '.join(languages) if languages else 'unknown'}",
        "",
        "## Edited facts",
        "",
        "| Case | Language | Prompt | New target |",
        "|---|---|---|---|",
    ]
    shown = 50
    for record in edits[:shown]:
        cells = [record.get("case_id") or "", record["edit_language"], record["prompt"], record["target"]]
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
    if len(edits) > shown:
        lines.append(f"| … | | {len(edits) - shown} more in `{MANIFEST_NAME}` | |")
    if metrics:
        lines += ["", "## Evaluation", "", render_metric_table(metrics), ""]
        lines.append(
            "Scores from `peft_mpn.metrics.compute_cross_lingual_edit` (between 0 and 1, higher is better): "
            "reliability is the edit prompt (cross-lingual generalization outside the edit language), generality "
            "its rephrases, locality unrelated prompts (agreement with the unedited model), portability "
            f"follow-up questions. Cases: {metrics.get('num_cases', 'n/a')}."
        )
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "import peft_mpn  # registers the MPN and LAFN PEFT types",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_model or "<base model>"}")',
        f'model = PeftModel.from_pretrained(base, "{where}"{revision_arg})',
        f'edits = peft_mpn.hub.list_edits("{where}"{revision_arg})  # what it changes',
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
