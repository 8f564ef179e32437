"""Where an MPN edit's seconds go, phase by phase, on BMIKE-53 CounterFact with the bench's settings.

`edit_times.py` gives each edit's total; this script times the phases inside `MPNEditor._train` by wrapping them
(the prefix-cache pass, the after-answer generation, the neighbour questions, the warm start, the patched forward
passes of the training steps and checks, the subject-gate fit and its own passes), so a change can be aimed at the
phase that costs. The same cases as ``peft-mpn bench --dataset bmike53 --split counterfact --seed 0`` (English
edits, augmentation de fr es ru zh, the memory of the 25 unrelated cases the bench picks), single edits, each from
a fresh adapter. Run it once per checkout (``PYTHONPATH=<worktree>``) to compare two::

    HF_HUB_OFFLINE=1 python benchmarks/edit_phases.py --num-edits 8 --editor-option patch_plan=per_language

Phases nest: ``patched_forward`` (every pass with the new patches: steps, checks, the warm start's) includes
part of ``warm_start``, and ``gate_passes`` and ``gate_adam`` are inside ``gate_fit``. What no phase names is the
training steps' backward passes and losses, planning, and the first unpatched forward.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from peft_mpn.cli.edits import option  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, phase: str) -> None:
    """Wrap `owner.name` so its seconds add to `SPENT[phase]`."""
    function = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[phase] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def instrument() -> None:
    from peft_mpn.editing.mpn import editor, subject_gate

    timed(editor, "after_answer_inputs", "after_answer")
    timed(editor, "neighbour_inputs", "neighbours")
    timed(editor.MPNEditor, "_patched", "patched_forward")
    timed(editor.MPNEditor, "_warm_start", "warm_start")
    timed(subject_gate.SubjectGates, "fit", "gate_fit")
    timed(subject_gate.SubjectGates, "_inputs", "gate_passes")
    timed(subject_gate, "fit_gates", "gate_adam")

    class TimedPrefixCache(editor.PrefixCache):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            super().__init__(*args, **kwargs)
            SPENT["prefix_cache"] += time.perf_counter() - start

    editor.PrefixCache = TimedPrefixCache


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-edits", type=int, default=8)
    parser.add_argument("--data", default="../shared/data/bmike53", help="BMIKE-53 folder.")
    parser.add_argument("--editor-option", type=option, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="The model's dtype (float32 or bfloat16).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import peft_mpn
    from peft_mpn import data
    from peft_mpn.bench.runner import select_cases
    from peft_mpn.data.prompts import format_requests, resolve_prompt_format
    from peft_mpn.editing.registry import editor_config, editor_spec
    from peft_mpn.models import load_model

    print(f"peft_mpn from {Path(peft_mpn.__file__).parent}", file=sys.stderr)
    instrument()
    augment = ["de", "fr", "es", "ru", "zh"]
    model, tokenizer = load_model(None, dtype=args.dtype, progress=False)
    requests = data.load_edit_requests(args.data, "bmike53", split="counterfact", languages=["en", *augment])
    requests = format_requests(requests, resolve_prompt_format(None, model))
    edit_ids, memory_ids = select_cases(len(requests), args.num_edits, 0, 25)
    config = editor_config("mpn", None, **dict(args.editor_option))
    config = config.for_run(edit_language="en", augment_languages=augment, seed=0)
    spec = editor_spec("mpn")
    config, kwargs = spec.editor_kwargs(config, None, None)
    editor = spec.build(model, tokenizer, config, **{**kwargs, "progress": False})
    editor.add_unrelated_from_requests([requests[i] for i in memory_ids])
    rows = []
    for i in edit_ids:
        editor.reset()
        SPENT.clear()
        start = time.perf_counter()
        result = editor.edit(requests[i].restricted_to(augment))
        total = time.perf_counter() - start
        rows.append({"total": total, **SPENT})
        phases = " ".join(f"{k}={v:.2f}" for k, v in SPENT.items())
        print(f"{requests[i].case_id} {result.status} steps={result.steps} total={total:.2f} {phases}", flush=True)
    print("\n| phase | median s / edit | share of the median total |\n|---|---:|---:|")
    median_total = statistics.median(r["total"] for r in rows)
    for phase in sorted({k for r in rows for k in r}, key=lambda k: -statistics.median(r.get(k, 0) for r in rows)):
        median = statistics.median(r.get(phase, 0.0) for r in rows)
        print(f"| {phase} | {median:.2f} | {median / median_total:.0%} |")


if __name__ == "__main__":
    main()
