"""MPN's two patch plans on the same MzsRE facts: shared edit-language patches vs per-language patches.

Each fact is edited in English from the base model (augmentation de fr es ru zh, memory bank from the locality
questions of cases 400-424 in all 12 languages) and judged by `peft_mpn.metrics.Judge`; the script formats its
scores. Printed per language: facts whose new answer wins (greedy would produce it), `translated (copied)`;
locality (the judge's: the share of answer tokens whose prediction is unchanged) on the facts' own locality
questions (all languages), on 40 English NQ questions (cases 100-139) and on 40 English zsRE questions (cases
451-490, the edited prompts' template), judged after every edit.

    HF_HUB_OFFLINE=1 python benchmarks/patch_plans.py --num-facts 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from peft_mpn import EditRequest, FactView  # noqa: E402
from peft_mpn.data import load_mzsre  # noqa: E402
from peft_mpn.editing import MPNEditor, MPNEditorConfig  # noqa: E402
from peft_mpn.metrics import Judge, exact_matches  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzsre"
PLANS = ("edit", "per_language")


def as_unrelated(fact: EditRequest) -> EditRequest:
    """`fact`'s edit-language prompt and target as an unrelated question: a case judged on locality only."""
    view = fact.edit
    unrelated = FactView(view.prompt, view.target, locality_prompt=view.prompt, locality_answer=str(view.target))
    return EditRequest({fact.edit_language: unrelated}, fact.edit_language, case_id=f"unrelated-{fact.case_id}")


def compare_plans(
    model: Any,
    tokenizer: Any,
    facts: Sequence[EditRequest],
    memory_facts: Sequence[EditRequest],
    unrelated: Mapping[str, Sequence[EditRequest]],
    augment: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Edit each fact from the base model with each patch plan; judge it, and the `unrelated` sets' locality.

    Returns:
        per plan: `scores` (the judge's scores of the facts), `locality` (`"own"`: the facts' own unrelated
        questions, averaged over languages; one entry per `unrelated` set: its cases' locality questions after
        every edit), `seconds`, `statuses`, `patches` (per fact).
    """
    judge = Judge(tokenizer, augment_languages=augment)
    judge.reference_locality(model, facts)  # the base model's answers, before any adapter
    for cases in unrelated.values():
        judge.reference_locality(model, cases)
    shared = MPNEditor(model, tokenizer, MPNEditorConfig(augment_languages=list(augment)), progress=False)
    shared.add_unrelated_from_requests(memory_facts)
    plans = {}
    for plan in PLANS:
        config = MPNEditorConfig(augment_languages=list(augment), patch_plan=plan)
        editor = MPNEditor(shared.model, tokenizer, config, memory=shared.memory, progress=False)
        rows: dict[str, list] = {"own": [], **{name: [] for name in unrelated}}
        seconds, statuses, patches = [], [], []
        for fact in facts:
            editor.reset()
            start = time.perf_counter()
            result = editor.edit(fact)
            seconds.append(time.perf_counter() - start)
            statuses.append(result.status)
            patches.append(result.patches_added)
            rows["own"] += judge.rows(editor.model, fact)
            for name, cases in unrelated.items():
                rows[name] += [row for case in cases for row in judge.rows(editor.model, case, probes={"locality"})]
        editor.reset()
        scores = judge.scores(rows["own"])
        locality = {"own": scores["average"]["locality"]}
        locality.update({name: judge.scores(rows[name])["locality"] for name in unrelated})
        plans[plan] = {
            "scores": scores,
            "locality": locality,
            "seconds": seconds,
            "statuses": statuses,
            "patches": patches,
        }
    return plans


def report(plan: str, result: Mapping[str, Any]) -> str:
    """The lines printed for one plan: timing and outcomes, locality, then `translated (copied)` wins per language."""
    scores = result["scores"]
    cells = []
    for language in scores["per_language"]:
        if language == scores["edit_language"]:
            cells.append("{} {}/{}".format(language, *exact_matches(scores, language)))
            continue
        translated = exact_matches(scores, language, "reliability_translated")
        copied = exact_matches(scores, language, "reliability_copied")
        cells.append(
            f"{language} {translated[0]}/{translated[1]}" + (f" ({copied[0]}/{copied[1]})" if copied[1] else "")
        )
    return "\n".join(
        [
            f"## patch_plan={plan!r}",
            f"median s/edit {statistics.median(result['seconds']):.1f}; statuses {result['statuses']}; "
            f"patches {result['patches']}",
            "locality " + ", ".join(f"{name} {value:.3f}" for name, value in result["locality"].items()),
            " | ".join(cells),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--num-facts", type=int, default=8)
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    args = parser.parse_args()

    model, tokenizer = load_model(progress=False)
    facts = load_mzsre(args.data, limit=args.num_facts)
    unrelated = {
        "nq": load_mzsre(args.data, ["en"], start=100, limit=40),  # judged on their locality (NQ) questions
        "zsre": [as_unrelated(fact) for fact in load_mzsre(args.data, ["en"], start=451, limit=40)],
    }
    memory = load_mzsre(args.data, start=400, limit=25)
    for plan, result in compare_plans(model, tokenizer, facts, memory, unrelated, args.augment_languages).items():
        print(report(plan, result))


if __name__ == "__main__":
    main()
