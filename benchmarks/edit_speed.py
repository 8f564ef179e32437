"""Edit latency, memory and inference overhead of the MPN editor on the real model, in one run.

Measures, on MzsRE edits made in English with MPN's cross-lingual augmentation:

1. seconds per edit (median, p10/p90, mean; wall and CPU time), steps per edit and seconds per step for four
   editor configurations: ``cached`` (prefix cache + candidate vocabulary, the default), ``no-prefix-cache``,
   ``full-vocab`` and ``baseline`` (both off). Every edit starts from a fresh adapter, the same memory bank and
   the same seed; configurations are interleaved case by case so that load drift hits them alike. The slow
   configurations run on the first ``--slow-edits`` cases only and every ratio is taken on shared cases;
2. peak RSS while editing and the size of the memory bank;
3. forward (8 x 32 tokens) and ``generate`` (16 new tokens) latency with the edits' patches vs the unedited
   base;
4. that prefix caching is exact: the same status and steps, and close patches, with and without it.

Run from the repository root::

    HF_HUB_OFFLINE=1 python benchmarks/edit_speed.py --output results/edit_speed.json

The Markdown summary goes to stdout and next to the JSON (``results/edit_speed.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# With more runnable threads than cores (a shared machine), OpenMP's default spin-waiting made a Gemma-3-270M
# forward 4-5x slower with 2 threads than with 1; passive waiting keeps it at the 1-thread speed or better.
# Set OMP_WAIT_POLICY=ACTIVE in the environment to measure the default behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import psutil  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "../shared/data/mzsre"


@dataclass(frozen=True)
class EditorVariant:
    name: str
    prefix_cache: bool
    vocab_candidates: int | None


VARIANTS = [
    EditorVariant("cached", True, 512),
    EditorVariant("no-prefix-cache", False, 512),
    EditorVariant("full-vocab", True, None),
    EditorVariant("baseline", False, None),
]
REFERENCE = "cached"
#: Pairs that differ only in prefix caching, which is supposed to change nothing but speed.
EXACTNESS_PAIRS = [("cached", "no-prefix-cache"), ("full-vocab", "baseline")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model name or path (default: the offline Gemma-3-270M).")
    parser.add_argument(
        "--data", default=None, help=f"MzsRE folder (default: {DEFAULT_DATA} relative to the repository root)."
    )
    parser.add_argument("--num-edits", type=int, default=20, help="Timed edits: MzsRE cases 0..N-1.")
    parser.add_argument(
        "--slow-edits",
        type=int,
        default=5,
        help="Run the configurations other than 'cached' on the first K cases only (K >= N: all of them).",
    )
    parser.add_argument("--layer", type=int, default=-1, help="Block whose FFN is patched (negative: from the end).")
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--max-steps", type=int, default=None, help="Step budget per edit (default: the editor's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-start", type=int, default=400, help="First MzsRE case of the memory bank.")
    parser.add_argument("--memory-cases", type=int, default=50, help="Cases whose locality prompts form the memory.")
    parser.add_argument(
        "--overhead-edits",
        type=int,
        default=20,
        help="Edits whose patches the inference-overhead measurement carries (0: skip that part).",
    )
    parser.add_argument(
        "--overhead-source",
        choices=["latency", "sequential"],
        default="latency",
        help="'latency': stack the patches the timed 'cached' edits learned (no extra training; forward cost "
        "depends only on the number of patches); 'sequential': run that many fresh sequential edits.",
    )
    parser.add_argument("--repeats", type=int, default=20, help="Repeats of each forward timing (median).")
    parser.add_argument("--generate-repeats", type=int, default=10, help="Repeats of each generate timing.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    parser.add_argument("--output", default="results/edit_speed.json", help="JSON path; the .md goes next to it.")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.num_edits < 1:
        parser.error("--num-edits must be at least 1.")
    if args.num_edits > args.memory_start:
        parser.error("The edited cases must stay apart from the memory cases: --num-edits <= --memory-start.")
    args.slow_edits = max(1, min(args.slow_edits, args.num_edits))
    return args


# -- measuring helpers ---------------------------------------------------------------------------------------
class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the largest value seen since ``reset``."""

    def __init__(self, interval: float = 0.01) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        return self.process.memory_info().rss

    def reset(self) -> int:
        now = self.current()
        self.peak = now
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20


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
    return {
        "median": statistics.median(values),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using CPU right now (the timings share the machine with them)."""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            load = p.cpu_percent(None)
            if load >= threshold:
                busy.append(f"{p.info['name']} (pid {p.pid}): {load:.0f}% CPU, {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            pass
    return busy


def machine_info(threads: int) -> dict[str, Any]:
    import peft
    import transformers

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_threads_requested": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "memory_total_mb": round(mb(psutil.virtual_memory().total)),
        "load_average_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "other_busy_processes": busy_processes(),
    }


# -- the benchmark -------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from peft import get_peft_model

        from peft_mpn import MPNConfig
        from peft_mpn.data.loaders import load_mzsre
        from peft_mpn.editing import MPNEditor, MPNEditorConfig
        from peft_mpn.models import load_model

        self.args = args
        self.MPNConfig, self.MPNEditor, self.MPNEditorConfig = MPNConfig, MPNEditor, MPNEditorConfig
        self.languages = ["en", *[lang for lang in args.augment_languages if lang != "en"]]
        data = Path(args.data) if args.data else REPO_ROOT / DEFAULT_DATA
        self.requests = load_mzsre(data, languages=self.languages, limit=args.num_edits, start=0)
        self.memory_requests = load_mzsre(
            data, languages=self.languages, limit=args.memory_cases, start=args.memory_start
        )
        self.warmup_request = load_mzsre(
            data, languages=self.languages, limit=1, start=args.memory_start + args.memory_cases
        )[0]
        self.rss = PeakRSS()
        started = time.perf_counter()
        base, self.tokenizer = load_model(args.model, progress=not args.no_progress)
        self.load_seconds = time.perf_counter() - started
        self.rss_after_load = self.rss.current()
        self.adapter_count = 0
        self.model = get_peft_model(base, self._adapter_config(), adapter_name=self._next_adapter_name())
        self.model.eval()

        # The memory bank, built once (the edited cases are disjoint from the memory cases).
        editor = self._editor(self.MPNEditorConfig(**self._editor_kwargs(VARIANTS[0])))
        started = time.perf_counter()
        editor.add_unrelated_from_requests(self.memory_requests)
        self.memory_seconds = time.perf_counter() - started
        self.memory = editor.memory
        self.layer_name = editor.layer_name
        vectors = self.memory.vectors
        self.memory_info = {
            "cases": f"{args.memory_start}..{args.memory_start + args.memory_cases - 1}",
            "languages": self.languages,
            "texts": sum(1 for r in self.memory_requests for v in r.views.values() if v.locality_prompt),
            "vectors": len(self.memory),
            "dim": int(vectors.shape[1]),
            "mb": mb(vectors.numel() * vectors.element_size()),
            "build_seconds": self.memory_seconds,
        }

    # -- adapters and editors --------------------------------------------------------------------------------
    def _adapter_config(self):
        return self.MPNConfig(layers_to_transform=[self.args.layer])

    def _next_adapter_name(self) -> str:
        self.adapter_count += 1
        return f"bench{self.adapter_count}"

    def fresh_adapter(self) -> str:
        """Replace the adapter with a new, empty one: every edit starts from the base model's state."""
        old = self.model.active_adapter
        name = self._next_adapter_name()
        self.model.add_adapter(name, self._adapter_config())
        self.model.set_adapter(name)
        self.model.delete_adapter(old)
        assert self.model.base_model.num_patches(name) == 0
        return name

    def _editor_kwargs(self, variant: EditorVariant) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "augment_languages": self.languages[1:],
            "prefix_cache": variant.prefix_cache,
            "vocab_candidates": variant.vocab_candidates,
            "seed": self.args.seed,
        }
        if self.args.max_steps is not None:
            kwargs["max_steps"] = self.args.max_steps
        return kwargs

    def _editor(self, config, adapter_name: str | None = None):
        return self.MPNEditor(self.model, self.tokenizer, config, adapter_name=adapter_name, progress=False)

    def editor_for(self, variant: EditorVariant, **overrides: Any):
        """A fresh adapter, a fresh editor (fresh seed) and a copy of the shared memory bank."""
        config = self.MPNEditorConfig(**{**self._editor_kwargs(variant), **overrides})
        editor = self._editor(config, self.fresh_adapter())
        editor.memory = copy.deepcopy(self.memory)
        return editor

    # -- 1. edit latency -------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """One short edit per configuration, untimed: lazy initialisation out of the way."""
        for variant in VARIANTS:
            self.editor_for(variant, max_steps=2).edit(self.warmup_request)

    def one_edit(self, variant: EditorVariant, request) -> tuple[dict[str, Any], Any]:
        editor = self.editor_for(variant)
        before = self.rss.reset()
        cpu = time.process_time()
        result = editor.edit(request)
        cpu = time.process_time() - cpu
        peak = self.rss.peak
        patches = editor.layer.patches(editor.adapter_name)
        patches = tuple(t.detach().clone() for t in (patches.keys, patches.bias, patches.values))
        record = {
            "case": request.case_id,
            "status": result.status,
            "steps": result.steps,
            "patches": result.patches_added,
            "seconds": result.seconds,
            "cpu_seconds": cpu,
            "seconds_per_step": result.seconds / result.steps if result.steps else None,
            "fixed_languages": result.fixed_languages,
            "losses": result.losses,
            "rss_before_mb": mb(before),
            "rss_peak_mb": mb(peak),
            "rss_delta_mb": mb(peak - before),
            "load_average": os.getloadavg()[0],
        }
        return record, patches

    def latency(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
        args = self.args
        plan = [
            (i, variant)
            for i in range(args.num_edits)
            for variant in VARIANTS
            if variant.name == REFERENCE or i < args.slow_edits
        ]
        records: dict[str, list[dict[str, Any]]] = {v.name: [] for v in VARIANTS}
        patches: dict[str, list[Any]] = {v.name: [] for v in VARIANTS}
        bar = tqdm(plan, desc="edits", disable=args.no_progress, dynamic_ncols=True)
        for i, variant in bar:
            bar.set_postfix(case=i, config=variant.name)
            record, learned = self.one_edit(variant, self.requests[i])
            records[variant.name].append(record)
            patches[variant.name].append(learned)
            tqdm.write(
                f"case {i:>3} {variant.name:<16} {record['status']:<8} steps={record['steps']:>4} "
                f"patches={record['patches']} {record['seconds']:8.2f} s (cpu {record['cpu_seconds']:.2f} s, "
                f"load {record['load_average']:.1f})",
                file=sys.stderr,
            )
            self.checkpoint({"partial_edits": records})
        return records, patches

    # -- 3. inference overhead -------------------------------------------------------------------------------
    def fixed_batch(self, rows: int = 8, length: int = 32) -> dict[str, torch.Tensor]:
        """``rows`` x ``length`` tokens of real, unrelated text (MzsRE prompts past the memory cases)."""
        from peft_mpn.data.loaders import load_mzsre

        data = Path(self.args.data) if self.args.data else REPO_ROOT / DEFAULT_DATA
        start = self.args.memory_start + self.args.memory_cases + 1
        texts = [r.edit.prompt for r in load_mzsre(data, languages=["en"], limit=200, start=start)]
        ids = self.tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"]
        needed = rows * (length - 1)
        if len(ids) < needed:
            raise RuntimeError(f"Not enough text for a {rows}x{length} batch.")
        body = torch.tensor(ids[:needed]).view(rows, length - 1)
        bos = self.tokenizer.bos_token_id
        first = torch.full((rows, 1), bos if bos is not None else body[0, 0].item())
        input_ids = torch.cat([first, body], dim=1)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def overhead_adapter(self, patches: list[Any]) -> tuple[str, int, str]:
        args = self.args
        count = min(args.overhead_edits, args.num_edits) if args.overhead_source == "latency" else args.overhead_edits
        if args.overhead_source == "latency":
            name = self.fresh_adapter()
            from peft_mpn.tuners.mpn import PatchSet

            for keys, bias, values in patches[:count]:
                if len(keys):
                    self.model.base_model.add_patches(self.layer_name, PatchSet(keys, bias, values), name)
            how = f"patches of the first {count} timed '{REFERENCE}' edits, stacked on one fresh adapter"
        else:
            from peft_mpn.data.loaders import load_mzsre

            data = Path(args.data) if args.data else REPO_ROOT / DEFAULT_DATA
            requests = load_mzsre(data, languages=self.languages, limit=count, start=0)
            editor = self.editor_for(VARIANTS[0])
            name = editor.adapter_name
            for request in tqdm(requests, desc="sequential edits", disable=args.no_progress):
                editor.edit(request)
            how = f"{count} sequential '{REFERENCE}' edits (MzsRE cases 0..{count - 1}) on one fresh adapter"
        return name, self.model.base_model.num_patches(name), how

    def time_calls(self, calls: dict[str, Any], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
        """Alternate the calls (A B A B ...) so that load drift hits them alike."""
        times: dict[str, list[float]] = {name: [] for name in calls}
        for round_ in range(warmup + repeats):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                elapsed = time.perf_counter() - started
                if round_ >= warmup:
                    times[name].append(elapsed)
        return times

    def inference_overhead(self, patches: list[Any]) -> dict[str, Any]:
        args = self.args
        name, num_patches, how = self.overhead_adapter(patches)
        batch = self.fixed_batch()
        model = self.model
        pad = self.tokenizer.pad_token_id

        def forward(enabled: bool) -> Any:
            def run() -> torch.Tensor:
                with torch.no_grad():
                    if enabled:
                        return model(**batch).logits
                    with model.disable_adapter():
                        return model(**batch).logits

            return run

        def generate(enabled: bool) -> Any:
            def run() -> torch.Tensor:
                kwargs = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=pad)
                with torch.no_grad():
                    if enabled:
                        return model.generate(**batch, **kwargs)
                    with model.disable_adapter():
                        return model.generate(**batch, **kwargs)

            return run

        forward_times = self.time_calls({"base": forward(False), "edited": forward(True)}, args.repeats)
        generate_times = self.time_calls(
            {"base": generate(False), "edited": generate(True)}, args.generate_repeats, warmup=1
        )
        with torch.no_grad():
            base_logits, edited_logits = forward(False)(), forward(True)()
            base_tokens, edited_tokens = generate(False)(), generate(True)()
        new = batch["input_ids"].shape[1]
        result: dict[str, Any] = {
            "adapter": how,
            "patches": num_patches,
            "batch": list(batch["input_ids"].shape),
            "generate_new_tokens": 16,
            "forward_repeats": args.repeats,
            "generate_repeats": args.generate_repeats,
            "forward_argmax_agreement": float((base_logits.argmax(-1) == edited_logits.argmax(-1)).float().mean()),
            "generated_tokens_agreement": float((base_tokens[:, new:] == edited_tokens[:, new:]).float().mean()),
        }
        for label, times in (("forward", forward_times), ("generate", generate_times)):
            base, edited = statistics.median(times["base"]), statistics.median(times["edited"])
            result[label] = {
                "base_seconds": summarise(times["base"]),
                "edited_seconds": summarise(times["edited"]),
                "ratio_median": edited / base,
            }
        return result

    # -- output ----------------------------------------------------------------------------------------------
    def checkpoint(self, payload: dict[str, Any]) -> None:
        path = Path(self.args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.json")
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def variant_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
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


def markdown(report: dict[str, Any]) -> str:
    args = report["args"]
    machine = report["machine"]
    lines = [
        "# MPN edit speed",
        "",
        f"Model `{report['model']}`, patch layer {report['layer']}, MzsRE edits in English with augmentation "
        f"{' '.join(args['augment_languages'])}; step budget {report['max_steps']}; seed {args['seed']}. "
        f"{machine['cpu_count']} cores ({machine['cpu_model']}), torch {machine['torch']} with "
        f"{machine['torch_threads']} threads; load average {machine['load_average_start'][0]:.1f} at start, "
        f"{report['load_average_end'][0]:.1f} at the end (mean over the edits {report['load_average_edits']:.1f}); "
        f"OMP_WAIT_POLICY={machine['omp_wait_policy']}.",
        "",
        *[f"- busy at start: {p}" for p in machine["other_busy_processes"]],
        *[f"- busy at end: {p}" for p in report["other_busy_processes_end"]],
        "",
        f"`cached` ran on cases 0..{args['num_edits'] - 1}; the other configurations on cases "
        f"0..{args['slow_edits'] - 1} only (`--slow-edits {args['slow_edits']}`). Ratios are on shared cases.",
        "",
        "| config | prefix cache | vocab | edits | median s/edit | p10 | p90 | mean | median CPU s | steps mean "
        "(median) | s/step | edited/unfixed/skipped | peak RSS MB (Δ median) | × vs cached | baseline ÷ this |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        s = report["configs"][variant.name]
        r = report["ratios"][variant.name]
        vs_cached = r.get("vs_cached", {}).get("median_seconds_ratio")
        vs_base = r.get("vs_baseline", {}).get("median_seconds_ratio")
        status = s["status"]
        lines.append(
            f"| {variant.name} | {'on' if variant.prefix_cache else 'off'} | "
            f"{variant.vocab_candidates if variant.vocab_candidates else 'full'} | {s['edits']} | "
            f"{s['seconds']['median']:.1f} | {s['seconds']['p10']:.1f} | {s['seconds']['p90']:.1f} | "
            f"{s['seconds']['mean']:.1f} | {s['cpu_seconds']['median']:.1f} | "
            f"{s['steps']['mean']:.0f} ({s['steps']['median']:.0f}) | "
            f"{s['total_seconds_per_step']:.2f} | {status['edited']}/{status['unfixed']}/{status['skipped']} | "
            f"{s['rss_peak_mb']:.0f} ({s['rss_delta_mb']['median']:+.0f}) | "
            f"{'1.00' if vs_cached is None else f'{vs_cached:.2f}'} | "
            f"{'1.00' if vs_base is None else f'{1 / vs_base:.2f}'} |"
        )
    lines += [
        "",
        "× vs cached / baseline ÷ this: ratios of median seconds per edit on the shared cases. "
        "s/step: total seconds ÷ total steps (includes the per-edit setup).",
        "",
        "Per-step time ratios on shared cases: "
        + ", ".join(
            f"{name} {report['ratios'][name]['vs_cached']['seconds_per_step_ratio']:.2f}× cached"
            for name in report["ratios"]
            if "vs_cached" in report["ratios"][name] and report["ratios"][name]["vs_cached"]["seconds_per_step_ratio"]
        )
        + ".",
        "",
    ]
    mem = report["memory"]
    lines += [
        f"**Memory.** Memory bank: {mem['bank']['vectors']} vectors × {mem['bank']['dim']} "
        f"({mem['bank']['mb']:.1f} MB) from {mem['bank']['texts']} locality prompts of MzsRE cases "
        f"{mem['bank']['cases']}, built in {mem['bank']['build_seconds']:.1f} s. RSS after loading the model "
        f"{mem['rss_after_load_mb']:.0f} MB; peak RSS of the process {mem['ru_maxrss_mb']:.0f} MB.",
        "",
    ]
    exact = report["exactness"]
    if exact:
        lines += [
            "**Prefix caching exactness** (same seed, same case):",
            "",
            "| pair | case | status | steps | patches | same | max abs Δ patch | max abs patch |",
            "|---|---|---|---|---|---|---:|---:|",
        ]
        for c in exact:
            diff = "shape differs" if c["max_abs_patch_diff"] is None else f"{c['max_abs_patch_diff']:.2e}"
            lines.append(
                f"| {c['pair']} | {c['case']} | {'/'.join(c['status'])} | {c['steps'][0]}/{c['steps'][1]} | "
                f"{c['patches'][0]}/{c['patches'][1]} | {'yes' if c['same_status_steps_patches'] else '**no**'} | "
                f"{diff} | {c['max_abs_patch_value']:.2f} |"
            )
        lines.append("")
    over = report.get("inference_overhead")
    if over:
        lines += [
            f"**Inference overhead** ({over['patches']} patches: {over['adapter']}; batch "
            f"{over['batch'][0]}×{over['batch'][1]} tokens):",
            "",
            "| call | base median s | edited median s | edited ÷ base |",
            "|---|---:|---:|---:|",
        ]
        for label, title in (
            ("forward", f"forward ({over['forward_repeats']} repeats)"),
            ("generate", f"generate 16 tokens ({over['generate_repeats']} repeats)"),
        ):
            o = over[label]
            lines.append(
                f"| {title} | {o['base_seconds']['median']:.3f} | {o['edited_seconds']['median']:.3f} | "
                f"{o['ratio_median']:.3f} |"
            )
        lines += [
            "",
            f"Edited vs base agreement on this unrelated text: argmax {over['forward_argmax_agreement']:.3f}, "
            f"generated tokens {over['generated_tokens_agreement']:.3f}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    machine = machine_info(args.threads)
    started = time.perf_counter()
    bench = Bench(args)
    bench.warm_up()
    records, patches = bench.latency()
    overhead = bench.inference_overhead(patches[REFERENCE]) if args.overhead_edits > 0 else None
    max_steps = args.max_steps or bench.MPNEditorConfig().max_steps
    report = {
        "args": vars(args),
        "model": bench.model.get_base_model().config.name_or_path,
        "layer": bench.layer_name,
        "max_steps": max_steps,
        "machine": machine,
        "load_seconds": bench.load_seconds,
        "configs": {name: variant_summary(rows) for name, rows in records.items()},
        "ratios": ratios_on_shared_cases(records),
        "exactness": exactness(records, patches),
        "memory": {
            "bank": bench.memory_info,
            "rss_after_load_mb": mb(bench.rss_after_load),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "inference_overhead": overhead,
        "edits": records,
        "load_average_end": os.getloadavg(),
        "other_busy_processes_end": busy_processes(),
        "load_average_edits": statistics.fmean(r["load_average"] for rows in records.values() for r in rows),
        "total_seconds": time.perf_counter() - started,
    }
    bench.rss.close()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    output.with_suffix(".md").write_text(table + "\n")
    partial = output.with_suffix(".partial.json")
    if partial.exists():
        partial.unlink()
    print(table)
    return report


if __name__ == "__main__":
    main()
