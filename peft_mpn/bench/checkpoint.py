"""Resuming a sequential benchmark: the stream's state saved every few edits, loaded when the same run restarts."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..editing.base import Editor
from ..files import atomic_write

logger = logging.getLogger(__name__)


def every_nth(done: int, total: int, every: int) -> bool:
    """Whether a stream of `total` edits is due for its periodic work after `done`: every `every` edits and after
    the last (the checkpoint, a curve point)."""
    return done % every == 0 or done == total


class StreamCheckpoint:
    """A sequential run's state after its last saved edit: the editor's `state_dict` and the edit records.

    Args:
        path: the checkpoint file (`peft-mpn bench` puts it next to the results: `<output>.checkpoint.pt`).
        run: what identifies the run (method, cases, seed, languages, config...): a checkpoint of another run
            is refused, never mixed in.
        every: save after every this many edits (and after the last one).
    """

    def __init__(self, path: str | os.PathLike, run: dict[str, Any], every: int = 10) -> None:
        self.path = Path(path)
        self.run = json.dumps(run, sort_keys=True, default=str)
        self.every = every
        self.curve: list[dict[str, Any]] = []  # the curve points measured before the saved edit (`load`)

    def load(self, editor: Editor) -> list[dict[str, Any]]:
        """The records of the edits already made, with `editor` put back to its state after them ([] if none)."""
        if not self.path.exists():
            return []
        try:
            saved = torch.load(self.path, weights_only=True)
        except Exception as error:  # a damaged file (atomic writes make this rare): say so, do not guess
            raise ValueError(
                f"The checkpoint {str(self.path)!r} cannot be read ({error}); delete it to start the run over."
            ) from error
        if saved.get("run") != self.run:
            raise ValueError(
                f"The checkpoint {str(self.path)!r} belongs to another run (other method, cases, seed, languages or "
                "settings); rerun the command that made it to resume that run, or delete it to start this one over."
            )
        editor.load_state_dict(saved["editor"])
        records = json.loads(saved["records"])
        self.curve = json.loads(saved.get("curve", "[]"))
        logger.info("Resuming after %d edits from %s.", len(records), self.path)
        return records

    def due(self, done: int, total: int) -> bool:
        return every_nth(done, total, self.every)

    def save(self, editor: Editor, records: list[dict[str, Any]], curve: list[dict[str, Any]] = ()) -> None:
        """Keep `editor`'s state after `records`' edits, and the `curve` points measured so far."""
        state = {
            "run": self.run,
            "records": json.dumps(records),
            "curve": json.dumps(list(curve)),
            "editor": editor.state_dict(),
        }
        atomic_write(self.path, lambda path: torch.save(state, path))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
