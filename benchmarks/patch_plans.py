"""MPN's two patch plans on the same MzsRE facts: shared edit-language patches vs per-language patches.

Each fact is edited in English from the base model (augmentation de fr es ru zh, memory bank from the locality
questions of cases 400-424 in all 12 languages). Printed per language: facts whose new answer wins (greedy would
produce it), `translated (copied)`; locality as the share of teacher-forced tokens kept on the facts' own
locality questions (all languages), on 40 English NQ questions (cases 100-139) and on 40 English zsRE
questions (cases 451-490, the edited prompts' template).

    HF_HUB_OFFLINE=1 python benchmarks/patch_plans.py --num-facts 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from peft_mpn.data import load_mzsre  # noqa: E402
from peft_mpn.editing import MPNEditor, MPNEditorConfig  # noqa: E402
from peft_mpn.metrics import score_targets  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzsre"


def agreement(before: list[tuple[int, ...]], after: list[tuple[int, ...]]) -> float:
    kept = sum(x == y for p, q in zip(before, after) for x, y in zip(p, q))
    return kept / sum(len(p) for p in before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--num-facts", type=int, default=8)
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    args = parser.parse_args()

    model, tokenizer = load_model(progress=False)
    facts = load_mzsre(args.data, limit=args.num_facts)
    nq = [(f.edit.locality_prompt, f.edit.locality_answer) for f in load_mzsre(args.data, ["en"], start=100, limit=40)]
    zsre = [(f.edit.prompt, f.edit.target) for f in load_mzsre(args.data, ["en"], start=451, limit=40)]
    own = {f.case_id: [(v.locality_prompt, v.locality_answer) for v in f.views.values()] for f in facts}

    def predictions(pairs):
        return [s.predicted for s in score_targets(shared.model, tokenizer, pairs)]

    shared = MPNEditor(model, tokenizer, MPNEditorConfig(augment_languages=args.augment_languages), progress=False)
    shared.add_unrelated_from_requests(load_mzsre(args.data, start=400, limit=25))
    before = {"nq": predictions(nq), "zsre": predictions(zsre), **{k: predictions(v) for k, v in own.items()}}

    for plan in ("edit", "per_language"):
        config = MPNEditorConfig(augment_languages=args.augment_languages, patch_plan=plan)
        editor = MPNEditor(shared.model, tokenizer, config, memory=shared.memory, progress=False)
        wins: dict[str, dict[str, list[int]]] = {}
        seconds, statuses, patches, locality = [], [], [], {"own": [], "nq": [], "zsre": []}
        for fact in facts:
            editor.reset()
            start = time.perf_counter()
            result = editor.edit(fact)
            seconds.append(time.perf_counter() - start)
            statuses.append(result.status)
            patches.append(result.patches_added)
            scores = score_targets(editor.model, tokenizer, [(v.prompt, v.target) for v in fact.views.values()])
            for language, score in zip(fact.views, scores):
                copied = language != "en" and fact.views[language].target.strip() == fact.edit.target.strip()
                counts = wins.setdefault(language, {"translated": [0, 0], "copied": [0, 0]})
                counts["copied" if copied else "translated"][0] += int(score.exact)
                counts["copied" if copied else "translated"][1] += 1
            locality["own"].append(agreement(before[fact.case_id], predictions(own[fact.case_id])))
            locality["nq"].append(agreement(before["nq"], predictions(nq)))
            locality["zsre"].append(agreement(before["zsre"], predictions(zsre)))
        editor.reset()
        print(f"## patch_plan={plan!r}")
        print(f"median s/edit {statistics.median(seconds):.1f}; statuses {statuses}; patches {patches}")
        print("locality " + ", ".join(f"{k} {statistics.mean(v):.3f}" for k, v in locality.items()))
        cells = {}
        for language, counts in wins.items():
            t, c = counts["translated"], counts["copied"]
            cells[language] = f"{t[0]}/{t[1]}" + (f" ({c[0]}/{c[1]})" if language != "en" else "")
        print(" | ".join(f"{k} {v}" for k, v in cells.items()))


if __name__ == "__main__":
    main()
