"""Edit one fact in English with MPN, show every language before and after, save the adapter and reload it.

    python examples/edit_one_fact.py                        # Gemma-3-270M, MzsRE case 0 (or the bundled sample)
    python examples/edit_one_fact.py --case 3 --output my-edit --augment-languages de fr

The edit trains on the English version plus its parallel versions in `--augment-languages` (MPN); the other
languages are *unseen* and show how far the edit transfers on its own. `peft_mpn.metrics.Judge` judges the base
model, the edited one and the reloaded one; a cell is `yes` when the target written in that language wins there
(the judge's teacher-forced exact match), and the table shows the answer the model generates before and after.
"""

from __future__ import annotations

from _common import (
    augment_languages,
    generated_answers,
    holds,
    in_prompt_format,
    is_copied,
    language_role,
    load_facts,
    markdown_table,
    parser,
    rate,
    training_overrides,
    write_report,
)

import peft_mpn
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.metrics import Judge
from peft_mpn.models import load_model


def main() -> None:
    options = parser(__doc__.splitlines()[0], num_facts=1)
    options.add_argument("--case", type=int, default=0, help="which of the loaded facts to edit (default: the first)")
    options.add_argument("--output", default="my-edit", help="folder to save the adapter to")
    args = options.parse_args()
    args.num_facts = max(args.num_facts, args.case + 1)
    facts, memory_facts, source = load_facts(args)
    request = facts[args.case]
    augment = augment_languages(args, [request])

    model, tokenizer = load_model(args.model)
    (request,), memory_facts = in_prompt_format(model, [request], memory_facts)
    judge = Judge(tokenizer, augment_languages=augment)
    before_rows = judge.reference(model, [request])  # the base model, before any adapter
    before = holds(judge.scores(before_rows), request)

    config = MPNEditorConfig(augment_languages=augment, seed=args.seed, **training_overrides(args))
    editor = MPNEditor(model, tokenizer, config, peft_config=peft_mpn.MPNConfig(layers_to_transform=[args.layer]))
    editor.add_unrelated_from_requests(memory_facts)  # other facts' unrelated questions: the patch stays silent there
    result = editor.edit(request)
    after_rows = judge.rows(editor.model, request)
    scores = judge.scores(after_rows)  # locality against the base model's answers
    after = holds(scores, request)
    generated_before, generated_after = generated_answers(before_rows), generated_answers(after_rows)
    editor.model.save_pretrained(args.output)

    # A fresh copy of the base model with the saved adapter gives the same answers.
    base, _ = load_model(args.model, progress=False)
    reloaded = holds(judge.scores(judge.rows(peft_mpn.from_pretrained(base, args.output), request)), request)

    def mark(won: bool) -> str:
        return "yes" if won else "no"

    rows = [
        [
            language,
            language_role(request, language, augment),
            "-" if language == request.edit_language else ("copied" if is_copied(request, language) else "translated"),
            view.target.strip(),  # the prompt format may end answers with a line break
            mark(before[language]),
            mark(after[language]),
            mark(reloaded[language]),
            repr(generated_before.get(language, "")),
            repr(generated_after.get(language, "")),
        ]
        for language, view in request.views.items()
    ]
    print(f"\nSource: {source}, case {request.case_id}: {request.edit.prompt!r} -> {request.edit.target.strip()!r}")
    print(f"Edit: {result.status} in {result.steps} steps, {result.patches_added} patch(es), {result.seconds:.1f} s")
    header = ["language", "in editing", "kind", "new answer", "before", "after", "reloaded", "generated before"]
    print(markdown_table([*header, "generated after"], rows))
    print(
        f"\nLocality: {rate(scores['average']['locality'])} (share of the answer tokens of the fact's unrelated "
        "question that keep the base model's prediction, averaged over languages)"
    )
    print(f"Adapter saved to {args.output}; reloaded answers match: {mark(reloaded == after)}")
    write_report(
        args.report,
        {
            "source": source,
            "case_id": request.case_id,
            "status": result.status,
            "patches_added": result.patches_added,
            "augment_languages": augment,
            "before": before,
            "after": after,
            "reloaded": reloaded,
            "generated_before": generated_before,
            "generated_after": generated_after,
            "locality": scores["average"]["locality"],
            "adapter": args.output,
        },
    )


if __name__ == "__main__":
    main()
