"""`peft-mpn bench`: load the data and the model, run the benchmark, write the results."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import data as edit_data
from .. import models
from ..data import EditRequest
from ..data.prompts import resolve_prompt_format
from ..editing.registry import DEFAULT_AUGMENT, check_method_options, editor_config, editor_spec
from ..metrics.generation import GenerationSettings
from .curves import CurveSettings
from .report import write_results
from .runner import check_generation, merge_shards, package_versions, run_benchmark


def bench(
    *,
    method: str,
    dataset: str,
    data: str | Path,
    output: str | Path,
    split: str | None = None,
    model_name: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    edit_language: str = "en",
    augment_languages: Sequence[str] | None = None,
    eval_languages: Sequence[str] | None = None,
    num_edits: int = 100,
    seed: int = 0,
    sequential: bool = False,
    layer: int | None = None,
    editor_overrides: Mapping[str, Any] | None = None,
    adapter_overrides: Mapping[str, Any] | None = None,
    memory_cases: int = 25,
    batch_size: int = 16,
    judge_cache: str | Path | None = None,
    prompt_format: str | None = None,
    generation: bool = True,
    locality_tokens: int = 16,
    curve_every: int | None = None,
    curve_sample: int = 50,
    judge_sample: int | None = None,
    num_processes: int = 1,
    translate_languages: Sequence[str] = (),
    translator: str = "self",
    translation_cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """`peft-mpn bench`: load the data and the model, `run_benchmark`, `write_results`.

    `augment_languages=None` is `DEFAULT_AUGMENT` (de fr es ru zh, where the data has them) for the methods
    that augment by default (MPN, LAFN) and none for the others. The model is loaded in `dtype` (a torch dtype
    name) and moved to `device`. `num_processes > 1` splits a single-edit run's cases over that many processes,
    each with its own model (`run_in_processes`). `translate_languages` are trained on versions `translator` writes
    (`"self"`: the model; or a translation model's id or folder), kept in `translation_cache` (default: next to
    `output`, `.translations.json`). Returns the written paths (`json`, `markdown`, `plot`).
    """
    if num_processes < 1 or (num_processes > 1 and sequential):
        raise ValueError(
            f"--num-processes {num_processes}: it splits a single-edit run's cases over processes (at least 1); a "
            "stream (--sequential) is one process. Drop one of the two."
        )
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"--dtype must name a floating-point torch dtype (float32, bfloat16, float16): {dtype!r}.")
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device!r} is not a device name ({exc}); e.g. cpu, cuda, cuda:1.") from None
    gpus = torch.cuda.device_count() if torch_device.type == "cuda" else 0
    if torch_device.type == "cuda" and (torch_device.index or 0) >= gpus:
        raise ValueError(f"--device {device}: torch sees {gpus} CUDA device(s). Use --device cpu or a lower index.")
    spec = editor_spec(method)
    curves = None if curve_every is None else CurveSettings(every=curve_every, sample=curve_sample)
    if curves is not None and not sequential:
        raise ValueError("--curve-every measures a stream of edits: add --sequential.")
    if judge_sample is not None and not sequential:
        raise ValueError("--judge-sample judges a sample of a stream's edits: add --sequential, or lower --num-edits.")
    if Path(output).suffix != ".json":
        raise ValueError(f"--output must be a .json path (the .md and .png go next to it), got {output}.")
    if split is not None and "split" not in edit_data.dataset_options(dataset):
        raise ValueError(f"--split selects a split of the data; {dataset} has none. Drop --split.")
    config = editor_config(method, None, **dict(editor_overrides or {}))  # bad options fail before any loading
    check_method_options(
        method,
        layer=layer,
        adapter_options=adapter_overrides,
        augment_languages=[a for a in [*(augment_languages or []), *translate_languages] if a != edit_language],
    )
    settings = GenerationSettings(locality_tokens=locality_tokens) if generation else None
    if prompt_format not in (None, "family"):
        resolve_prompt_format(prompt_format)  # a bad template fails before any loading
    if importlib.util.find_spec("matplotlib") is None:  # checked now, not after hours of editing
        raise ModuleNotFoundError("peft-mpn bench draws its plot with matplotlib: pip install matplotlib.")
    kwargs: dict[str, Any] = {} if split is None else {"split": split}
    if eval_languages is not None:
        wanted = [edit_language, *(augment_languages or []), *eval_languages]
        kwargs["languages"] = list(dict.fromkeys(wanted))
    requests = edit_data.load_edit_requests(data, dataset, **kwargs)
    check_generation(requests)  # before the model is loaded
    if edit_language != "en":  # the loaders edit in English; re-root each case on the requested language
        missing = [r.case_id for r in requests if edit_language not in r.views]
        if missing:
            raise ValueError(f"{len(missing)} cases have no {edit_language!r} version; pick another --edit-language.")
        requests = [EditRequest(views=r.views, edit_language=edit_language, case_id=r.case_id) for r in requests]
    if augment_languages is None:
        available = requests[0].languages if requests else []
        augment_languages = [lang for lang in DEFAULT_AUGMENT if lang in available] if spec.augments_by_default else []

    started = time.time()
    run_settings = dict(
        method=method,
        num_edits=num_edits,
        seed=seed,
        sequential=sequential,
        augment_languages=augment_languages,
        eval_languages=eval_languages,
        config=config,
        layer=layer,
        adapter_options=adapter_overrides,
        memory_cases=memory_cases,
        batch_size=batch_size,
        judge_cache=judge_cache,
        prompt_format=prompt_format,
        generation=settings,
        checkpoint=Path(output).with_suffix(".checkpoint.pt") if sequential else None,
        curves=curves,
        judge_sample=judge_sample,
        translate_languages=list(translate_languages),
        translator=translator if translate_languages else None,
        translation_cache=translation_cache or Path(output).with_suffix(".translations.json"),
    )
    load = (model_name, torch_dtype, str(torch_device))
    if num_processes > 1:
        results = run_in_processes(num_processes, load, requests, run_settings, progress=progress)
    else:
        model, tokenizer = load_placed(*load, progress=progress)
        results = run_benchmark(model, tokenizer, requests, **run_settings, progress=progress)
    results = {
        **results,
        "dataset": dataset,
        "split": split,
        "data": str(data),
        "model": model_name or "gemma-3-270m",
        "arguments": {
            "method": method,
            "dataset": dataset,
            "data": str(data),
            "split": split,
            "model": model_name,
            "device": str(torch_device),
            "dtype": dtype,
            "edit_language": edit_language,
            "augment_languages": list(augment_languages),
            "eval_languages": None if eval_languages is None else list(eval_languages),
            "num_edits": num_edits,
            "seed": seed,
            "sequential": sequential,
            "layer": layer,
            "editor_overrides": dict(editor_overrides or {}),
            "adapter_overrides": dict(adapter_overrides or {}),
            "memory_cases": memory_cases,
            "batch_size": batch_size,
            "prompt_format": prompt_format,
            "generation": generation,
            "locality_tokens": locality_tokens,
            "curve_every": curve_every,
            "curve_sample": curve_sample,
            "judge_sample": judge_sample,
            "num_processes": num_processes,
            "translate_languages": list(translate_languages),
            "translator": translator if translate_languages else None,
        },
        "versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": time.time() - started,
    }
    return write_results(results, output)


def load_placed(model_name: str | None, dtype: torch.dtype, device: str, *, progress: bool) -> tuple[Any, Any]:
    """`load_model` in `dtype`, moved to `device`."""
    model, tokenizer = models.load_model(model_name, dtype=dtype, progress=progress)
    return model.to(device), tokenizer


def run_in_processes(
    count: int,
    load: tuple[str | None, torch.dtype, str],
    requests: Sequence[EditRequest],
    settings: Mapping[str, Any],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """`run_benchmark` of a single-edit run split over `count` processes (`shard=(i, count)`), merged into the
    result one process gives (`merge_shards`). Each process loads its own model and takes an equal share of the
    torch threads; with several GPUs, process i runs on GPU i (mod their number)."""
    import multiprocessing

    model_name, dtype, device = load
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    threads = max(1, torch.get_num_threads() // count)
    jobs = [
        (index, count, model_name, dtype, f"cuda:{index % gpus}" if gpus > 1 else device, threads, requests, settings)
        for index in range(count)
    ]
    with multiprocessing.get_context("spawn").Pool(count) as pool:
        shards = pool.starmap(_run_shard, [(*job, progress and job[0] == 0) for job in jobs])
    return merge_shards(shards)


def _run_shard(
    index: int,
    count: int,
    model_name: str | None,
    dtype: torch.dtype,
    device: str,
    threads: int,
    requests: Sequence[EditRequest],
    settings: Mapping[str, Any],
    progress: bool,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    model, tokenizer = load_placed(model_name, dtype, device, progress=False)
    return run_benchmark(model, tokenizer, requests, **settings, shard=(index, count), progress=progress)
