"""The demo: edit a few real facts in English with MPN and with T-Patcher, and show every language.

Each fact is edited from the unedited model (single-edit mode). Per language, a cell counts the facts whose
new answer now wins (greedy decoding would produce it: every target token is the argmax under teacher forcing),
split into *translated* targets (written differently from the English one) and *copied* ones (the same string,
which any method can "transfer" by copying). Locality is the share of teacher-forced tokens of each fact's
unrelated locality question that keep their prediction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import EditRequest
from .editing import MPNEditor, MPNEditorConfig
from .editing.registry import DEFAULT_AUGMENT
from .metrics import score_targets
from .tuners import MPNConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mzsre"


@dataclass
class DemoReport:
    languages: list[str]
    augment_languages: list[str]
    methods: list[str]
    #: method ("before" too) -> language -> kind ("translated"/"copied") -> [wins, total]
    wins: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    locality: dict[str, float] = field(default_factory=dict)
    seconds_per_edit: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def markdown(self) -> str:
        edit_language = self.languages[0]
        header = "| language | seen in editing | " + " | ".join(["before", *self.methods]) + " |"
        lines = [header, "|" + "---|" * (2 + len(self.methods) + 1)]
        for language in self.languages:
            if language == edit_language:
                seen = "edit language"
            else:
                seen = "yes (MPN)" if language in self.augment_languages else "no"
            cells = [_cell(self.wins[m][language], language == edit_language) for m in ["before", *self.methods]]
            lines.append(f"| {language} | {seen} | " + " | ".join(cells) + " |")
        lines.append("| locality | | 1.00 | " + " | ".join(f"{self.locality[m]:.2f}" for m in self.methods) + " |")
        lines.append("| s / edit | | | " + " | ".join(f"{self.seconds_per_edit[m]:.1f}" for m in self.methods) + " |")
        notes = (
            "Cells: facts whose new answer wins (greedy decoding would produce it), `translated (copied)` outside "
            "the edit language: translated = the target is written differently from the English one; copied = "
            "the same string. '-' where a language has no such fact. Locality: share of teacher-forced tokens "
            "of each fact's unrelated question (every language) whose prediction is unchanged."
        )
        return "\n".join([f"Source: {self.source}", "", *lines, "", notes])


def _cell(counts: dict[str, list[int]], edit_language: bool = False) -> str:
    if edit_language:  # the edit language's target is the target: nothing is copied or translated
        wins, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
        return f"{wins}/{total}"

    def part(kind: str) -> str:
        wins, total = counts[kind]
        return f"{wins}/{total}" if total else "-"

    return f"{part('translated')} ({part('copied')})"


def _kind(request: EditRequest, language: str) -> str:
    return "copied" if request.copies_edit_target(language) else "translated"


def load_demo_facts(data: str | Path | None, num_facts: int) -> tuple[list[EditRequest], list[EditRequest], str]:
    """Facts to edit and disjoint facts whose locality prompts fill the memory bank."""
    from .data import load_bundled_sample, load_mzsre

    folder = Path(data) if data is not None else DEFAULT_DATA
    if folder.exists():
        facts = load_mzsre(folder, limit=num_facts)
        memory = load_mzsre(folder, start=400, limit=25)
        return facts, memory, f"MzsRE cases 0-{num_facts - 1} ({folder})"
    if data is not None:
        raise FileNotFoundError(
            f"No MzsRE data at {folder}; pass --data to the folder of mzsre_test_duplicate_en*.json."
        )
    sample = load_bundled_sample()
    if num_facts > len(sample) // 2:
        raise ValueError(f"The bundled sample has {len(sample)} facts; ask for at most {len(sample) // 2}.")
    return sample[:num_facts], sample[len(sample) // 2 :], "the bundled BMIKE-53 zsRE sample (MIT)"


def run_demo(
    model_name: str | None = None,
    data: str | Path | None = None,
    num_facts: int = 8,
    augment_languages: Sequence[str] = DEFAULT_AUGMENT,
    layer: int = -1,
    seed: int = 0,
    progress: bool = True,
) -> DemoReport:
    from .models import load_model

    torch.manual_seed(seed)
    model, tokenizer = load_model(model_name, progress=progress)
    facts, memory_facts, source = load_demo_facts(data, num_facts)
    languages = facts[0].languages
    augment = [lang for lang in augment_languages if lang in languages]
    mpn = MPNEditor(
        model,
        tokenizer,
        MPNEditorConfig(augment_languages=augment, seed=seed),
        peft_config=MPNConfig(layers_to_transform=[layer]),
        progress=progress,
    )
    mpn.add_unrelated_from_requests(memory_facts)
    t_patcher = MPNEditor.t_patcher(
        mpn.model, tokenizer, config=MPNEditorConfig(seed=seed), memory=mpn.memory, progress=False
    )
    editors = {"T-Patcher": t_patcher, "MPN": mpn}
    report = DemoReport(languages, augment, list(editors), source=source)

    def judge(request: EditRequest) -> dict[str, bool]:
        scores = score_targets(mpn.model, tokenizer, [(v.prompt, v.target) for v in request.views.values()])
        return dict(zip(request.views, (s.exact for s in scores)))

    def locality_tokens(request: EditRequest) -> list[tuple[int, ...]]:
        pairs = [(v.locality_prompt, v.locality_answer) for v in request.views.values() if v.locality_prompt]
        return [s.predicted for s in score_targets(mpn.model, tokenizer, pairs)]

    def tally(method: str, request: EditRequest, won: dict[str, bool]) -> None:
        table = report.wins.setdefault(method, {lang: {"translated": [0, 0], "copied": [0, 0]} for lang in languages})
        for language, win in won.items():
            counts = table[language][_kind(request, language)]
            counts[0] += int(win)
            counts[1] += 1

    mpn.reset()
    before_locality = {}
    for request in facts:
        tally("before", request, judge(request))
        before_locality[request.case_id] = locality_tokens(request)
    for method, editor in editors.items():
        kept = total = 0
        seconds = []
        for request in tqdm(facts, desc=method, disable=not progress):
            editor.reset()
            start = time.perf_counter()
            editor.edit(request)
            seconds.append(time.perf_counter() - start)
            tally(method, request, judge(request))
            for pre, post in zip(before_locality[request.case_id], locality_tokens(request)):
                kept += sum(a == b for a, b in zip(pre, post))
                total += len(pre)
        report.locality[method] = kept / max(total, 1)
        report.seconds_per_edit[method] = sum(seconds) / len(seconds)
    mpn.reset()
    return report
