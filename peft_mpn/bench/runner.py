"""The benchmark runner: edit seeded cases with one method and judge every language, before and after.

* **single-edit mode**: every edit starts from the base model (`editor.reset()` between edits) and is judged
  right after it;
* **sequential mode**: the edits are made one after another on the same model, then all are judged.

Every prompt is put in one prompt format (`peft_mpn.data.prompts`; by default the model family's, a
question-answer format a base model answers on one line) before editing and judging, and the results record it.
"Before" numbers come from the unedited model. Each probe is read twice: teacher-forced (argmax tokens on the
target) and generated (the greedy answer, exact match and whether it stops; locality: the first generated tokens
of the unrelated prompt unchanged). The cases not selected for editing give the editors their unrelated text
(MPN's memory, LAFN's KL term and generic-neuron reference). Judging is `peft_mpn.metrics.Judge`'s.
"""

from __future__ import annotations

import logging
import platform
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import EditRequest
from ..data.prompts import format_requests, resolve_prompt_format
from ..data.translation import Translator, resolve_translator, translate_requests, translator_name, with_versions
from ..editing.registry import check_method_options, editor_config, editor_spec
from ..metrics.generation import GenerationSettings
from ..metrics.judge import Judge, ordered_languages
from .checkpoint import StreamCheckpoint
from .curves import CurveSettings, curve_point, ranked_sample

logger = logging.getLogger(__name__)

_VERSIONED = ("peft-mpn", "torch", "transformers", "peft", "datasets", "evaluate", "tqdm")


def select_cases(num_cases: int, num_edits: int, seed: int, memory_cases: int = 0) -> tuple[list[int], list[int]]:
    """Seeded, disjoint indices: ``num_edits`` cases to edit (in editing order) and ``memory_cases`` others."""
    if num_edits < 1:
        raise ValueError(f"num_edits must be at least 1, got {num_edits}.")
    if num_edits > num_cases:
        raise ValueError(f"Asked for {num_edits} edits but the data has {num_cases} cases; lower --num-edits.")
    order = random.Random(seed).sample(range(num_cases), num_cases)
    return order[:num_edits], order[num_edits : num_edits + max(memory_cases, 0)]


def check_generation(requests: Sequence[EditRequest]) -> None:
    if not requests:
        raise ValueError("No cases to benchmark: the loaded data is empty.")
    if not requests[0].is_generation:
        raise ValueError(
            f"Case {requests[0].case_id!r} has a class label as its target: the benchmark scores causal LMs on "
            "generation cases (MzsRE, BMIKE-53, Bi-ZsRE). For XNLI / XFEVER edit a classifier instead "
            "(benchmarks/classifier_task.py, MPNEditor)."
        )


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
    adapter_options: Mapping[str, Any] | None = None,
    memory_cases: int = 25,
    batch_size: int = 16,
    judge_cache: str | Path | None = None,
    prompt_format: str | None = None,
    generation: GenerationSettings | None = GenerationSettings(),  # noqa: B008 - frozen, never mutated
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    curves: CurveSettings | None = None,
    judge_sample: int | None = None,
    shard: tuple[int, int] | None = None,
    translate_languages: Sequence[str] = (),
    translator: Translator | str | None = None,
    translation_cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Edit ``num_edits`` seeded cases of ``requests`` with ``method`` and judge them in every evaluated language.

    Args:
        model: the base model (it is wrapped in place by adapter-based editors).
        tokenizer: its tokenizer.
        requests: the loaded cases; their ``edit_language`` is the edit language.
        method: a name from `peft_mpn.editing.EDITORS`.
        num_edits: how many cases to edit.
        seed: the seed that selects them (and seeds the editor).
        sequential: edit them all in a row, then judge (default: each from the base model, judged right away).
        augment_languages: parallel versions the editor may train on (MPN's augmentation, LAFN's languages);
            the editor sees only the edit language and these.
        eval_languages: languages to judge (default: every language the cases carry); the edit language is
            always judged.
        config: the editor config (default: the method's, see `editor_config`); its language and seed
            fields are set for this run.
        layer: the block MPN / T-Patcher patch and FT-L / FT-M fine-tune (default: the last); refused for the
            other methods.
        adapter_options: fields of the adapter config the editor grows (MPN / T-Patcher: `MPNConfig`, e.g.
            ``{"activation": "ffn"}``); refused for the other methods.
        memory_cases: cases not selected for editing whose locality prompts fill the MPN memory / LAFN KL term.
        judge_cache: a folder that keeps the unedited model's judgements per case, so runs of other methods on the
            same model and cases skip them (about half of a run's judging).
        prompt_format: a name of `peft_mpn.data.PROMPT_FORMATS` or a template with `{prompt}`; None: the model
            family's (`"raw"` keeps the data's prompts as they are).
        generation: how generation is read beside teacher forcing (None: teacher-forced only).
        checkpoint: sequential mode: a file that keeps the stream's state every 10 edits (`StreamCheckpoint`); a
            rerun of the same run resumes from it without redoing finished edits, and it is removed at the end.
        checkpoint_every: save the checkpoint after every this many edits (and after the last).
        curves: sequential mode: measure the run every `CurveSettings.every` edits on a sample of the cases
            edited so far (`curve_point`); the points go to ``curve`` in the result.
        judge_sample: sequential mode: judge (before, on the curves and at the end) only this many of the edited
            cases, a seeded uniform sample (`ranked_sample`); every case is still edited. Judging a case in 8
            languages costs about twice an MPN edit on 2 CPU cores, so a 1,000-edit stream is judged on a sample.
        shard: ``(index, count)``, single mode: edit and judge only every ``count``-th selected case from the
            ``index``-th, and return the shard's rows (``merge_shards`` joins the shards of a run into its result,
            the same as one process's). Single edits do not depend on each other (`Editor.reset` also restarts
            the editor's random draws), so the shards can run in parallel processes.
        translate_languages: languages the editor trains on versions that `translator` writes from each edit
            (`peft_mpn.data.translation.translate_requests`, on the unedited model, before any edit), not on the
            data's own; judged on the data's versions and reported as their own group (`machine_translated`).
        translator: what writes them: a `Translator`, `"self"` (the model translates: `model_translator`) or a
            translation model's Hub id or folder (`hf_translator`).
        translation_cache: a JSON file that keeps the translations (`TranslationCache`), to review and reuse.

    Returns:
        A JSON-ready dict: ``metrics``, ``per_language`` and ``per_case`` (after; see
        `compute_cross_lingual_edit`), ``before`` (the same for the unedited model),
        ``counts``, ``edit_language``, ``languages``, ``augment_languages``, ``seen_languages``, ``unseen_languages``,
        ``edits`` (per edit: case_id, seconds, success, status, steps, patches_added), ``timing``, ``case_ids``,
        ``memory_case_ids``, ``curve`` (with `curves`), and ``judged_case_ids`` (with `judge_sample`).
    """
    if curves is not None and not sequential:
        raise ValueError("Curves measure a stream of edits: pass sequential=True (--sequential) with them.")
    if shard is not None and (sequential or not 0 <= shard[0] < shard[1]):
        raise ValueError(
            f"shard={shard!r}: shards split a single-edit run's cases (index < count); a stream is one process."
        )
    if judge_sample is not None and (not sequential or judge_sample < 1):
        raise ValueError(
            f"judge_sample={judge_sample!r}: a sample of the judged cases is for a stream (sequential=True) and must "
            "be at least 1; in single mode every edit is judged right after it (lower num_edits instead)."
        )
    check_generation(requests)
    template = resolve_prompt_format(prompt_format, model)
    raw, requests = requests, format_requests(requests, template)
    edit_language = requests[0].edit_language
    available = requests[0].languages
    languages = ordered_languages(eval_languages or available, edit_language)
    augment = [lang for lang in dict.fromkeys(augment_languages) if lang != edit_language]
    machine = [lang for lang in dict.fromkeys(translate_languages) if lang != edit_language]
    if (machine and translator is None) or set(machine) & set(augment):
        raise ValueError(
            f"translate_languages={machine} need a translator, and none of them in augment_languages={augment} "
            "(a trained version comes from the data or from the translator): pass translator=... and list each "
            "language once."
        )
    check_method_options(method, layer=layer, augment_languages=augment + machine, adapter_options=adapter_options)
    unknown = [lang for lang in [*languages, *augment] if lang not in available]
    if unknown:
        raise ValueError(f"Language(s) {unknown} are not in the data (it has {available}); load them or drop them.")
    edit_ids, memory_ids = select_cases(len(requests), num_edits, seed, memory_cases)
    all_edits = [requests[i] for i in edit_ids]
    edits = all_edits if shard is None else all_edits[shard[0] :: shard[1]]
    unrelated = [requests[i] for i in memory_ids]
    seen = [lang for lang in augment if lang in languages]
    written = {}
    if machine:  # from the edit-language version alone, before any edit changes the model (it may be the translator)
        alone = [raw[i].restricted_to([]) for i in edit_ids]
        translator = resolve_translator(translator, model, tokenizer)
        translated = translate_requests(alone, machine, translator, cache=translation_cache)
        written = {str(r.case_id): r for r in format_requests(translated, template)}

    torch.manual_seed(seed)
    judge = Judge(
        tokenizer,
        languages=languages,
        augment_languages=seen,
        machine_translated_languages=[lang for lang in machine if lang in languages],
        batch_size=batch_size,
        cache=judge_cache,
        generation=generation,
    )
    judged = edits if judge_sample is None else ranked_sample(edits, judge_sample, seed)
    judged_ids = None if judge_sample is None else {str(r.case_id) for r in judged}
    before_rows = judge.reference(model, judged, progress=progress)

    spec = editor_spec(method)
    training_languages = augment + machine  # the machine-written versions train like the data's
    config = editor_config(method, config).for_run(
        edit_language=edit_language, augment_languages=training_languages, seed=seed
    )
    config, kwargs = spec.editor_kwargs(config, layer, adapter_options)
    kwargs["progress"] = False
    if spec.other_facts is not None:
        kwargs.update(spec.other_facts(unrelated))
    editor = spec.build(model, tokenizer, config, **kwargs)
    if unrelated and editor.uses_unrelated_text:
        editor.add_unrelated_from_requests(unrelated)

    records: list[dict[str, Any]] = []
    after_rows: list[dict[str, Any]] = []
    editor.reset()
    stream = None
    if sequential and checkpoint is not None and not editor.supports_checkpoints:
        logger.warning("%s cannot checkpoint its stream yet: this run cannot be resumed if interrupted.", method)
    elif sequential and checkpoint is not None:
        run = {
            "method": method,
            "cases": [str(r.case_id) for r in edits],
            "memory_cases": [str(r.case_id) for r in unrelated],
            "seed": seed,
            "augment": augment,
            **({"translated": {"languages": machine, "by": translator_name(translator)}} if machine else {}),
            "config": config.to_dict(),
            "layer": layer,
            "adapter_options": dict(adapter_options or {}),
            "prompt_format": template,
        }
        if curves is not None:
            run["curves"] = asdict(curves)
        if judge_sample is not None:
            run["judge_sample"] = judge_sample
        stream = StreamCheckpoint(checkpoint, run, every=checkpoint_every)
        records = stream.load(editor)
    curve: list[dict[str, Any]] = list(stream.curve) if stream is not None else []
    mode = "sequential" if sequential else "single"
    bar = tqdm(edits[len(records) :], f"{method} ({mode})", len(edits), initial=len(records), disable=not progress)
    for request in bar:
        if not sequential:
            editor.reset()
        start = time.perf_counter()
        trained = request.restricted_to(augment)
        result = editor.edit(with_versions(trained, written[str(request.case_id)]) if machine else trained)
        seconds = time.perf_counter() - start
        records.append(
            {
                "case_id": str(request.case_id),
                "seconds": seconds,
                "success": result.success,
                "status": result.status,
                "steps": result.steps,
                "patches_added": result.patches_added,
            }
        )
        bar.set_postfix(s=f"{seconds:.1f}", ok=result.success)
        if not sequential:
            after_rows += judge.rows(editor.model, request)
            continue
        if curves is not None and curves.due(len(records), len(edits)):
            point, rows = curve_point(editor, judge, edits[: len(records)], records, curves, seed, judged_ids)
            curve.append(point)
            if len(records) == len(edits) and len(point["judged_cases"]) == len(judged):
                after_rows = rows  # the last point judged every judged case: that is the result
        if stream is not None and stream.due(len(records), len(edits)):
            stream.save(editor, records, curve)
    if sequential and not after_rows:
        for request in tqdm(judged, desc="judging", disable=not progress):
            after_rows += judge.rows(editor.model, request)
    editor.reset()
    if stream is not None:
        stream.remove()

    run = {
        "method": method,
        "mode": mode,
        "model_path": getattr(model, "name_or_path", None),
        "edit_language": edit_language,
        "languages": languages,
        "augment_languages": augment,
        "seen_languages": seen,
        **({"machine_translated_languages": machine, "translator": translator_name(translator)} if machine else {}),
        "num_edits": num_edits,
        "seed": seed,
        "case_ids": [str(r.case_id) for r in all_edits],
        "memory_case_ids": [str(r.case_id) for r in unrelated],
        "editor_config": config.to_dict(),
        "adapter_options": dict(adapter_options or {}),
        "prompt_format": template,
        "generation": None if generation is None else asdict(generation),
        **({"curve": curve, "curve_settings": asdict(curves)} if curves is not None else {}),
        **({"judged_case_ids": [str(r.case_id) for r in judged]} if judge_sample is not None else {}),
    }
    if shard is not None:
        rows = {"records": records, "before_rows": before_rows, "after_rows": after_rows}
        return {"shard": list(shard), "run": run, **rows}
    return assemble_result(run, records, before_rows, after_rows)


def merge_shards(shards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The result of a single-edit run from its shards (`run_benchmark(..., shard=(i, n))` for every i < n): the
    same edits, rows and scores, in the same order, as the run in one process."""
    counts = {shard["shard"][1] for shard in shards}
    indices = sorted(shard["shard"][0] for shard in shards)
    if len(counts) != 1 or indices != list(range(len(shards))) or len(shards) != counts.pop():
        raise ValueError(f"Shards {indices} do not make up one run: give each shard of it exactly once.")
    run = shards[0]["run"]
    position = {case_id: i for i, case_id in enumerate(run["case_ids"])}

    def ordered(key: str) -> list[dict[str, Any]]:  # a stable sort: a case's own rows keep their order
        return sorted((row for shard in shards for row in shard[key]), key=lambda row: position[row["case_id"]])

    return assemble_result(run, ordered("records"), ordered("before_rows"), ordered("after_rows"))


def assemble_result(
    run: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    before_rows: Sequence[Mapping[str, Any]],
    after_rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A run's result (see `run_benchmark`) from its settings, edit records and the judge's rows."""
    machine = [lang for lang in run.get("machine_translated_languages", ()) if lang in run["languages"]]
    judge = Judge(
        None, languages=run["languages"], augment_languages=run["seen_languages"], machine_translated_languages=machine
    )
    judge.edit_language = run["edit_language"]
    after = judge.scores(after_rows)
    before = judge.scores(before_rows)
    seconds = [r["seconds"] for r in records]
    successes = [r["success"] for r in records]
    return {
        "method": run["method"],
        "mode": run["mode"],
        "model_path": run["model_path"],
        "metrics": _overall(after),
        "per_language": after["per_language"],
        "counts": after["counts"],
        "before": {
            "metrics": _overall(before),
            "per_language": before["per_language"],
            "per_case": before["per_case"],
        },
        "per_case": after["per_case"],
        "edit_language": run["edit_language"],
        "languages": run["languages"],
        "augment_languages": run["augment_languages"],
        "seen_languages": run["seen_languages"],
        **{key: run[key] for key in ("machine_translated_languages", "translator") if key in run},
        "unseen_languages": after["unseen_languages"],
        "edits": list(records),
        "timing": {
            "seconds_per_edit_mean": statistics.fmean(seconds),
            "seconds_per_edit_median": statistics.median(seconds),
            "seconds_total": sum(seconds),
            "success_rate": statistics.fmean(successes),
        },
        **{key: run[key] for key in ("num_edits", "seed", "case_ids", "memory_case_ids", "editor_config")},
        **{key: run[key] for key in ("adapter_options", "prompt_format", "generation")},
        "generations": {"before": generated_texts(before_rows), "after": generated_texts(after_rows)},
        **{key: run[key] for key in ("curve", "curve_settings", "judged_case_ids") if key in run},
    }


def generated_texts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the model generated on each judged prompt, for reading by eye: one record per generated row."""
    return [
        {"case_id": row["case_id"], "language": row["language"], "probe": row["probe"], **row["generated"]}
        for row in rows
        if "generated" in row
    ]


def _overall(result: Mapping[str, Any]) -> dict[str, Any]:
    keep = (
        "per_language",
        "counts",
        "edit_language",
        "augment_languages",
        "machine_translated_languages",
        "unseen_languages",
    )
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
