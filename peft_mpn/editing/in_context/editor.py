"""In-context editing: `edit` stores the fact; `.model` (an `InContextModel`) reads it before every prompt."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ...data.requests import EditRequest, EditRequestError
from ...devices import check_placed
from ...metrics.scoring import score_targets
from ..base import Editor, EditResult, unrelated_strings
from ..common import check_generation_requests
from .config import ICLEditorConfig
from .model import InContextModel


class ICLEditor(Editor):
    """In-context editing: ``edit`` stores the fact, ``.model`` reads it in front of every prompt.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer.
        config: the demonstration template and how many facts each prompt sees.
        progress: show a progress bar in `edit_stream`.

    The same evaluation code as for the other editors works on it.

    Examples:
        ```py
        >>> editor = make_editor("icl", model, tokenizer)
        >>> editor.edit(EditRequest.single("The capital of France is", "Lyon"))
        >>> score_targets(editor.model, tokenizer, [("Die Hauptstadt von Frankreich ist", "Lyon")])
        >>> editor.reset()  # forget the facts: editor.model is the plain model again
        ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: ICLEditorConfig | None = None,
        *,
        progress: bool = True,
    ) -> None:
        check_placed(model)
        if type(model).__name__.endswith("ForSequenceClassification"):
            raise EditRequestError(
                f"In-context editing needs a causal LM; {type(model).__name__} is a classifier. "
                "Use MPNEditor for classifiers."
            )
        self.tokenizer = tokenizer
        self.config = config or ICLEditorConfig()
        self.progress = progress
        self.model = InContextModel(model, tokenizer, self.config)
        self.uses_unrelated_text = self.config.gate_depth is not None  # the retrieval gate calibrates on it

    def reset(self) -> None:
        """Forget every stored fact."""
        self.model.clear()

    supports_checkpoints = True

    def add_unrelated_texts(self, texts: Iterable[str] | Any) -> None:
        """Calibrate the retrieval gate (``gate_depth``) on unrelated `texts`: a fact is put in front of an input
        only where the input is closer to it than every one of them."""
        if self.model.gate is None:
            super().add_unrelated_texts(texts)
            return
        self.model.gate.add_unrelated([self.tokenizer(text)["input_ids"] for text in unrelated_strings(texts)])

    def state_dict(self) -> dict[str, Any]:
        """The stored facts (demonstration text and the prompt tokens retrieval compares), and the retrieval
        gate's keys."""
        state: dict[str, Any] = {"facts": [[fact.text, sorted(fact.prompt_tokens)] for fact in self.model.facts]}
        if self.model.gate is not None:
            state["gate"] = self.model.gate.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.restore_facts([(text, frozenset(tokens)) for text, tokens in state["facts"]])
        if self.model.gate is not None:
            self.model.gate.load_state_dict(state["gate"])

    def edit_batch(self, requests: Sequence[EditRequest]) -> EditResult:
        check_generation_requests(requests, "In-context editing")
        start = time.perf_counter()
        stored = len(self.model.facts)
        for request in requests:
            self.model.add_fact(request.edit.prompt, request.edit.target)
        try:
            correct = self._holds(requests)
        except BaseException:  # e.g. a fact too long for the model: the editor stays as it was
            self.model.clear(keep=stored)
            raise
        languages = list(dict.fromkeys(request.edit_language for request in requests))
        return EditResult(
            [request.case_id for request in requests],
            "edited" if all(correct) else "unfixed",
            seconds=time.perf_counter() - start,
            languages=languages,
            fixed_languages=[
                lang for lang in languages if all(ok for r, ok in zip(requests, correct) if r.edit_language == lang)
            ],
        )

    def _holds(self, requests: Sequence[EditRequest]) -> list[bool]:
        pairs = [(request.edit.prompt, request.edit.target) for request in requests]
        return [score.exact for score in score_targets(self.model, self.tokenizer, pairs)]


__all__ = ["ICLEditor"]
