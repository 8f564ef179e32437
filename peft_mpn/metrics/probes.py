"""Which (prompt, target) pairs judge an edit: the probes of the ``cross_lingual_edit`` rows, in one place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ..data import EditRequest


class Probe(NamedTuple):
    """One teacher-forced pair to score and the metadata of its ``cross_lingual_edit`` row."""

    language: str
    probe: str
    prompt: str
    target: str | int
    copied: bool


def edit_probes(request: EditRequest, languages: Sequence[str] | None = None) -> Iterator[Probe]:
    """The probes of ``request`` in ``languages`` (default: every language it carries), in that order.

    Per language: ``reliability`` (the prompt → that language's target), one ``generality`` per rephrase,
    ``portability`` where the view has a follow-up question and answer, ``edit_language_answer`` (the prompt → the
    edit-language target) outside the edit language, and ``locality`` (the unrelated question and its answer)
    where the view has one; locality rows are judged against the unedited model's predictions, which the caller
    supplies. ``copied``: outside the edit language, whether the language's target is the same string as the
    edit-language target (the metric's translated/copied split).
    """
    edit_target = request.edit.target
    for language in request.languages if languages is None else languages:
        view = request.views[language]
        copied = request.copies_edit_target(language)
        yield Probe(language, "reliability", view.prompt, view.target, copied)
        for rephrase in view.rephrases:
            yield Probe(language, "generality", rephrase, view.target, copied)
        if view.portability_question and view.portability_answer:
            yield Probe(language, "portability", view.portability_question, view.portability_answer, copied)
        if language != request.edit_language:
            yield Probe(language, "edit_language_answer", view.prompt, edit_target, copied)
        if view.locality_prompt and view.locality_answer:
            yield Probe(language, "locality", view.locality_prompt, view.locality_answer, copied)
