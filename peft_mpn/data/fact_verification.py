"""A multilingual fact-verification task built from BMIKE-53 CounterFact, in the spirit of MPN's XFEVER.

MPN (Si et al. 2024) was evaluated on a self-constructed XFEVER; this builds the same kind of task from data at
hand. Every CounterFact case gives two statements per language: the prompt completed with the true answer
(`old`, label 1 = true) and with the counterfactual one (`alt`, label 0 = false). In BMIKE-53 the prompts
are questions ("Where does Spike Hughes originate from?"), so a statement reads "<question> <answer>"; the
`rephrase` of a case is completed the same way (generality). Views are the parallel statements in the other
languages (cross-lingual generalization), and locality is another case's statement with the same truth value.

An edit request is one statement: flipping the classifier's verdict on the English statement, with the
translated statements (same label) as its parallel versions.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .loaders import DatasetLayoutError, classification_requests, requests_to_dataset
from .requests import EditRequest, FactView

if TYPE_CHECKING:
    from datasets import DatasetDict

FACT_VERIFICATION_LABELS = ("false", "true")
"""Label ids of the statements: 0 = the counterfactual answer, 1 = the true one."""


def statement(prompt: str, answer: str) -> str:
    """The prompt completed with an answer: `"<prompt> <answer>"`."""
    return f"{prompt.rstrip()} {answer.strip()}"


def fact_verification_requests(
    requests: Sequence[EditRequest], languages: str | Iterable[str] | None = None
) -> list[EditRequest]:
    """Two classification requests per CounterFact case (`<case_id>-true` then `<case_id>-false`).

    `requests` are generation requests with `true_answer` (BMIKE-53 CounterFact, e.g. from
    `load_bmike53(path, "counterfact", languages)`); `languages` restricts their views (default: all of
    them; every request must have every language). A case whose true and counterfactual answers are the same
    string in some language (the two statements would be identical) is dropped with a warning.
    Locality: the statement of the next case with the same truth value, in the same language.
    """
    if not requests:
        raise ValueError("No requests given: pass BMIKE-53 CounterFact cases (load_bmike53(path, 'counterfact')).")
    if isinstance(languages, str):
        languages = [languages]
    langs = list(dict.fromkeys(["en", *(languages or requests[0].languages)]))
    cases, dropped = [], []
    for request in requests:
        if not request.is_generation:
            raise DatasetLayoutError(
                f"Case {request.case_id} has a label target; fact verification is built from generation cases "
                "with a true answer (BMIKE-53 CounterFact)."
            )
        absent = [lang for lang in langs if lang not in request.views]
        if absent:
            raise DatasetLayoutError(
                f"Case {request.case_id} has no {', '.join(repr(a) for a in absent)} version; load those languages "
                "or leave them out of languages=."
            )
        views = {lang: request.views[lang] for lang in langs}
        missing = [lang for lang, view in views.items() if not view.true_answer]
        if missing:
            raise DatasetLayoutError(
                f"Case {request.case_id} has no true answer in {missing}; fact verification needs 'old', which "
                "BMIKE-53 has in its CounterFact split only (load_bmike53(path, 'counterfact'))."
            )
        if any(view.true_answer.strip() == view.target.strip() for view in views.values()):
            dropped.append(request.case_id)
            continue
        for label, answer in ((1, "true_answer"), (0, "target")):
            cases.append(
                (
                    f"{request.case_id}-{FACT_VERIFICATION_LABELS[label]}",
                    {lang: _statement_view(view, getattr(view, answer), label) for lang, view in views.items()},
                )
            )
    if dropped:
        warnings.warn(
            f"Dropped {len(dropped)} case(s) whose true and counterfactual answers are the same string in some "
            f"language (first: {dropped[0]}).",
            stacklevel=2,
        )
    if not cases:
        raise DatasetLayoutError("No usable case: every case has identical true and counterfactual answers.")
    # rows alternate true/false per case, so the case two rows on has the same truth value
    return classification_requests(cases, "fact verification", locality_step=2)


def _statement_view(view: FactView, answer: str, label: int) -> FactView:
    return FactView(
        prompt=statement(view.prompt, answer),
        target=label,
        rephrases=tuple(statement(rephrase, answer) for rephrase in view.rephrases),
        subject=view.subject,
    )


def _split_by_case(
    requests: Sequence[EditRequest], test_fraction: float = 0.5, seed: int = 0
) -> tuple[list[EditRequest], list[EditRequest]]:
    """`(train, test)`: statements of one case stay together; the split depends only on the case ids and seed.

    Cases are ordered by a hash of `seed` and their id (the CounterFact id before `-true`/`-false`) and the
    first `round(test_fraction * cases)` (at least one each way when there are two or more) go to test;
    both lists keep the input order.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}.")
    case_of = {id(request): (request.case_id or "").rsplit("-", 1)[0] for request in requests}
    cases = list(dict.fromkeys(case_of.values()))
    if len(cases) < 2:
        raise ValueError(f"Need at least two cases to split, got {len(cases)}.")
    ranked = sorted(cases, key=lambda case: hashlib.sha256(f"{seed}:{case}".encode()).hexdigest())
    size = min(max(round(test_fraction * len(cases)), 1), len(cases) - 1)
    test_cases = set(ranked[:size])
    train = [request for request in requests if case_of[id(request)] not in test_cases]
    test = [request for request in requests if case_of[id(request)] in test_cases]
    return train, test


def build_fact_verification(
    requests: Sequence[EditRequest],
    languages: str | Iterable[str] | None = None,
    *,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> DatasetDict:
    """The fact-verification task as a `DatasetDict` with `train` and `test` splits (split by case).

    Rows are the classification requests of
    [`fact_verification_requests`][peft_mpn.data.fact_verification_requests] in the schema of
    [`requests_to_dataset`][peft_mpn.data.requests_to_dataset] (`case_id`, `edit_language`,
    `views.<lang>.prompt` = the statement, `views.<lang>.target` = 1 true / 0 false, `rephrases`,
    `locality_prompt`); `dataset_to_requests(split)` gives the edit requests back. Locality neighbours are taken
    within a split, so a test request's locality statement is a test statement. Train a classifier on `views.en`
    of `train`; edit and judge on `test`.
    """
    from datasets import DatasetDict

    train, test = _split_by_case(fact_verification_requests(requests, languages), test_fraction, seed)
    # re-link locality inside each split so that no split points into the other
    relinked = {
        name: classification_requests([(r.case_id, dict(r.views)) for r in split], name, locality_step=2)
        for name, split in (("train", train), ("test", test))
    }
    return DatasetDict({name: requests_to_dataset(split) for name, split in relinked.items()})


__all__ = [
    "FACT_VERIFICATION_LABELS",
    "build_fact_verification",
    "fact_verification_requests",
    "statement",
]
