"""Locate one fact's language-agnostic neurons, then edit the fact with LAFN on just those neurons.

    python examples/lafn_edit.py                            # Gemma-3-270M, MzsRE case 0 (or the bundled sample)
    python examples/lafn_edit.py --language-vote 0.5 --template "Q: {prompt}\\nA:" --output my-lafn-edit

The neurons are located on the edit language and the `--augment-languages` (every prompt and its rephrases),
with the generic neurons of the other loaded facts removed; the deltas are trained on the same languages. The
other languages are unseen; `peft_mpn.metrics.Judge` judges every language before and after. Many facts have no
language-agnostic neuron under strict settings (see the LAFN neuron study in the docs): a lower `--language-vote`,
a larger `--top-k` or a `--template` find more.
"""

from __future__ import annotations

from _common import (
    augment_languages,
    holds,
    language_role,
    load_facts,
    markdown_table,
    parser,
    rate,
    training_overrides,
    write_report,
)

from peft_mpn.editing import LAFNEditor, LAFNEditorConfig
from peft_mpn.locating import LocatorConfig
from peft_mpn.metrics import Judge
from peft_mpn.models import load_model


def main() -> None:
    options = parser(__doc__.splitlines()[0], num_facts=1)
    options.add_argument("--top-k", type=int, default=50, help="neurons selected per layer and prompt")
    options.add_argument("--language-vote", type=float, default=0.75, help="share of languages that must agree")
    options.add_argument("--template", default=None, help="e.g. 'Q: {prompt}\\nA:' (read every language there)")
    options.add_argument(
        "--generic-fraction", type=float, default=0.2, help="drop neurons of this share of other facts"
    )
    options.add_argument("--output", default="my-lafn-edit", help="folder to save the adapter to")
    args = options.parse_args()
    if args.template is not None:
        args.template = args.template.replace("\\n", "\n")
    facts, reference_facts, source = load_facts(args)
    request = facts[0]
    train_languages = [request.edit_language, *augment_languages(args, [request])]

    model, tokenizer = load_model(args.model)
    judge = Judge(tokenizer, augment_languages=train_languages[1:])
    before = holds(judge.scores(judge.reference(model, [request])), request)  # the base model, before any adapter

    locator = LocatorConfig(
        top_k=args.top_k,
        language_vote=args.language_vote,
        template=args.template,
        generic_facts_fraction=args.generic_fraction,
    )
    editor = LAFNEditor(
        model,
        tokenizer,
        LAFNEditorConfig(train_languages=train_languages, locator=locator, **training_overrides(args)),
        reference_requests=reference_facts,  # their shared neurons are generic ("a question ends here")
    )
    editor.add_unrelated_from_requests(reference_facts)  # unrelated questions the edit must leave alone

    try:
        location = editor.locate(request)
    except ValueError as error:
        raise SystemExit(f"No neurons to edit for case {request.case_id}: {error}") from error
    print(location.summary())

    result = editor.edit(request)
    scores = judge.scores(judge.rows(editor.model, request))  # locality against the base model's answers
    after = holds(scores, request)
    editor.model.save_pretrained(args.output)  # adapter_config.json records the neurons

    augment = train_languages[1:]
    rows = [
        [
            language,
            language_role(request, language, augment),
            view.target,
            "yes" if before[language] else "no",
            "yes" if after[language] else "no",
        ]
        for language, view in request.views.items()
    ]
    neurons = {layer: len(indices) for layer, indices in result.neurons.items()}
    print(f"\nSource: {source}, case {request.case_id}: {request.edit.prompt!r} -> {request.edit.target!r}")
    print(f"Edit: {result.status} in {result.steps} steps; neurons trained per layer: {neurons}")
    print(markdown_table(["language", "in editing", "new answer", "before", "after"], rows))
    print(
        f"\nLocality: {rate(scores['average']['locality'])} (share of the answer tokens of the fact's unrelated "
        "question that keep the base model's prediction, averaged over languages)"
    )
    print(f"Adapter saved to {args.output}")
    write_report(
        args.report,
        {
            "source": source,
            "case_id": request.case_id,
            "status": result.status,
            "train_languages": train_languages,
            "neurons": {str(layer): indices for layer, indices in result.neurons.items()},
            "before": before,
            "after": after,
            "locality": scores["average"]["locality"],
            "adapter": args.output,
        },
    )


if __name__ == "__main__":
    main()
