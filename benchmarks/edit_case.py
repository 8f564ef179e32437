"""Edit benchmark cases one by one with `peft-mpn bench`'s settings and say, per trained language, whether each holds.

    HF_HUB_OFFLINE=1 python benchmarks/edit_case.py 7925 5013 --split counterfact --num-edits 20

The editor is built as `peft-mpn bench --method mpn` builds it (the same seed, case selection, memory cases,
prompt format and augmentation languages), each case is edited from a fresh adapter, and its versions are scored
teacher-forced on the edited model (`score_targets`, as the judge does): with the patches' subject gates, and with
every gate forced open. An edit the editor reports as held that does not hold here is a bug to chase; one that
holds only with the gates open points at the gates.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from peft_mpn.bench.runner import select_cases  # noqa: E402
from peft_mpn.data.loaders.registry import load_edit_requests  # noqa: E402
from peft_mpn.data.prompts import format_requests, resolve_prompt_format  # noqa: E402
from peft_mpn.editing.registry import editor_config, editor_spec  # noqa: E402
from peft_mpn.metrics import score_targets  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402
from peft_mpn.tuners.gate import OPEN  # noqa: E402


def held(model: torch.nn.Module, tokenizer: object, request: object) -> str:
    """`lang=yes|no` for each version of `request`: its target is the model's teacher-forced argmax."""
    views = list(request.views.items())
    scores = score_targets(model, tokenizer, [(view.prompt, view.target) for _, view in views])
    return " ".join(f"{lang}={'yes' if s.predicted == s.target else 'no'}" for (lang, _), s in zip(views, scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case_ids", nargs="+", help="case ids as the bench's results name them (e.g. 7925)")
    parser.add_argument("--data", default="../shared/data/bmike53")
    parser.add_argument("--split", default="counterfact")
    parser.add_argument("--languages", nargs="+", default=["en", "de", "fr", "es", "ru", "zh", "ja", "ar"])
    parser.add_argument("--augment-languages", nargs="+", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--num-edits", type=int, default=20, help="the bench run's --num-edits (case selection)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(progress=False)
    requests = load_edit_requests(args.data, "bmike53", split=args.split, languages=args.languages)
    requests = format_requests(requests, resolve_prompt_format(None, model))
    edit_ids, memory_ids = select_cases(len(requests), args.num_edits, args.seed, 25)
    spec = editor_spec("mpn")
    config = editor_config("mpn", None).for_run(
        edit_language="en", augment_languages=args.augment_languages, seed=args.seed
    )
    config, kwargs = spec.editor_kwargs(config, None, None)
    editor = spec.build(model, tokenizer, config, **{**kwargs, "progress": False})
    editor.add_unrelated_from_requests([requests[i] for i in memory_ids])
    by_id = {str(requests[i].case_id): requests[i] for i in edit_ids}
    for case_id in args.case_ids:
        if case_id not in by_id:
            raise SystemExit(f"Case {case_id!r} is not among the {args.num_edits} the bench selects with this seed.")
        request = by_id[case_id].restricted_to(args.augment_languages)
        editor.reset()
        result = editor.edit(request)
        print(f"{case_id}: {result.status} after {result.steps} steps; reported to hold in {result.fixed_languages}")

        print(f"  gated:      {held(editor.model, tokenizer, request)}")
        layer, name = editor.layer, editor.adapter_name
        if name in layer.mpn_gate_keys:
            with torch.no_grad():
                layer.mpn_gate_keys[name].zero_()
                layer.mpn_gate_bias[name].fill_(OPEN)
            print(f"  gates open: {held(editor.model, tokenizer, request)}")


if __name__ == "__main__":
    main()
