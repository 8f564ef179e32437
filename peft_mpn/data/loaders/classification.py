"""Classification cases (an int label as `target`) into edit requests: labels, alignment, locality.

XNLI, XFEVER and the fact-verification task ([`fact_verification_requests`][peft_mpn.data.fact_verification_requests])
build `(case_id, {language: view})` cases and hand them to
[`classification_requests`][peft_mpn.data.classification_requests], which fills in locality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..requests import EditRequest, FactView
from .reading import DatasetLayoutError, edit_request

Case = tuple[str, dict[str, FactView]]
"""`(case_id, {language: view})`: one classification case before its locality is filled in."""


def classification_requests(cases: Sequence[Case], where: str, locality_step: int = 1) -> list[EditRequest]:
    """Classification requests from `(case_id, {language: view})`, with locality from a neighbouring case.

    Locality for a classifier is another case's input: every view's `locality_prompt` becomes the prompt, in
    the same language, of the case `locality_step` places further on (wrapping round; none if that is the
    case itself). `locality_answer` stays `None`: locality is agreement with the unedited prediction.

    Args:
        cases: the cases in order; every view's `target` is the int label, and English is the edit.
        where: names the cases in error messages (a file, a dataset, a split).
        locality_step: how many places on the neighbour is (2 keeps a true/false alternation aligned).

    Raises:
        DatasetLayoutError: a case that is not a valid English-edit request.
    """
    requests = []
    for i, (case_id, views) in enumerate(cases):
        j = (i + locality_step) % len(cases)
        neighbour = cases[j][1] if j != i else {}
        views = {
            lang: replace(view, locality_prompt=neighbour[lang].prompt if lang in neighbour else None)
            for lang, view in views.items()
        }
        requests.append(edit_request(views, case_id, f"{where}, case {case_id}"))
    return requests


def label_id(value: Any, names: Sequence[str], where: str, aliases: Mapping[str, int] | None = None) -> int:
    """A label given as its id or its name (or a short form in `aliases`) as the id."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    if isinstance(value, str):
        key = value.strip()
        if key in names:
            return names.index(key)
        if aliases and key in aliases:
            return aliases[key]
    raise DatasetLayoutError(
        f"{where}: unknown label {value!r}; expected one of {', '.join(names)} (or their ids 0-{len(names) - 1})."
    )


def check_parallel(case_id: str, versions: Mapping[str, FactView], langs: Sequence[str], where: str, fix: str) -> None:
    """Every requested language present, all with one label: otherwise the languages are misaligned."""
    absent = [lang for lang in langs if lang not in versions]
    if absent:
        raise DatasetLayoutError(
            f"{where}: case {case_id!r} has no {', '.join(repr(a) for a in absent)} version; the languages are "
            f"not aligned. {fix}"
        )
    labels = {lang: versions[lang].target for lang in langs}
    if len(set(labels.values())) > 1:
        raise DatasetLayoutError(
            f"{where}: case {case_id!r} has different labels across languages ({labels}); the languages are not "
            f"aligned. {fix}"
        )
