"""The editor contract: what every editor does, whatever the method.

An editor learns edits into a model. Each method lives in its own package under `peft_mpn.editing` and
subclasses [`Editor`][peft_mpn.editing.base.Editor]; its config subclasses
[`EditorConfig`][peft_mpn.editing.base.EditorConfig]; one [`EditorSpec`][peft_mpn.editing.registry.EditorSpec] in
`peft_mpn.editing.registry` makes it selectable by name in `make_editor`, the CLI, the bench and the Trainer.
Nothing outside the registry switches on a method's name.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol

import torch
from tqdm.auto import tqdm

from ..data.requests import EditRequest, EditRequestError, FactView

logger = logging.getLogger(__name__)

EditStatus = Literal["edited", "skipped", "unfixed", "collided"]


@dataclass
class EditResult:
    """What happened to one request (or one batch of requests).

    `status`: `"edited"` (the edit holds in every trained language), `"skipped"` (it already held: nothing was
    changed), `"unfixed"` (trained, but some trained language still gets it wrong) or `"collided"` (LAFN: every
    neuron the edit needed belongs to an earlier edit). `replaced`: the case ids of earlier edits of the same fact
    (same edit language and prompt) that this one replaced (MPN: their patches are gone).
    """

    case_ids: list[str | None]
    status: EditStatus
    steps: int = 0
    patches_added: int = 0
    seconds: float = 0.0
    languages: list[str] = field(default_factory=list)
    fixed_languages: list[str] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    replaced: list[str | None] = field(default_factory=list)  # case ids of earlier edits of the same fact

    @property
    def success(self) -> bool:
        return self.status in ("edited", "skipped")


@dataclass
class EditorConfig:
    """Base of every editor's config: a dataclass whose fields carry `metadata={"help": ...}`.

    The CLI documents and sets these fields by name (`peft-mpn bench --editor-option KEY=VALUE`); a method's
    config overrides [`for_run`][peft_mpn.editing.base.EditorConfig.for_run] where it has language or seed fields.

    Every number must be finite, and a field's metadata may bound it: `"min"` / `"max"` (inclusive) and `"above"`
    / `"below"` (exclusive); `None` is always allowed where the field's type admits it. A config that breaks a
    bound is refused at construction, so no edit ever trains with a NaN or infinite setting. Subclasses that
    define `__post_init__` call `super().__post_init__()`.
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            problem = _out_of_bounds(value, f.metadata)
            if problem:
                raise ValueError(f"{type(self).__name__}.{f.name} must be {problem}, got {value!r}.")

    def for_run(self, *, edit_language: str, augment_languages: Sequence[str], seed: int) -> EditorConfig:
        """This config pointed at one run: the parallel versions it may train on, and its seed (default: as is)."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """`{field: help text}` for every field (the CLI's documentation of `--editor-option`)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def _out_of_bounds(value: float, bounds: Mapping[str, Any]) -> str | None:
    """What `value` must be, if it breaks `bounds` (the field metadata's min/max/above/below), else None."""
    if not math.isfinite(value):
        return "a finite number"
    rules = (
        ("min", "at least", lambda v, b: v >= b),
        ("above", "above", lambda v, b: v > b),
        ("max", "at most", lambda v, b: v <= b),
        ("below", "below", lambda v, b: v < b),
    )
    for key, words, holds in rules:
        if key in bounds and not holds(value, bounds[key]):
            return f"{words} {bounds[key]}"
    return None


class TrainerObjective(Protocol):
    """What [`EditTrainer`][peft_mpn.training.EditTrainer] needs from an editor to edit with `transformers.Trainer`.

    [`Editor.trainer_objective`][peft_mpn.editing.base.Editor.trainer_objective] grows the adapter for the training
    cases (as the editor would) and returns one of these; the trainer then optimises `edit_loss + regularizer`.
    """

    #: whether the collator also feeds each view's rephrases
    rephrases: bool

    @property
    def keeps_earlier_edits(self) -> bool:
        """Whether the adapter holds earlier edits that training must leave as they are."""
        ...

    def trainable(self) -> AbstractContextManager[list[torch.nn.Parameter]]:
        """The new edit's tensors, trainable (earlier edits' parts masked) while the context lasts."""
        ...

    def learning_rate_scales(self) -> dict[torch.nn.Parameter, float]:
        """Tensors that need their own learning rate (a multiple of the Trainer's)."""
        ...

    def edit_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The edit loss, summed over target tokens (`-100` ignored)."""
        ...

    def regularizer(self, targets: torch.Tensor, cases: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's share of the editor's other terms, and their values for logging."""
        ...

    def after_step(self) -> None:
        """After each optimizer step: a constraint the step must keep (LAFN: its preservation projection)."""
        ...

    def finish(self) -> None:
        """After training: what the edit needs that the Trainer does not learn (MPN: its subject gates)."""
        ...

    def adapter_size(self, saved_config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The grown adapter's shape; with `saved_config` (an `adapter_config.json`), that adapter's shape."""
        ...


class Editor(ABC):
    """How an edit is learned: `edit`, `edit_stream`, `edit_batch`, `reset`, and `.model` to judge or save.

    Subclasses implement [`edit_batch`][peft_mpn.editing.base.Editor.edit_batch] and
    [`reset`][peft_mpn.editing.base.Editor.reset]; editors that keep an edit away from unrelated text set
    `uses_unrelated_text` and implement [`add_unrelated_texts`][peft_mpn.editing.base.Editor.add_unrelated_texts];
    editors that can train many edits with `transformers.Trainer` implement
    [`trainer_objective`][peft_mpn.editing.base.Editor.trainer_objective].
    """

    #: whether `add_unrelated_texts` is meaningful (MPN's memory bank, LAFN's KL term)
    uses_unrelated_text: ClassVar[bool] = False

    model: Any
    tokenizer: Any
    config: EditorConfig
    progress: bool

    @abstractmethod
    def edit_batch(self, requests: Sequence[EditRequest]) -> EditResult:
        """Make several requests hold in one run."""

    @abstractmethod
    def reset(self) -> None:
        """Undo every edit: `.model` is the unedited model again."""

    #: Whether `state_dict` / `load_state_dict` are implemented (a sequential benchmark can then be resumed).
    supports_checkpoints: bool = False

    def state_dict(self) -> dict[str, Any]:
        """Everything the edits so far changed (in the model and in the editor), for `load_state_dict`: a stream
        checkpointed with it resumes exactly where it stopped (`torch.save` / `torch.load(weights_only=True)`)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot checkpoint a stream of edits yet; run the stream without resuming."
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned, on an editor built the same way (same model, config, memory)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot checkpoint a stream of edits yet; run the stream without resuming."
        )

    def edit(self, request: EditRequest) -> EditResult:
        """Make one request hold (skipped when the model already gets every trained version right)."""
        return self.edit_batch([check_request(request)])

    def edit_stream(self, requests: Iterable[EditRequest]) -> list[EditResult]:
        """Sequential editing: each request in turn, on top of the edits before it."""
        results: list[EditResult] = []
        bar = tqdm(list(requests), desc=f"{type(self).__name__} editing", disable=not self.progress)
        for request in bar:
            results.append(self.edit(request))
            bar.set_postfix(last=results[-1].status, **self._progress_postfix())
        return results

    def _progress_postfix(self) -> dict[str, Any]:
        """Extra fields for the stream's progress bar (e.g. the number of patches)."""
        return {}

    def training_languages(self, request: EditRequest) -> list[str]:
        """The languages whose versions of `request` an edit trains on (the edit language first)."""
        return [request.edit_language]

    def augmentation_versions(self, request: EditRequest, languages: Sequence[str] | None) -> dict[str, FactView]:
        """`request`'s parallel versions in `languages` (None: all of them).

        A language the request lacks is left out with a warning (once per language and editor) that names it, so
        a typo (`"ge"` for `"de"`) does not silently train the edit language alone.
        """
        if languages is not None:
            missing = [lang for lang in dict.fromkeys(languages) if lang not in request.views]
            warned = self.__dict__.setdefault("_warned_languages", set())
            if new := [lang for lang in missing if lang not in warned]:
                warned.update(new)
                logger.warning(
                    "Request %s has no version in %s (it has %s): trained without %s. Check the language codes "
                    "in augment_languages (this is said once per language).",
                    repr(request.case_id) if request.case_id is not None else repr(request.edit.prompt),
                    new,
                    request.languages,
                    "it" if len(new) == 1 else "them",
                )
        return request.parallel(languages)

    def add_unrelated_texts(self, texts: Iterable[str] | Any) -> None:
        """Unrelated text the edit must leave alone (strings, or a `datasets.Dataset` with a `text` column)."""
        raise TypeError(
            f"{type(self).__name__} uses no unrelated text (nothing in its training keeps an edit away from other "
            "inputs); drop unrelated_texts, or use an editor whose uses_unrelated_text is True (MPN, LAFN)."
        )

    def add_unrelated_from_requests(self, requests: Iterable[EditRequest]) -> None:
        """Use the locality prompts of `requests` (all languages) as unrelated text."""
        self.add_unrelated_texts(
            view.locality_prompt for request in requests for view in request.views.values() if view.locality_prompt
        )

    def trainer_objective(self, requests: Sequence[EditRequest]) -> TrainerObjective:
        """Grow the adapter for `requests` and return the objective `EditTrainer` optimises."""
        raise TypeError(
            f"{type(self).__name__} has no Trainer objective; EditTrainer edits with an MPN, T-Patcher or LAFN editor."
        )


def check_request(request: Any) -> EditRequest:
    """`request` if it is an `EditRequest`; a clear error naming the fix otherwise."""
    if isinstance(request, EditRequest):
        return request
    if isinstance(request, dict):
        raise EditRequestError(
            "edit() takes an EditRequest, got a dict: build it with EditRequest.from_dict(record) (or "
            "EditRequest.single(prompt, target))."
        )
    raise EditRequestError(
        f"edit() takes an EditRequest, got {type(request).__name__}: build one with EditRequest.single(prompt, target)"
    )


def unrelated_strings(texts: Iterable[str] | Any) -> list[str]:
    """The non-empty strings of `texts` (a `datasets.Dataset` gives its `text` column)."""
    if hasattr(texts, "column_names"):
        if "text" not in texts.column_names:
            raise ValueError(f"The unrelated-text dataset needs a 'text' column; it has {texts.column_names}.")
        texts = texts["text"]
    return [t for t in texts if isinstance(t, str) and t.strip()]


__all__ = [
    "EditResult",
    "EditStatus",
    "Editor",
    "EditorConfig",
    "TrainerObjective",
    "check_request",
    "unrelated_strings",
]
