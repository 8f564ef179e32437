"""Neighbour questions: the edited question asked about other subjects, where a patch must stay silent.

A patch keyed on the relation's wording ("For which team did X play?") also fires on the same question about
another subject ("For which team did Y play?") and changes its answer. Transformer-Patcher's memory bank rarely
holds such questions, so nothing in training stops that. `SubjectPool` collects subjects per language (from the
unrelated facts an editor is given and from earlier edits); `neighbour_prompts` puts other subjects into each
trained prompt in place of its own, and the editor keeps the patches silent where those prompts ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from ...data.requests import EditRequest
from ...data.subjects import find_subject


class SubjectPool:
    """Subjects per language, from unrelated facts (kept) and from edits (forgotten by `clear_edits`)."""

    def __init__(self) -> None:
        self._unrelated: dict[str, list[str]] = {}
        self._edits: dict[str, list[str]] = {}

    @staticmethod
    def _add(pool: dict[str, list[str]], requests: Iterable[EditRequest]) -> None:
        for request in requests:
            for language, view in request.views.items():
                subject = (view.subject or "").strip()
                if subject and subject not in pool.setdefault(language, []):
                    pool[language].append(subject)

    def add_unrelated(self, requests: Iterable[EditRequest]) -> None:
        self._add(self._unrelated, requests)

    def add_edits(self, requests: Iterable[EditRequest]) -> None:
        self._add(self._edits, requests)

    def clear_edits(self) -> None:
        self._edits = {}

    def state_dict(self) -> dict[str, dict[str, list[str]]]:
        return {
            "unrelated": {k: list(v) for k, v in self._unrelated.items()},
            "edits": {k: list(v) for k, v in self._edits.items()},
        }

    def load_state_dict(self, state: dict[str, dict[str, list[str]]]) -> None:
        self._unrelated = {k: list(v) for k, v in state["unrelated"].items()}
        self._edits = {k: list(v) for k, v in state["edits"].items()}

    def subjects(self, language: str) -> list[str]:
        """Every known subject in `language`, unrelated facts' first."""
        return list(dict.fromkeys([*self._unrelated.get(language, []), *self._edits.get(language, [])]))

    def neighbour_texts(self, views: Sequence[tuple[Any, str]], count: int, generator: torch.Generator) -> list[str]:
        """`neighbour_prompts` of each `(view, language)` (a `FactView` and its language), from this pool's
        subjects in that language."""
        texts: list[str] = []
        for view, language in views:
            texts += neighbour_prompts(view.prompt, view.subject, self.subjects(language), count, generator)
        return texts

    def __len__(self) -> int:
        return sum(len(self.subjects(language)) for language in {*self._unrelated, *self._edits})


def neighbour_inputs(editor: Any, views: Sequence[tuple[Any, str]]) -> torch.Tensor | None:
    """An `MPNEditor`'s FFN inputs [N, d] where the neighbour questions of `views` (`(FactView, language)` pairs)
    are answered (None without any, or when only the gates take them: `neighbour_key_negatives`); the inputs at
    every position of those questions at its subject gates' block go to `editor.gates.neighbours`, for the gates to
    stay shut on them too."""
    from ...shared_prefix import SharedPrefix
    from ..common import frozen
    from ..prefix import capture_ffn_inputs, run_until

    texts = editor.subjects.neighbour_texts(views, editor.config.neighbour_negatives, editor._generator)
    if not texts:
        return None
    rows = [editor.tokenizer(text, truncation=True, max_length=128)["input_ids"] for text in texts]
    gates = editor.gates
    with frozen(editor.model), gates.gate.record_inputs() if gates is not None else nullcontext([]) as at_gate:
        inputs = SharedPrefix(rows, editor._pad).inputs(editor.model)  # left-padded: every question ends last
        key = gates is None or editor.config.neighbour_key_negatives
        if key:
            h = capture_ffn_inputs(editor.model, editor.layer, inputs)
        else:  # the gate's block is as far as the questions need to go
            run_until(editor.model, gates.gate.ffn, inputs)
    if at_gate:
        rest = at_gate[-1]
        gates.neighbours = rest[inputs["attention_mask"][:, -rest.shape[1] :].bool()].float()
    return h[:, -1].float() if key else None


def neighbour_prompts(
    prompt: str, subject: str | None, candidates: Sequence[str], count: int, generator: torch.Generator
) -> list[str]:
    """`prompt` with its mention of `subject` (`find_subject`: inflected too) replaced by up to `count` other
    subjects drawn from `candidates` (seeded).

    Nothing when the prompt does not mention its subject (e.g. a translated prompt that transliterates it), and no
    candidate that is the subject itself or already appears in the prompt.
    """
    subject = (subject or "").strip()
    span = find_subject(prompt, subject) if count >= 1 else None
    if span is None:
        return []
    start, end = span
    mention = prompt[start:end]
    others = [
        other
        for other in candidates
        if other not in (subject, mention) and other not in prompt and subject not in other and mention not in other
    ]
    if not others:
        return []
    picks = torch.randperm(len(others), generator=generator)[:count].tolist()
    return [prompt[:start] + others[i] + prompt[end:] for i in picks]


__all__ = ["SubjectPool", "neighbour_inputs", "neighbour_prompts"]
