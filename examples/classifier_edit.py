"""Edit a sequence classifier with MPN: flip one input's label in English, with its translations, and nothing else.

    python examples/classifier_edit.py                      # Gemma-3-270M with a fresh 2-label head
    python examples/classifier_edit.py --model my-xlmr-classifier --augment-languages de fr

The input to flip is the edit prompt of a fact, in every language the fact carries; its new label is the next
one after the label the model gives the English text now. A classifier gets one patch per edit, read where the
model decides (the first token for BERT-like encoders, the last real token for decoders). Locality is judged on
other facts' prompts, kept apart from the ones that fill the memory bank.
"""

from __future__ import annotations

import torch
from _common import (
    augment_languages,
    language_role,
    load_facts,
    markdown_table,
    parser,
    training_overrides,
    write_report,
)

import peft_mpn
from peft_mpn import EditRequest
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.models import load_model


@torch.no_grad()
def predict(model: torch.nn.Module, tokenizer, texts: list[str]) -> list[int]:
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return model(**inputs).logits.argmax(-1).tolist()


def main() -> None:
    options = parser(__doc__.splitlines()[0], num_facts=1)
    options.add_argument("--num-labels", type=int, default=None, help="labels of a new head (default: the model's)")
    args = options.parse_args()
    facts, other_facts, source = load_facts(args)
    fact = facts[0]
    augment = augment_languages(args, [fact])
    unrelated_texts = [view.prompt for other in other_facts[::2] for view in other.views.values()]
    judged_texts = [view.prompt for other in other_facts[1::2] for view in other.views.values()]

    extra = {} if args.num_labels is None else {"num_labels": args.num_labels}
    torch.manual_seed(args.seed)  # a model without a classification head gets a new, random one
    model, tokenizer = load_model(args.model, task="sequence-classification", **extra)
    texts = {language: view.prompt for language, view in fact.views.items()}
    before = dict(zip(texts, predict(model, tokenizer, list(texts.values()))))
    label = (before[fact.edit_language] + 1) % model.config.num_labels
    request = EditRequest.single(
        texts[fact.edit_language],
        label,
        language=fact.edit_language,
        parallel={language: (texts[language], label) for language in augment},
        case_id=fact.case_id,
    )

    editor = MPNEditor(
        model,
        tokenizer,
        MPNEditorConfig(augment_languages=augment, seed=args.seed, **training_overrides(args)),
        peft_config=peft_mpn.MPNConfig(layers_to_transform=[args.layer]),
        unrelated_texts=unrelated_texts,
    )
    judged_before = predict(editor.model, tokenizer, judged_texts) if judged_texts else []
    result = editor.edit(request)
    after = dict(zip(texts, predict(editor.model, tokenizer, list(texts.values()))))
    judged_after = predict(editor.model, tokenizer, judged_texts) if judged_texts else []
    kept = sum(a == b for a, b in zip(judged_before, judged_after))

    rows = [
        [language, language_role(fact, language, augment), before[language], after[language]] for language in texts
    ]
    print(f"\nSource: {source}, case {fact.case_id}: {texts[fact.edit_language]!r} -> label {label}")
    print(f"Edit: {result.status} in {result.steps} steps, {result.patches_added} patch(es)")
    print(markdown_table(["language", "in editing", "label before", "label after"], rows))
    if judged_texts:
        print(f"\nLocality: {kept}/{len(judged_texts)} other inputs keep their label")
    write_report(
        args.report,
        {
            "source": source,
            "case_id": fact.case_id,
            "status": result.status,
            "label": label,
            "augment_languages": augment,
            "before": before,
            "after": after,
            "locality": {"kept": kept, "total": len(judged_texts)},
        },
    )


if __name__ == "__main__":
    main()
