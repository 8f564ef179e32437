"""Where can a linear key tell an edit's fact from the same question about a nearby subject?

    HF_HUB_OFFLINE=1 python benchmarks/subject_keys.py --cases 30 --layers 2,4,6,8,11,14,17

On BMIKE-53 CounterFact (the bench's first `--cases` edit cases and its 25 memory cases, Gemma-3-270M, the
family's prompt format), for each case and trained language (en de fr es ru zh), a key is fitted with
`fit_gates` (the subject gates' own fit) on one block's FFN input:

- *answer*: positive the edit prompt's last position (where the answer is decided; every trained language's
  together, as a shared patch is anchored), negatives every position of the memory texts and the last position
  of 8 random-subject neighbour questions per language (the edited prompt with another subject);
- *subject*: positive the edit prompt's subject's last token, negatives every position of the memory texts and
  of the neighbour questions; it fires on a text where it fires at any position (as a gate opens).

Each is judged on held-out text at the same place: the edit's rephrases (should fire) and the benchmark's
locality question about a nearby subject with the same relation (should not). Prints one line per block and key.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from peft_mpn.bench.runner import select_cases  # noqa: E402
from peft_mpn.data.loaders.registry import load_edit_requests  # noqa: E402
from peft_mpn.data.prompts import format_prompt, resolve_prompt_format  # noqa: E402
from peft_mpn.editing.mpn.neighbours import SubjectPool  # noqa: E402
from peft_mpn.editing.mpn.subject_gate import fit_gates  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

LANGUAGES = ["en", "de", "fr", "es", "ru", "zh", "ja", "ar"]
TRAINED = ["en", "de", "fr", "es", "ru", "zh"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/bmike53")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--layers", default="4,17", help="comma-separated block indices")
    args = parser.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    torch.set_num_threads(2)
    model, tokenizer = load_model(progress=False)
    requests = load_edit_requests(args.data, "bmike53", split="counterfact", languages=LANGUAGES)
    template = resolve_prompt_format("family", model)
    edit_ids, memory_ids = select_cases(len(requests), args.cases, 0, 25)
    pool = SubjectPool()
    pool.add_unrelated([requests[i] for i in memory_ids])
    recorded: dict[int, torch.Tensor] = {}
    for layer in layers:
        model.model.layers[layer].mlp.register_forward_pre_hook(
            lambda module, inputs, layer=layer: recorded.__setitem__(layer, inputs[0][0].float())
        )

    def encode(question: str, subject: str | None = None) -> tuple[dict, dict | None]:
        """Each block's FFN inputs at the question's positions, and at its subject's last token (if found)."""
        text = format_prompt(template, question)
        batch = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
        offsets = batch.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            model.model(**batch)
        start = text.find(question)
        question_positions = [i for i, (_, end) in enumerate(offsets) if end > start]
        at_subject = None
        if subject and subject in question:
            end = start + question.find(subject) + len(subject)
            tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a < end <= b]
            at_subject = {layer: recorded[layer][tokens[-1]] for layer in layers} if tokens else None
        return {layer: recorded[layer][question_positions] for layer in layers}, at_subject

    memory: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for i in memory_ids:
        for language in LANGUAGES:
            view = requests[i].views.get(language)
            if view is None:
                continue
            texts = [f"{view.prompt} {view.target}", f"{view.locality_prompt or ''} {view.locality_answer or ''}"]
            for text in texts:
                for layer, h in encode(text)[0].items():
                    memory[layer].append(h)
    memory = {layer: torch.cat(parts) for layer, parts in memory.items()}
    generator = torch.Generator().manual_seed(0)
    cases = []
    for i in edit_ids[: args.cases]:
        per_language = {}
        for language in TRAINED:
            view = requests[i].views[language]
            edit, subject = encode(view.prompt, view.subject)
            per_language[language] = {
                "edit": edit,
                "subject": subject,
                "locality": encode(view.locality_prompt)[0] if view.locality_prompt else None,
                "rephrases": [encode(text)[0] for text in view.rephrases[:2]],
                "neighbours": [encode(text)[0] for text in pool.neighbour_texts([(view, language)], 8, generator)],
            }
        cases.append(per_language)

    def fires(key: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, anywhere: bool) -> bool:
        scores = h @ key + bias
        return bool((scores.max() if anywhere else scores[-1]) > 0)

    for layer in layers:
        # answer position, one key for every trained language's version (a shared patch's key)
        rephrase, locality = [], []
        for case in cases:
            positives = torch.stack([case[lang]["edit"][layer][-1] for lang in TRAINED])
            neighbours = [n[layer][-1:] for lang in TRAINED for n in case[lang]["neighbours"]]
            (key,), (bias,) = fit_gates([positives], torch.cat([memory[layer], *neighbours]))
            for lang in TRAINED:
                rephrase += [fires(key, bias, r[layer], False) for r in case[lang]["rephrases"]]
                if case[lang]["locality"] is not None:
                    locality.append(fires(key, bias, case[lang]["locality"][layer], False))
        report(layer, "answer position", rephrase, locality)
        # subject's last token, one key per version; fires where it fires anywhere in the question
        rephrase, locality = [], []
        for case in cases:
            for lang in TRAINED:
                item = case[lang]
                if item["subject"] is None:
                    continue
                neighbours = [n[layer] for n in item["neighbours"]]
                (key,), (bias,) = fit_gates([item["subject"][layer][None]], torch.cat([memory[layer], *neighbours]))
                rephrase += [fires(key, bias, r[layer], True) for r in item["rephrases"]]
                if item["locality"] is not None:
                    locality.append(fires(key, bias, item["locality"][layer], True))
        report(layer, "subject token", rephrase, locality)


def report(layer: int, where: str, rephrase: list[bool], locality: list[bool]) -> None:
    print(
        f"block {layer:2d}  {where:15s}  fires on rephrases {sum(rephrase) / len(rephrase):.2f} (n={len(rephrase)})  "
        f"on same-relation locality questions {sum(locality) / len(locality):.2f} (n={len(locality)})",
        flush=True,
    )


if __name__ == "__main__":
    main()
