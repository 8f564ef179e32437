"""Seconds, steps and outcome of the default MPN editor's edits, for comparing two checkouts of the library.

`edit_speed.py` compares configurations of one checkout in one run; a change that is not a configuration (a
faster step, a new stop rule) is compared across checkouts instead. This script makes the same edits as
`edit_speed.py`'s `cached` configuration (MzsRE cases 0..N-1 in English, augmentation de fr es ru zh, the same
memory bank and subject pool, a fresh adapter per edit) with the peft_mpn found first on the path, and prints one
line per edit and a summary. Run it once per checkout, one after the other on the same machine::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before HF_HUB_OFFLINE=1 python benchmarks/edit_times.py --num-edits 10
    HF_HUB_OFFLINE=1 python benchmarks/edit_times.py --num-edits 10

Any ``--editor-option KEY=VALUE`` sets a field of `MPNEditorConfig` (e.g. ``patch_plan=per_language``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speed.configs import DEFAULT_DATA, REFERENCE, VARIANTS  # noqa: E402
from speed.measure import Bench  # noqa: E402


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-edits", type=int, default=10, help="MzsRE cases 0..N-1.")
    parser.add_argument("--data", default=None, help=f"MzsRE folder (default: {DEFAULT_DATA}).")
    parser.add_argument("--editor-option", type=_option, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = argparse.Namespace(
        model=None, data=args.data, num_edits=args.num_edits, layer=-1, max_steps=None, seed=0,
        augment_languages=["de", "fr", "es", "ru", "zh"], memory_start=400, memory_cases=50,
        prompt_format="family", no_progress=True, slow_edits=0,
    )  # fmt: skip
    import peft_mpn

    print(f"peft_mpn from {Path(peft_mpn.__file__).parent}", file=sys.stderr)
    bench = Bench(settings)
    variant = next(v for v in VARIANTS if v.name == REFERENCE)
    overrides = dict(args.editor_option)
    bench.editor_for(variant, max_steps=2).edit(bench.warmup_request)  # lazy initialisation, untimed
    seconds, steps = [], []
    for request in bench.requests:
        result = bench.editor_for(variant, **overrides).edit(request)
        seconds.append(result.seconds)
        steps.append(result.steps)
        print(request.case_id, result.status, result.steps, result.patches_added, result.fixed_languages,
              round(result.seconds, 2), flush=True)  # fmt: skip
    print(
        f"median s/edit {statistics.median(seconds):.2f} (min {min(seconds):.2f}, max {max(seconds):.2f}); "
        f"steps {sorted(steps)}"
    )


if __name__ == "__main__":
    main()
