"""How well does the edited model translate its own edits? `model_translator` against the data's human translations.

    HF_HUB_OFFLINE=1 python benchmarks/self_translation.py --cases 30 --output results/self_translation.json

For the bench's first `--cases` edit cases of BMIKE-53 (seed 0; zsRE and CounterFact by default), the English
prompt, answer and subject are translated into every other language by `model_translator` (Gemma-3-270M by
default, shown the two built-in examples) and compared with the dataset's human versions, per language:

- *kept*: the share of cases whose translation passes `translate_requests`' checks (not empty, not returned
  unchanged, the prompt mostly in the language's script): the versions an editor would train on;
- *answer exact*: the translated answer equals the human one (`normalise`d), over all cases, split by whether the
  human answer copies the English one ("copied": names written the same) or not ("translated");
- *prompt chrF*: the character 3-gram F-score (β = 2, as chrF) of the translated prompt against the human one.

Prints a Markdown table and writes the JSON with every translation (to read them by eye).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from peft_mpn.bench.runner import select_cases  # noqa: E402
from peft_mpn.data.loaders.registry import load_edit_requests  # noqa: E402
from peft_mpn.data.translation import TranslationCache, model_translator, translate_requests  # noqa: E402
from peft_mpn.files import atomic_write_text  # noqa: E402
from peft_mpn.metrics.generation import normalise  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

LANGUAGES = ["de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "th", "tr", "vi", "ko", "he", "el", "uk"]


def chrf(hypothesis: str, reference: str, n: int = 3, beta: float = 2.0) -> float:
    """Character n-gram F-score of one sentence (spaces removed, as chrF does), 0 when either is too short."""

    def grams(text: str) -> Counter:
        text = "".join(text.split())
        return Counter(text[i : i + n] for i in range(len(text) - n + 1))

    hyp, ref = grams(hypothesis), grams(reference)
    overlap = sum((hyp & ref).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/bmike53")
    parser.add_argument("--split", default="zsre+counterfact")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--languages", nargs="+", default=LANGUAGES)
    parser.add_argument("--model", default=None, help="default: the offline Gemma-3-270M")
    parser.add_argument("--output", type=Path, default=Path("results/self_translation.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(args.model, progress=False)
    requests = load_edit_requests(args.data, "bmike53", split=args.split, languages=["en", *args.languages])
    edit_ids, _ = select_cases(len(requests), args.cases, 0, 25)
    human = [requests[i] for i in edit_ids]
    cache = TranslationCache(args.output.with_suffix(".cache.json"))
    started = time.perf_counter()
    translator = model_translator(model, tokenizer)
    machine = translate_requests([r.restricted_to([]) for r in human], args.languages, translator, cache=cache)
    seconds = time.perf_counter() - started
    table, examples = {}, []
    for language in args.languages:
        kept, exact, prompt_scores = 0, {"copied": [], "translated": []}, []
        for given, written in zip(human, machine):
            words = cache.get(translator.name, "en", language)
            answer = words.get(given.edit.target.strip(), "")
            kind = "copied" if given.copies_edit_target(language) else "translated"
            exact[kind].append(normalise(answer) == normalise(given.views[language].target))
            prompt = words.get(given.edit.prompt.strip(), "")
            prompt_scores.append(chrf(prompt, given.views[language].prompt))
            kept += language in written.views
            reference = given.views[language]
            examples.append(
                {"case_id": given.case_id, "language": language, "prompt": prompt, "answer": answer,
                 "human_prompt": reference.prompt, "human_answer": reference.target, "kept": language in written.views}
            )  # fmt: skip
        every = exact["copied"] + exact["translated"]
        table[language] = {
            "kept": kept / len(human),
            "answer_exact": sum(every) / len(every),
            **{f"answer_exact_{k}": (sum(v) / len(v) if v else None) for k, v in exact.items()},
            **{f"cases_{k}": len(v) for k, v in exact.items()},
            "prompt_chrf": sum(prompt_scores) / len(prompt_scores),
        }
    lines = [
        f"Self-translation, {len(human)} cases ({args.split}), {seconds:.0f} s for every language",
        "",
        "| language | kept | answer exact | copied answers exact | translated answers exact | prompt chrF |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for language, row in table.items():

        def cell(value: float | None, count: int | None = None) -> str:
            return "–" if value is None else f"{value:.2f}" + ("" if count is None else f" ({count})")

        lines.append(
            f"| {language} | {cell(row['kept'])} | {cell(row['answer_exact'])} | "
            f"{cell(row['answer_exact_copied'], row['cases_copied'])} | "
            f"{cell(row['answer_exact_translated'], row['cases_translated'])} | {cell(row['prompt_chrf'])} |"
        )
    print("\n".join(lines))
    result = {"arguments": vars(args) | {"output": str(args.output)}, "seconds": seconds, "table": table}
    atomic_write_text(args.output, json.dumps(result | {"translations": examples}, ensure_ascii=False, indent=1))
    atomic_write_text(args.output.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
