"""The benchmark harness: edit facts with one method, judge every language, before and after.

:func:`metric_rows` turns one edited model and one request into the rows of
:func:`~peft_mpn.metrics.compute_cross_lingual_edit` (one per case, language and probe); any code that has an
edited model (a ``Trainer``'s ``compute_metrics``, the examples) can reuse it. :func:`run_benchmark` drives an
editor over a seeded selection of cases:

* **single-edit mode**: every edit starts from the base model (``editor.reset()`` between edits) and is judged
  right after it;
* **sequential mode**: the edits are made one after another on the same model, then all are judged.

"Before" numbers come from the unedited model. Locality compares post-edit with pre-edit argmax tokens on each
case's unrelated prompt. Unrelated text for the editors' memory (MPN) or KL term (LAFN) comes from cases not
selected for editing. :func:`write_results` writes the JSON, a Markdown table and a per-language plot.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .data import EditRequest
from .editing import FTEditorConfig, ICLEditorConfig, LAFNEditorConfig, MPNEditorConfig, make_editor
from .files import atomic_write, atomic_write_text
from .locating import LocatorConfig
from .metrics import compute_cross_lingual_edit, edit_probes, score_targets
from .metrics.edit_metrics import COLUMNS


def _lafn_config() -> LAFNEditorConfig:
    # The settings of the LAFN editing study (docs/lafn_neurons.md): read every prompt at a template slot (without
    # it half the facts had no shared neuron), search the upper blocks (8-17 of Gemma-3-270M's 18), 25 steps.
    # MzsRE repeats the prompt as its "rephrase" in 17-26% of cases per language: locate on the single prompt
    # there instead of aborting the run (the locator refuses such a language by default).
    locator = LocatorConfig(
        template="Q: {prompt}\nA:",
        lowest_layer_fraction=0.45,
        language_vote=0.75,
        generic_facts_fraction=0.2,
        require_paraphrases=False,
    )
    return LAFNEditorConfig(locator=locator, max_steps=25)


def _mpn_config() -> MPNEditorConfig:
    # One patch per trained language: every seen language fixed in 8/8 edits against 3/8 with one shared patch,
    # faster, at about a point of locality (docs/mpn_patch_plans.md).
    return MPNEditorConfig(patch_plan="per_language")


#: The benchmark's default editor config per method; command-line hyper-parameters override its fields.
EDITOR_CONFIGS: dict[str, Callable[[], Any]] = {
    "mpn": _mpn_config,
    "t-patcher": MPNEditorConfig,
    "lafn": _lafn_config,
    "ft-l": FTEditorConfig.ft_l,
    "ft-m": FTEditorConfig.ft_m,
    "icl": ICLEditorConfig,
}
#: Methods whose ``--layer`` is a config field (MPN / T-Patcher take it as their adapter's layer instead).
_LAYER_FIELD = ("ft-l", "ft-m")

#: Columns of the per-language plot and table: (measure, label).
_TRANSFER = (
    ("reliability", "reliability"),
    ("reliability_translated", "translated"),
    ("reliability_copied", "copied"),
    ("reliability_edit_language_answer", "edit-language answer"),
    ("generality", "generality"),
    ("locality", "locality"),
    ("portability", "portability"),
)
_VERSIONED = ("peft-mpn", "torch", "transformers", "peft", "datasets", "evaluate", "tqdm")


# ------------------------------------------------------------------------------------------------ rows


def _ordered_languages(languages: Sequence[str], edit_language: str) -> list[str]:
    return [edit_language, *(lang for lang in dict.fromkeys(languages) if lang != edit_language)]


def _views(request: EditRequest, languages: Sequence[str]):
    missing = [lang for lang in languages if lang not in request.views]
    if missing:
        raise ValueError(
            f"Case {request.case_id!r} has no version in {missing} (it has {request.languages}); load the data "
            "with those languages or leave them out of the evaluated languages."
        )
    return [(lang, request.views[lang]) for lang in _ordered_languages(languages, request.edit_language)]


def locality_predictions(
    model: Any, tokenizer: Any, request: EditRequest, *, languages: Sequence[str], batch_size: int = 16
) -> dict[str, tuple[int, ...]]:
    """The model's argmax tokens on each language's locality question+answer (the pre-edit reference)."""
    scored = [(lang, v) for lang, v in _views(request, languages) if v.locality_prompt and v.locality_answer]
    scores = score_targets(model, tokenizer, [(v.locality_prompt, v.locality_answer) for _, v in scored], batch_size)
    return {lang: score.predicted for (lang, _), score in zip(scored, scores)}


def metric_rows(
    model: Any,
    tokenizer: Any,
    request: EditRequest,
    *,
    languages: Sequence[str],
    pre_locality: Mapping[str, Sequence[int]] | None = None,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Teacher-forced rows of ``request`` in each of ``languages`` (the edit language is always included).

    Per language: ``reliability`` (prompt → that language's target), one ``generality`` row per rephrase,
    ``portability`` where the case has a follow-up question, ``edit_language_answer`` (prompt → the edit-language
    target) outside the edit language, and ``locality`` (argmax on the unrelated question against
    ``pre_locality[language]``, from :func:`locality_predictions` on the unedited model) when ``pre_locality`` is
    given. ``copied`` says whether the language's target is the edit-language target's string.

    Returns:
        dicts with the keys of :data:`peft_mpn.metrics.edit_metrics.COLUMNS`; :func:`rows_to_columns` turns
        them into the arguments of :func:`~peft_mpn.metrics.compute_cross_lingual_edit`.
    """
    pairs: list[tuple[str, str]] = []
    labels: list[tuple[str, str, bool]] = []
    for lang, probe, prompt, target, copied in edit_probes(request, [lang for lang, _ in _views(request, languages)]):
        if probe == "locality" and (pre_locality is None or lang not in pre_locality):
            continue
        pairs.append((prompt, str(target)))
        labels.append((lang, probe, copied))
    rows = []
    for (lang, probe, copied), score in zip(labels, score_targets(model, tokenizer, pairs, batch_size)):
        reference = tuple(pre_locality[lang]) if probe == "locality" else score.target
        if len(reference) != len(score.predicted):
            raise ValueError(
                f"Case {request.case_id!r}, {lang!r}: the pre-edit locality reference has {len(reference)} tokens "
                f"but the answer has {len(score.predicted)}; compute pre_locality with locality_predictions on "
                "the same tokenizer and request."
            )
        rows.append(
            {
                "case_id": str(request.case_id),
                "language": lang,
                "probe": probe,
                "predictions": list(score.predicted),
                "references": list(reference),
                "copied": copied,
            }
        )
    return rows


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``{column: values}`` from row dicts: ``compute_cross_lingual_edit(**rows_to_columns(rows), ...)``."""
    return {column: [row[column] for row in rows] for column in COLUMNS}


# ----------------------------------------------------------------------------------------- selection


def select_cases(num_cases: int, num_edits: int, seed: int, memory_cases: int = 0) -> tuple[list[int], list[int]]:
    """Seeded, disjoint indices: ``num_edits`` cases to edit (in editing order) and ``memory_cases`` others."""
    if num_edits < 1:
        raise ValueError(f"num_edits must be at least 1, got {num_edits}.")
    if num_edits > num_cases:
        raise ValueError(f"Asked for {num_edits} edits but the data has {num_cases} cases; lower --num-edits.")
    order = random.Random(seed).sample(range(num_cases), num_cases)
    return order[:num_edits], order[num_edits : num_edits + max(memory_cases, 0)]


def editor_config(method: str, config: Any = None, **overrides: Any) -> Any:
    """``config`` (default: ``method``'s default config) with ``overrides`` for the fields it has.

    ``None`` overrides are ignored. A dotted key sets a field of a nested config (``locator.top_k=100`` for LAFN's
    locator). An override the config has no field for raises, naming the fields.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        if method not in EDITOR_CONFIGS:
            if overrides:
                raise ValueError(
                    f"No known config for method {method!r}; add it to peft_mpn.bench.EDITOR_CONFIGS to set "
                    f"{sorted(overrides)}."
                )
            return None
        config = EDITOR_CONFIGS[method]()
    if not is_dataclass(config):
        raise TypeError(f"Editor configs are dataclasses; got {type(config).__name__}.")
    names = {f.name for f in fields(config)}
    unknown = sorted({key.split(".")[0] for key in overrides} - names)
    if unknown and method == "icl":
        raise ValueError(
            f"{unknown} are not applicable to icl: in-context editing trains nothing, it puts the fact in front of "
            f"the prompt. Drop them (its options are {sorted(names)}, via --editor-option)."
        )
    if unknown:
        raise ValueError(f"{type(config).__name__} has no field(s) {unknown}; its fields are {sorted(names)}.")
    return _replace_fields(config, overrides)


def _replace_fields(config: Any, overrides: dict[str, Any]) -> Any:
    """``replace(config, ...)`` where a key ``"a.b"`` sets field ``b`` of the nested config in field ``a``."""
    flat = {key: value for key, value in overrides.items() if "." not in key}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = value
    for head, inner in nested.items():
        part = getattr(config, head)
        if not is_dataclass(part):
            raise ValueError(
                f"{type(config).__name__}.{head} is {type(part).__name__}, not a config with fields; "
                f"can't set {sorted(f'{head}.{key}' for key in inner)}."
            )
        unknown = sorted({key.split(".")[0] for key in inner} - {f.name for f in fields(part)})
        if unknown:
            raise ValueError(
                f"{type(part).__name__} ({type(config).__name__}.{head}) has no field(s) {unknown}; its fields are "
                f"{sorted(f.name for f in fields(part))}."
            )
        flat[head] = _replace_fields(part, inner)
    return replace(config, **flat)


def check_method_options(method: str, *, layer: int | None = None, augment_languages: Sequence[str] = ()) -> None:
    """Refuse ``--layer`` / ``--augment-languages`` where ``method`` has no use for them (before any work)."""
    if layer is not None and method not in ("mpn", "t-patcher", *_LAYER_FIELD):
        raise ValueError(
            f"--layer picks the block that MPN, T-Patcher, FT-L and FT-M edit; {method} has no such block "
            + (
                "(it locates its neurons across layers: LocatorConfig.layers)."
                if method == "lafn"
                else "(in-context editing changes no weights)."
            )
            + " Drop --layer."
        )
    if augment_languages and method == "t-patcher":
        raise ValueError(
            f"T-Patcher is MPN with augmentation off; drop the augmentation languages {list(augment_languages)} "
            "or use 'mpn'."
        )
    if augment_languages and method == "icl":
        raise ValueError(
            f"In-context editing demonstrates the edit-language fact only; it has no use for the augmentation "
            f"languages {list(augment_languages)}. Drop them (pass --augment-languages with no value)."
        )


def _training_config(config: Any, edit_language: str, augment: list[str], seed: int) -> Any:
    """Point the config's language and seed fields (where it has them) at this run."""
    if config is None or not is_dataclass(config):
        return config
    names = {f.name for f in fields(config)}
    changes: dict[str, Any] = {}
    if "augment_languages" in names:  # the editor sees these parallel versions and no others
        changes["augment_languages"] = list(augment)
    if "train_languages" in names:
        changes["train_languages"] = [edit_language, *augment]
    if "seed" in names:
        changes["seed"] = seed
    return replace(config, **changes)


def _editor_kwargs(method: str, layer: int | None, reference: list[EditRequest]) -> dict[str, Any]:
    if method in ("mpn", "t-patcher"):
        from .tuners import MPNConfig

        return {"peft_config": MPNConfig(layers_to_transform=[layer if layer is not None else -1]), "progress": False}
    if method == "lafn":
        return {"reference_requests": reference, "progress": False}
    return {}


def _check_generation(requests: Sequence[EditRequest]) -> None:
    if not requests:
        raise ValueError("No cases to benchmark: the loaded data is empty.")
    if not requests[0].is_generation:
        raise ValueError(
            f"Case {requests[0].case_id!r} has a class label as its target: the benchmark scores causal LMs on "
            "generation cases (MzsRE, BMIKE-53, Bi-ZsRE). For XNLI / XFEVER edit a classifier instead "
            "(benchmarks/classifier_task.py, MPNEditor)."
        )


def _add_unrelated_text(editor: Any, requests: list[EditRequest]) -> None:
    if not requests:
        return
    for name in ("add_memory_from_requests", "add_locality_from_requests"):
        if hasattr(editor, name):
            getattr(editor, name)(requests)
            return


# --------------------------------------------------------------------------------------------- runner


def model_fingerprint(model: Any) -> str:
    """A cheap identity of a model's weights: its name, parameter count and a checksum of a few tensors."""
    parameters = list(getattr(model, "get_base_model", lambda: model)().parameters())
    sampled = [parameters[0], parameters[len(parameters) // 2], parameters[-1]] if parameters else []
    checksum = [float(p.detach().double().sum()) for p in sampled]
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    return json.dumps([name, sum(p.numel() for p in parameters), checksum])


def _judge_unedited(
    model: Any,
    tokenizer: Any,
    request: EditRequest,
    languages: Sequence[str],
    batch_size: int,
    cache: Path | None,
    fingerprint: str,
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]]:
    """The unedited model's rows and locality predictions for ``request``, from ``cache`` when it has them.

    They depend only on the weights and the probes, so every method judged on the same cases shares them; the
    key hashes the model fingerprint, the languages and every probe's text.
    """
    path = None
    if cache is not None:
        probes = [list(probe) for probe in edit_probes(request, _ordered_languages(languages, request.edit_language))]
        key = json.dumps([fingerprint, list(languages), str(request.case_id), probes], ensure_ascii=False)
        path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            return stored["rows"], {lang: tuple(ids) for lang, ids in stored["locality"].items()}
    rows = metric_rows(model, tokenizer, request, languages=languages, batch_size=batch_size)
    locality = locality_predictions(model, tokenizer, request, languages=languages, batch_size=batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"rows": rows, "locality": locality}, ensure_ascii=False))
    return rows, locality


def run_benchmark(
    model: Any,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    *,
    method: str,
    num_edits: int,
    seed: int = 0,
    sequential: bool = False,
    augment_languages: Sequence[str] = (),
    eval_languages: Sequence[str] | None = None,
    config: Any = None,
    layer: int | None = None,
    memory_cases: int = 25,
    batch_size: int = 16,
    judge_cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Edit ``num_edits`` seeded cases of ``requests`` with ``method`` and judge them in every evaluated language.

    Args:
        model: the base model (it is wrapped in place by adapter-based editors).
        tokenizer: its tokenizer.
        requests: the loaded cases; their ``edit_language`` is the edit language.
        method: a name from :data:`peft_mpn.editing.EDITORS`.
        num_edits: how many cases to edit.
        seed: the seed that selects them (and seeds the editor).
        sequential: edit them all in a row, then judge (default: each from the base model, judged right away).
        augment_languages: parallel versions the editor may train on (MPN's augmentation, LAFN's languages);
            the editor sees only the edit language and these.
        eval_languages: languages to judge (default: every language the cases carry); the edit language is
            always judged.
        config: the editor config (default: the method's, see :func:`editor_config`); its language and seed
            fields are set for this run.
        layer: the block MPN / T-Patcher patch and FT-L / FT-M fine-tune (default: the last); refused for the
            other methods.
        memory_cases: cases not selected for editing whose locality prompts fill the MPN memory / LAFN KL term.
        judge_cache: a folder that keeps the unedited model's judgements per case, so runs of other methods on the
            same model and cases skip them (about half of a run's judging).

    Returns:
        A JSON-ready dict: ``metrics``, ``per_language`` and ``per_case`` (after; see
        :func:`~peft_mpn.metrics.compute_cross_lingual_edit`), ``before`` (the same for the unedited model),
        ``counts``, ``edit_language``, ``languages``, ``augment_languages``, ``seen_languages``, ``unseen_languages``,
        ``edits`` (per edit: case_id, seconds, success, status), ``timing``, ``case_ids``, ``memory_case_ids``.
    """
    _check_generation(requests)
    edit_language = requests[0].edit_language
    available = requests[0].languages
    languages = _ordered_languages(eval_languages or available, edit_language)
    augment = [lang for lang in dict.fromkeys(augment_languages) if lang != edit_language]
    check_method_options(method, layer=layer, augment_languages=augment)
    unknown = [lang for lang in [*languages, *augment] if lang not in available]
    if unknown:
        raise ValueError(f"Language(s) {unknown} are not in the data (it has {available}); load them or drop them.")
    edit_ids, memory_ids = select_cases(len(requests), num_edits, seed, memory_cases)
    edits = [requests[i] for i in edit_ids]
    unrelated = [requests[i] for i in memory_ids]
    seen = [lang for lang in augment if lang in languages]

    torch.manual_seed(seed)
    pre_locality: dict[str, dict[str, tuple[int, ...]]] = {}
    before_rows: list[dict[str, Any]] = []
    cache = None if judge_cache is None else Path(judge_cache).expanduser()
    fingerprint = model_fingerprint(model) if cache is not None else ""
    for request in tqdm(edits, desc="before", disable=not progress):
        rows, locality = _judge_unedited(model, tokenizer, request, languages, batch_size, cache, fingerprint)
        before_rows += rows
        pre_locality[str(request.case_id)] = locality

    config = _training_config(editor_config(method, config), edit_language, augment, seed)
    if method in _LAYER_FIELD and layer is not None:
        config = replace(config, layer=layer)
    editor = make_editor(method, model, tokenizer, config, **_editor_kwargs(method, layer, unrelated))
    _add_unrelated_text(editor, unrelated)

    def judge(request: EditRequest) -> list[dict[str, Any]]:
        return metric_rows(
            editor.model,
            tokenizer,
            request,
            languages=languages,
            pre_locality=pre_locality[str(request.case_id)],
            batch_size=batch_size,
        )

    records: list[dict[str, Any]] = []
    after_rows: list[dict[str, Any]] = []
    editor.reset()
    bar = tqdm(edits, desc=f"{method} ({'sequential' if sequential else 'single'})", disable=not progress)
    for request in bar:
        if not sequential:
            editor.reset()
        start = time.perf_counter()
        result = editor.edit(request.restricted_to(augment))
        seconds = time.perf_counter() - start
        success = getattr(result, "success", None)
        records.append(
            {
                "case_id": str(request.case_id),
                "seconds": seconds,
                "success": None if success is None else bool(success),
                "status": getattr(result, "status", None),
            }
        )
        bar.set_postfix(s=f"{seconds:.1f}", ok=success)
        if not sequential:
            after_rows += judge(request)
    if sequential:
        for request in tqdm(edits, desc="judging", disable=not progress):
            after_rows += judge(request)
    editor.reset()

    scored = {"languages": languages, "edit_language": edit_language, "augment_languages": seen}
    after = compute_cross_lingual_edit(**rows_to_columns(after_rows), **scored)
    before = compute_cross_lingual_edit(**rows_to_columns(before_rows), **scored)
    seconds = [r["seconds"] for r in records]
    successes = [r["success"] for r in records if r["success"] is not None]
    return {
        "method": method,
        "mode": "sequential" if sequential else "single",
        "metrics": _overall(after),
        "per_language": after["per_language"],
        "counts": after["counts"],
        "before": {
            "metrics": _overall(before),
            "per_language": before["per_language"],
            "per_case": before["per_case"],
        },
        "per_case": after["per_case"],
        "edit_language": edit_language,
        "languages": languages,
        "augment_languages": augment,
        "seen_languages": seen,
        "unseen_languages": after["unseen_languages"],
        "edits": records,
        "timing": {
            "seconds_per_edit_mean": statistics.fmean(seconds),
            "seconds_per_edit_median": statistics.median(seconds),
            "seconds_total": sum(seconds),
            "success_rate": statistics.fmean(successes) if successes else None,
        },
        "num_edits": num_edits,
        "seed": seed,
        "case_ids": [str(r.case_id) for r in edits],
        "memory_case_ids": [str(r.case_id) for r in unrelated],
        "editor_config": config.to_dict() if hasattr(config, "to_dict") else None,
    }


def _overall(result: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("per_language", "counts", "edit_language", "augment_languages", "unseen_languages")
    return {key: value for key, value in result.items() if key not in keep}


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages a run depends on (``None`` where one is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -------------------------------------------------------------------------------------------- outputs


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
            "| language | role | " + " | ".join(label for _, label in _TRANSFER) + " |",
            "|---|---|" + "---:|" * len(_TRANSFER),
        ]
        rows = [
            (lang, results["before"]["per_language"][lang], results["per_language"][lang])
            for lang in results["languages"]
        ]
        for lang, before, after in rows:
            cells = [_change(before[m + suffix], after[m + suffix]) for m, _ in _TRANSFER]
            lines.append(f"| {lang} | {_language_role(results, lang)} | " + " | ".join(cells) + " |")
        for label, key in (("seen average", "average_augment"), ("unseen average", "average_unseen")):
            before, after = results["before"]["metrics"][key], results["metrics"][key]
            cells = [_change(before[m + suffix], after[m + suffix]) for m, _ in _TRANSFER]
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


__all__ = [
    "EDITOR_CONFIGS",
    "bench",
    "check_method_options",
    "editor_config",
    "locality_predictions",
    "metric_rows",
    "package_versions",
    "plot_results",
    "results_markdown",
    "rows_to_columns",
    "run_benchmark",
    "select_cases",
    "write_results",
]


# ----------------------------------------------------------------------------------------- command


def bench(
    *,
    method: str,
    dataset: str,
    data: str | Path,
    output: str | Path,
    split: str | None = None,
    model_name: str | None = None,
    edit_language: str = "en",
    augment_languages: Sequence[str] | None = None,
    eval_languages: Sequence[str] | None = None,
    num_edits: int = 100,
    seed: int = 0,
    sequential: bool = False,
    layer: int | None = None,
    editor_overrides: Mapping[str, Any] | None = None,
    memory_cases: int = 25,
    batch_size: int = 16,
    judge_cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """``peft-mpn bench``: load the data and the model, :func:`run_benchmark`, :func:`write_results`.

    ``augment_languages=None`` is the demo's set (de fr es ru zh, where the data has them) for ``mpn`` and
    ``lafn`` and none for the other methods. Returns the written paths (``json``, ``markdown``, ``plot``).
    """
    from .data import load_edit_requests
    from .demo import DEFAULT_AUGMENT
    from .editing import EDITORS
    from .models import load_model

    if method not in EDITORS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(EDITORS)}.")
    if Path(output).suffix != ".json":
        raise ValueError(f"--output must be a .json path (the .md and .png go next to it), got {output}.")
    if split is not None and dataset != "bmike53":
        raise ValueError(f"--split selects a BMIKE-53 split; {dataset} has none. Drop --split.")
    config = editor_config(method, None, **dict(editor_overrides or {}))  # bad options fail before any loading
    check_method_options(
        method, layer=layer, augment_languages=[a for a in augment_languages or [] if a != edit_language]
    )
    if importlib.util.find_spec("matplotlib") is None:  # checked now, not after hours of editing
        raise ModuleNotFoundError("peft-mpn bench draws its plot with matplotlib: pip install matplotlib.")
    kwargs: dict[str, Any] = {"split": split} if dataset == "bmike53" else {}
    if eval_languages is not None:
        wanted = [edit_language, *(augment_languages or []), *eval_languages]
        kwargs["languages"] = list(dict.fromkeys(wanted))
    requests = load_edit_requests(data, dataset, **kwargs)
    _check_generation(requests)  # before the model is loaded
    if edit_language != "en":  # the loaders edit in English; re-root each case on the requested language
        missing = [r.case_id for r in requests if edit_language not in r.views]
        if missing:
            raise ValueError(f"{len(missing)} cases have no {edit_language!r} version; pick another --edit-language.")
        requests = [EditRequest(views=r.views, edit_language=edit_language, case_id=r.case_id) for r in requests]
    if augment_languages is None:
        available = requests[0].languages if requests else []
        augment_languages = (
            [lang for lang in DEFAULT_AUGMENT if lang in available] if method in ("mpn", "lafn") else []
        )

    model, tokenizer = load_model(model_name, progress=progress)
    started = time.time()
    results = run_benchmark(
        model,
        tokenizer,
        requests,
        method=method,
        num_edits=num_edits,
        seed=seed,
        sequential=sequential,
        augment_languages=augment_languages,
        eval_languages=eval_languages,
        config=config,
        layer=layer,
        memory_cases=memory_cases,
        batch_size=batch_size,
        judge_cache=judge_cache,
        progress=progress,
    )
    results = {
        **results,
        "dataset": dataset,
        "split": split,
        "data": str(data),
        "model": model_name or "gemma-3-270m",
        "model_path": getattr(model, "name_or_path", None),
        "arguments": {
            "method": method,
            "dataset": dataset,
            "data": str(data),
            "split": split,
            "model": model_name,
            "edit_language": edit_language,
            "augment_languages": list(augment_languages),
            "eval_languages": None if eval_languages is None else list(eval_languages),
            "num_edits": num_edits,
            "seed": seed,
            "sequential": sequential,
            "layer": layer,
            "editor_overrides": dict(editor_overrides or {}),
            "memory_cases": memory_cases,
            "batch_size": batch_size,
        },
        "versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": time.time() - started,
    }
    return write_results(results, output)
