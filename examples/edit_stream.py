"""Edit a stream of facts one after another with T-Patcher and with MPN, then judge every edit at the end.

    python examples/edit_stream.py                          # Gemma-3-270M, 10 MzsRE facts (or the bundled sample)
    python examples/edit_stream.py --num-facts 20 --augment-languages de fr es

Sequential editing: each fact is edited on top of the earlier ones (their patches frozen, their inputs added to
the memory bank). After the last edit `peft_mpn.metrics.Judge` judges every fact (the `cross_lingual_edit`
metric), so a later edit that broke an earlier one shows. Both editors start from the same base model and the same
memory bank.
"""

from __future__ import annotations

import time

from _common import augment_languages, load_facts, markdown_table, parser, rate, training_overrides, write_report

import peft_mpn
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.metrics import Judge
from peft_mpn.models import load_model


def main() -> None:
    args = parser(__doc__.splitlines()[0], num_facts=10).parse_args()
    facts, memory_facts, source = load_facts(args)
    augment = augment_languages(args, facts)
    languages = [lang for lang in facts[0].languages if all(lang in fact.views for fact in facts)]
    facts = [fact.restricted_to(languages) for fact in facts]

    model, tokenizer = load_model(args.model)
    judge = Judge(tokenizer, augment_languages=augment)
    results = {"before": judge.scores(judge.reference(model, facts))}  # the base model; keeps its locality answers

    config = MPNEditorConfig(augment_languages=augment, seed=args.seed, **training_overrides(args))
    mpn = MPNEditor(model, tokenizer, config, peft_config=peft_mpn.MPNConfig(layers_to_transform=[args.layer]))
    mpn.add_unrelated_from_requests(memory_facts)
    # T-Patcher: the same editor with augmentation off, on the same adapter and memory bank (reset in between).
    t_patcher = MPNEditor.t_patcher(mpn.model, tokenizer, config=config, memory=mpn.memory)
    streams = {}
    for name, editor in {"T-Patcher": t_patcher, "MPN": mpn}.items():
        editor.reset()
        start = time.perf_counter()
        stream = editor.edit_stream(facts)
        seconds = time.perf_counter() - start
        results[name] = judge.scores([row for fact in facts for row in judge.rows(editor.model, fact)])
        streams[name] = {
            "held_right_after": sum(result.success for result in stream),
            "patches": editor.tuner.num_patches(editor.adapter_name),
            "seconds_per_edit": seconds / len(facts),
        }
    mpn.reset()

    def cell(result: dict, group: str, measure: str) -> str:
        return rate(result[group][f"{measure}_em"]) if group != "edit" else rate(result[f"{measure}_em"])

    header = ["exact match", *results]
    rows = [
        ["edit language: reliability", *(cell(r, "edit", "reliability") for r in results.values())],
        ["edit language: generality", *(cell(r, "edit", "generality") for r in results.values())],
    ]
    for group, label in (("average_augment", "seen"), ("average_unseen", "unseen")):
        for measure, kind in (
            ("reliability_translated", "translated"),
            ("reliability_copied", "copied"),
            ("reliability_edit_language_answer", "edit-language answer"),
        ):
            rows.append([f"{label} languages: {kind}", *(cell(r, group, measure) for r in results.values())])
    rows.append(["edit language: locality", "", *(rate(results[name]["locality"]) for name in streams)])
    rows.append(["all languages: locality", "", *(rate(results[name]["average"]["locality"]) for name in streams)])
    rows.append(
        [f"held right after its edit (of {len(facts)})", "", *(streams[n]["held_right_after"] for n in streams)]
    )
    rows.append(["patches", "", *(streams[name]["patches"] for name in streams)])
    rows.append(["s / edit", "", *(f"{streams[name]['seconds_per_edit']:.1f}" for name in streams)])

    print(f"\nSource: {source}; {len(facts)} facts edited in sequence in {facts[0].edit_language}")
    print(
        f"Seen (MPN's augmentation) languages: {', '.join(augment) or 'none'}; unseen: "
        f"{', '.join(results['MPN']['unseen_languages']) or 'none'}"
    )
    print(markdown_table(header, rows))
    print(
        "\nExact match after the whole stream, averaged over facts and languages. translated / copied: the target "
        "written in that language differs from / equals the edit-language one; edit-language answer: the "
        "edit-language target on that language's prompt. Locality (token agreement, not exact match): the share of "
        "the answer tokens of the facts' unrelated questions whose prediction is unchanged from the base model."
    )
    write_report(args.report, {"source": source, "augment_languages": augment, "metrics": results, "streams": streams})


if __name__ == "__main__":
    main()
