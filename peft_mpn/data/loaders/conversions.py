"""Edit requests to and from a `datasets.Dataset` (one row per request, one struct per language)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..requests import TEXT_FIELDS, EditRequest, EditRequestError

if TYPE_CHECKING:
    from datasets import Dataset

#: The optional text fields of a view (every text field but the prompt and the target, typed apart).
_TEXT_FIELDS = tuple(name for name in TEXT_FIELDS if name not in ("prompt", "target"))


def requests_to_dataset(requests: Sequence[EditRequest]) -> Dataset:
    """A `datasets.Dataset` with columns `case_id`, `edit_language` and `views`.

    `views` is a struct with one field per language (the union over the requests, `None` where a request
    has no version), each a [`FactView`][peft_mpn.FactView] struct. Targets must all be strings or all int labels.
    """
    from datasets import Dataset, Features, List, Value

    if not requests:
        raise ValueError("No requests to convert; a Dataset needs at least one to fix its schema.")
    kinds = {req.is_generation for req in requests}
    if len(kinds) > 1:
        raise EditRequestError("Mixed generation and classification requests cannot share one Dataset schema.")
    string = Value("string")
    view = {
        "prompt": string,
        "target": string if kinds == {True} else Value("int64"),
        "rephrases": List(string),
        **{name: string for name in _TEXT_FIELDS},
    }
    languages = list(dict.fromkeys(lang for req in requests for lang in req.views))
    features = Features(
        {"case_id": string, "edit_language": string, "views": {lang: dict(view) for lang in languages}}
    )
    rows = []
    for req in requests:
        record = req.to_dict()
        record["views"] = {lang: record["views"].get(lang) for lang in languages}
        rows.append(record)
    return Dataset.from_list(rows, features=features)


def dataset_to_requests(dataset: Iterable[Mapping[str, Any]]) -> list[EditRequest]:
    """Inverse of [`requests_to_dataset`][peft_mpn.data.requests_to_dataset] (any iterable of such rows)."""
    return [EditRequest.from_dict(row) for row in dataset]
