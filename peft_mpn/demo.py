"""The demo: edit a few real facts in English with MPN and with T-Patcher, and show every language.

Each fact is edited from the unedited model (single-edit mode) and judged by
[`Judge`][peft_mpn.metrics.judge.Judge], as the bench judges: the demo only formats the judge's result. A cell
counts the facts whose new answer wins (the judge's teacher-forced exact match), split outside the edit
language into *translated* targets (written differently from the English one) and *copied* ones (the same
string, which any method can "transfer" by copying). The bottom line also counts the generated answers that are
exact and stop, and the demo shows what the model generates before and after each edit. Every prompt is put in
the model family's prompt format (`peft_mpn.data.prompts`). Locality is the judge's: agreement with the
unedited model's answers to each fact's unrelated question, averaged over languages.

The facts are the BMIKE-53 sample bundled with the package, or those of a benchmark folder (`data`: MzsRE,
BMIKE-53, Bi-ZsRE, whatever [`load_edit_requests`][peft_mpn.data.load_edit_requests] detects).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .data import EditRequest, format_requests, resolve_prompt_format
from .editing import MPNEditor, MPNEditorConfig
from .editing.registry import DEFAULT_AUGMENT
from .metrics import Judge, exact_matches
from .tuners import MPNConfig

#: Where, in a benchmark folder, the facts whose unrelated questions fill the memory bank start (MzsRE: 400-424).
MEMORY_START = 400


@dataclass
class DemoReport:
    """What the demo judged: the judge's scores per method, and how long the edits took.

    Attributes:
        source: where the facts came from.
        edit_language: the language the facts were edited in.
        augment_languages: the languages MPN trained on besides the edit language (T-Patcher trains on none).
        methods: the editors, in the table's order.
        scores: `"before"` (the unedited model) and each method -> its
            [`Judge.scores`][peft_mpn.metrics.judge.Judge.scores].
        seconds_per_edit: per method, the mean time of one edit.
        generated: `"before"` and each method -> {fact: `(target, generated text)`} on the edit-language prompt.
    """

    source: str
    edit_language: str
    augment_languages: list[str]
    methods: list[str]
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds_per_edit: dict[str, float] = field(default_factory=dict)
    generated: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        """The judged languages, the edit language first."""
        return list(self.scores["before"]["per_language"])

    @property
    def unseen_languages(self) -> list[str]:
        return [lang for lang in self.languages if lang != self.edit_language and lang not in self.augment_languages]

    def wins(self, method: str, languages: Sequence[str], measure: str, reading: str = "em") -> str:
        """`won/total` of `measure` (`reading`: see `exact_matches`) pooled over `languages` (`-`: no such fact)."""
        counts = [exact_matches(self.scores[method], lang, measure, reading) for lang in languages]
        won, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return f"{won}/{total}" if total else "-"

    def summary(self) -> str:
        """The bottom line: facts that win in the edit language, the languages MPN trained on and the others."""
        columns = ["before", *self.methods]
        edited = [self.wins(m, [self.edit_language], "reliability") for m in columns]
        generated = [self.wins(m, [self.edit_language], "reliability", "gen") for m in columns]
        stops = [self.wins(m, [self.edit_language], "reliability", "stops") for m in columns]
        rows = [
            [f"{self.edit_language} (edit language)", *edited],
            [f"{self.edit_language}, generated answer exact", *generated],
            [f"{self.edit_language}, generated answer stops", *stops],
        ]
        for label, languages in (
            (f"trained by MPN ({' '.join(self.augment_languages)})", self.augment_languages),
            (f"trained by neither ({' '.join(self.unseen_languages)})", self.unseen_languages),
        ):
            if not languages:
                continue
            for kind in ("translated", "copied"):
                cells = [self.wins(m, languages, f"reliability_{kind}") for m in columns]
                if any(cell != "-" for cell in cells):  # a kind no fact has (every target copied, say) is left out
                    rows.append([f"{label}, {kind}", *cells])
        rows.append(["locality", *(_rate(self.scores[m]["average"]["locality"]) for m in columns)])
        rows.append(["locality, generated", *(_rate(self.scores[m]["average"]["locality_gen"]) for m in columns)])
        rows.append(["s / edit", "", *(f"{self.seconds_per_edit[m]:.1f}" for m in self.methods)])
        return _table(["facts whose new answer wins", *columns], rows)

    def per_language(self) -> str:
        """One row per language: `translated (copied)` wins outside the edit language, per method."""
        columns = ["before", *self.methods]
        rows = []
        for lang in self.languages:
            if lang == self.edit_language:
                seen, cells = "edit language", [self.wins(m, [lang], "reliability") for m in columns]
            else:
                seen = "yes (MPN)" if lang in self.augment_languages else "no"
                cells = [
                    f"{self.wins(m, [lang], 'reliability_translated')} ({self.wins(m, [lang], 'reliability_copied')})"
                    for m in columns
                ]
            rows.append([lang, seen, *cells])
        return _table(["language", "seen in editing", *columns], rows)

    def generations(self) -> str:
        """What the model generates on each fact's edit-language prompt, before and after each method's edit."""
        columns = ["before", *self.methods]
        rows = [
            [case, _cell(target), *(_cell(self.generated[m][case][1]) for m in columns)]
            for case, (target, _) in self.generated["before"].items()
        ]
        return _table(["fact", "new answer", *columns], rows)

    def markdown(self) -> str:
        notes = (
            "Wins: facts whose new answer would come out of greedy decoding (the judge's exact match on each "
            f"language's prompt). Outside {self.edit_language}, `translated (copied)`: translated = the target is "
            f"written differently from the {self.edit_language} one; copied = the same string. '-' where a "
            "language has no such fact. Locality: share of the answer tokens of each fact's unrelated question "
            "whose prediction is unchanged, averaged over languages ('-' before editing: nothing to compare). "
            "Generated: greedy decoding; exact = the answer (up to the line break) is the new one; stops = it ends "
            "within the answer's length + 4 tokens and does not repeat it; locality, generated = the first 16 "
            "generated tokens of the unrelated question are unchanged."
        )
        parts = [f"Source: {self.source}", "", self.summary(), "", self.per_language(), "", notes]
        if self.generated:
            parts += ["", "Generated text:", "", self.generations()]
        return "\n".join(parts)


def _cell(text: str) -> str:
    """Generated text in a table cell: line breaks shown as ⏎, pipes escaped."""
    return "`" + text.replace("\n", "⏎").replace("|", "\\|").replace("`", "'") + "`"


def _generated(rows: Sequence[dict[str, Any]], facts: Sequence[EditRequest]) -> dict[str, tuple[str, str]]:
    """{fact: (target, generated text)} of the edit-language reliability rows."""
    texts = {
        row["case_id"]: row["generated"]["text"]
        for row in rows
        if row["probe"] == "reliability" and row["language"] == facts[0].edit_language and "generated" in row
    }
    return {
        str(f.case_id): (str(f.edit.target).strip(), texts[str(f.case_id)]) for f in facts if str(f.case_id) in texts
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def load_demo_facts(
    data: str | Path | None, num_facts: int, *, memory_facts: int = 25
) -> tuple[list[EditRequest], list[EditRequest], str]:
    """Facts to edit, other facts whose unrelated questions fill the memory bank, and where they came from.

    Args:
        data: a benchmark folder (MzsRE, BMIKE-53, Bi-ZsRE: whatever `load_edit_requests` detects); None: the
            BMIKE-53 sample bundled with the package (its first half edited, its second half for the memory).
        num_facts: how many facts to edit (the first ones).
        memory_facts: how many other facts fill the memory bank (from a folder: from case `MEMORY_START`, or
            right after the edited facts where the data is shorter).
    """
    from .data import load_bundled_sample, load_edit_requests

    if num_facts < 1:
        raise ValueError(f"Ask for at least one fact to edit, got {num_facts}.")
    if data is None:
        sample = load_bundled_sample()
        if num_facts > len(sample) // 2:
            raise ValueError(
                f"The bundled sample has {len(sample)} facts; ask for at most {len(sample) // 2} (the other half "
                "fills the memory bank), or pass a benchmark folder as data."
            )
        return sample[:num_facts], sample[len(sample) // 2 :], "the bundled BMIKE-53 zsRE sample (MIT)"
    folder = Path(data).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"No data at {folder}: give a MzsRE, BMIKE-53 or Bi-ZsRE folder, or leave --data out for the bundled "
            "BMIKE-53 sample."
        )
    facts = load_edit_requests(folder, limit=num_facts)
    if not facts or not facts[0].is_generation:
        raise ValueError(
            f"{folder} holds no generation facts (the demo edits answers, not class labels): give a MzsRE, "
            "BMIKE-53 or Bi-ZsRE folder."
        )
    start = MEMORY_START
    memory = load_edit_requests(folder, start=start, limit=memory_facts)
    if not memory:
        start = len(facts)
        memory = load_edit_requests(folder, start=start, limit=memory_facts)
    return facts, memory, f"{folder} (cases 0-{len(facts) - 1}; memory bank from case {start})"


def run_demo(
    model_name: str | None = None,
    data: str | Path | None = None,
    num_facts: int = 8,
    augment_languages: Sequence[str] = DEFAULT_AUGMENT,
    layer: int = -1,
    seed: int = 0,
    progress: bool = True,
) -> DemoReport:
    """Edit `num_facts` facts one at a time with T-Patcher and MPN, each from the unedited model; judge them.

    Args:
        model_name: a Hub id, local folder or `.gguf` file (default: Gemma-3-270M).
        data: a benchmark folder (default: the bundled BMIKE-53 sample); see `load_demo_facts`.
        num_facts: how many facts to edit.
        augment_languages: the parallel versions MPN trains on (those every fact carries).
        layer: the block whose FFN gets the patches.
        seed: the seed of the editors.
        progress: show progress bars.
    """
    from .models import load_model

    facts, memory_facts, source = load_demo_facts(data, num_facts)  # before the model: a bad folder fails fast
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_name, progress=progress)
    template = resolve_prompt_format(None, model)  # the model family's: a base model answers it on one line
    facts, memory_facts = format_requests(facts, template), format_requests(memory_facts, template)
    edit_language = facts[0].edit_language
    augment = [
        lang
        for lang in dict.fromkeys(augment_languages)
        if lang != edit_language and all(lang in f.views for f in facts)
    ]
    judge = Judge(tokenizer, augment_languages=augment)
    before = judge.reference(model, facts, progress=progress)  # the unedited model; keeps its locality answers

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
    report = DemoReport(source, edit_language, augment, list(editors), scores={"before": judge.scores(before)})
    report.generated["before"] = _generated(before, facts)
    for method, editor in editors.items():
        rows, seconds = [], []
        for request in tqdm(facts, desc=method, disable=not progress):
            editor.reset()
            start = time.perf_counter()
            editor.edit(request)
            seconds.append(time.perf_counter() - start)
            rows += judge.rows(editor.model, request)
        report.scores[method] = judge.scores(rows)
        report.generated[method] = _generated(rows, facts)
        report.seconds_per_edit[method] = sum(seconds) / len(seconds)
    mpn.reset()
    return report


__all__ = ["MEMORY_START", "DemoReport", "load_demo_facts", "run_demo"]
