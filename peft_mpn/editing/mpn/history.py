"""Which patches belong to which edit, so that a later edit of the same fact replaces the earlier one."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...data.requests import EditRequest


@dataclass
class EditHistory:
    """The kept edits in the order their patches were appended to the adapter: `(fact key, target, case id,
    patches)`."""

    entries: list[tuple[tuple[str, str], object, str | None, int]] = field(default_factory=list)

    def earlier_versions(self, requests: list[EditRequest]) -> tuple[list[int], list[str | None]]:
        """The patch indices and case ids of earlier edits of the same facts as `requests` with another target
        (the same fact with the same target is not replaced: it is already there)."""
        targets = {request.fact_key: request.edit.target for request in requests}
        indices, case_ids, offset = [], [], 0
        for key, target, case_id, count in self.entries:
            if key in targets and targets[key] != target:
                indices += range(offset, offset + count)
                case_ids.append(case_id)
            offset += count
        return indices, case_ids

    def replace(self, requests: list[EditRequest], counts: list[int]) -> None:
        """Forget the earlier edits of these facts with another target, then record `requests` with the patches
        each added."""
        targets = {request.fact_key: request.edit.target for request in requests}
        self.entries = [entry for entry in self.entries if targets.get(entry[0], entry[1]) == entry[1]]
        self.entries += [
            (request.fact_key, request.edit.target, request.case_id, count)
            for request, count in zip(requests, counts)
            if count
        ]

    def clear(self) -> None:
        self.entries = []
