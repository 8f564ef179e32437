"""What an edit *is*: one fact, stated in one or more languages.

An `EditRequest` holds a `FactView` per language. The view in ``edit_language`` is the edit
itself; the other views are its parallel versions (translations of the prompt with the target written in
that language, or the same label for a classifier). Editors read requests; loaders produce them; the
metric judges predictions on them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

Target = str | int


class EditRequestError(ValueError):
    """An edit request that cannot be used as given."""


#: The fields of a `FactView` that hold text (the target may also be an int label).
TEXT_FIELDS = (
    "prompt",
    "target",
    "subject",
    "true_answer",
    "locality_prompt",
    "locality_answer",
    "portability_question",
    "portability_answer",
)


@dataclass(frozen=True)
class FactView:
    """The fact in one language.

    Args:
        prompt: the edit prompt (a question or a sentence prefix; for classifiers, the input text).
        target: the new answer (generation) or the label id (classification).
        rephrases: paraphrases of ``prompt`` in the same language (generality).
        subject: the subject entity, where known.
        true_answer: the answer before the edit, where known.
        locality_prompt: an unrelated question whose answer must not change.
        locality_answer: its answer.
        portability_question: a question whose answer follows from the edit.
        portability_answer: that answer.
    """

    prompt: str
    target: Target
    rephrases: tuple[str, ...] = ()
    subject: str | None = None
    true_answer: str | None = None
    locality_prompt: str | None = None
    locality_answer: str | None = None
    portability_question: str | None = None
    portability_answer: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rephrases, (str, bytes, bytearray)):  # one rephrase (bytes are refused in `validate`)
            object.__setattr__(self, "rephrases", (self.rephrases,))
        else:
            object.__setattr__(self, "rephrases", tuple(self.rephrases))

    def validate(self, language: str) -> None:
        texts = [(name, getattr(self, name)) for name in TEXT_FIELDS] + [("rephrase", r) for r in self.rephrases]
        for name, value in texts:
            if isinstance(value, (bytes, bytearray)):
                raise EditRequestError(
                    f"The {language!r} {name} is {type(value).__name__}, not a str; decode it first "
                    f"(e.g. {name}.decode('utf-8'))."
                )
        if not isinstance(self.prompt, str):
            raise EditRequestError(f"The {language!r} prompt must be a str, got {type(self.prompt).__name__}.")
        if not self.prompt.strip():
            raise EditRequestError(f"The {language!r} version has an empty prompt; give the text to edit on.")
        if self.target is None or (isinstance(self.target, str) and not self.target.strip()):
            raise EditRequestError(
                f"The {language!r} version has an empty target; give the new answer written in {language!r} "
                "(or drop that language from the request)."
            )
        if isinstance(self.target, bool) or not isinstance(self.target, (str, int)):
            raise EditRequestError(
                f"The {language!r} target must be a string (generation) or an int label (classification), "
                f"got {type(self.target).__name__}."
            )


@dataclass(frozen=True)
class EditRequest:
    """One fact to edit, in ``edit_language``, with optional parallel versions in other languages.

    ``machine_translated`` names the parallel versions a translator wrote (`peft_mpn.data.translation`) rather than
    a person; the judge and the edit manifest keep them apart.
    """

    views: Mapping[str, FactView]
    edit_language: str = "en"
    case_id: str | None = None
    machine_translated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        views = {str(lang): view for lang, view in self.views.items()}
        object.__setattr__(self, "views", views)
        if self.edit_language not in views:
            raise EditRequestError(
                f"The edit language {self.edit_language!r} has no version in this request "
                f"(languages given: {sorted(views)}); add it or set edit_language to one of them."
            )
        machine = (self.machine_translated,) if isinstance(self.machine_translated, str) else self.machine_translated
        object.__setattr__(self, "machine_translated", tuple(dict.fromkeys(str(lang) for lang in machine)))
        stray = [lang for lang in self.machine_translated if lang not in views or lang == self.edit_language]
        if stray:
            raise EditRequestError(
                f"machine_translated names {stray}, which are not parallel versions of this request (languages "
                f"{sorted(views)}, edit language {self.edit_language!r}); name only translated versions."
            )
        for lang, view in views.items():
            view.validate(lang)
        kinds = {isinstance(view.target, str) for view in views.values()}
        if len(kinds) > 1:
            raise EditRequestError("Mixed target kinds: every version must have a string target or an int label.")
        if not self.is_generation:
            labels = {view.target for view in views.values()}
            if len(labels) > 1:
                raise EditRequestError(
                    f"Parallel versions of a classification edit must share the label, got {sorted(labels)}."
                )

    @classmethod
    def single(
        cls,
        prompt: str,
        target: Target,
        *,
        language: str = "en",
        parallel: Mapping[str, FactView | Mapping[str, Any] | tuple[str, Target]] | None = None,
        case_id: str | None = None,
        **view_fields: Any,
    ) -> EditRequest:
        """Build a request from a prompt and target, with ``parallel`` versions as views, dicts or pairs."""
        views: dict[str, FactView] = {language: FactView(prompt=prompt, target=target, **view_fields)}
        for lang, version in (parallel or {}).items():
            if lang == language:
                raise EditRequestError(f"A parallel version repeats the edit language {language!r}.")
            views[lang] = _as_view(version, lang)
        return cls(views=views, edit_language=language, case_id=case_id)

    @property
    def edit(self) -> FactView:
        """The view that is edited."""
        return self.views[self.edit_language]

    @property
    def fact_key(self) -> tuple[str, str]:
        """What makes two requests the same fact (see the module's `fact_key`)."""
        return fact_key(self.edit_language, self.edit.prompt)

    @property
    def languages(self) -> list[str]:
        return list(self.views)

    @property
    def is_generation(self) -> bool:
        return isinstance(self.edit.target, str)

    def copies_edit_target(self, language: str) -> bool:
        """Whether ``language``'s target is the edit-language target's string ("copied"; else "translated").

        Always ``False`` in the edit language: the split describes transfer to the other languages.
        """
        if language == self.edit_language:
            return False
        return str(self.views[language].target).strip() == str(self.edit.target).strip()

    def parallel(self, languages: Iterable[str] | None = None) -> dict[str, FactView]:
        """Parallel versions (all but the edit language), optionally restricted to ``languages``."""
        if languages is None:
            return {lang: view for lang, view in self.views.items() if lang != self.edit_language}
        return {lang: self.views[lang] for lang in languages if lang in self.views and lang != self.edit_language}

    def restricted_to(self, languages: Sequence[str]) -> EditRequest:
        """The same request keeping only ``languages`` (the edit language is always kept)."""
        keep = {self.edit_language, *languages}
        return EditRequest(
            views={lang: view for lang, view in self.views.items() if lang in keep},
            edit_language=self.edit_language,
            case_id=self.case_id,
            machine_translated=tuple(lang for lang in self.machine_translated if lang in keep),
        )

    def with_prompt_format(self, template: str) -> EditRequest:
        """The same request with every prompt (edit, rephrases, locality, portability) put in `template`.

        `template` holds `{prompt}` once, e.g. `"Q: {prompt}\\nA:"`, and may hold `{answer}` after it: what follows
        `{answer}` (a line break in `"Q: {prompt}\\nA: {answer}\\n"`) is appended to the targets and the
        portability answer, the way that format ends an answer (see `peft_mpn.data.prompts`). A classification
        request is returned as it is.
        """
        from .prompts import format_prompt, split_template

        _, answer_end = split_template(template)
        if not self.is_generation:
            return self

        def put(text: str | None) -> str | None:
            return None if text is None else format_prompt(template, text)

        def end(answer: Any) -> Any:
            return answer if not answer_end or not isinstance(answer, str) else answer.rstrip() + answer_end

        views = {
            lang: replace(
                view,
                prompt=put(view.prompt),
                target=end(view.target),
                rephrases=tuple(put(text) for text in view.rephrases),
                locality_prompt=put(view.locality_prompt),
                portability_question=put(view.portability_question),
                portability_answer=None if view.portability_answer is None else end(view.portability_answer),
            )
            for lang, view in self.views.items()
        }
        return replace(self, views=views)

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and ``datasets``-friendly record."""
        record = {
            "case_id": self.case_id,
            "edit_language": self.edit_language,
            "views": {lang: {**asdict(view), "rephrases": list(view.rephrases)} for lang, view in self.views.items()},
        }
        return record | ({"machine_translated": list(self.machine_translated)} if self.machine_translated else {})

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> EditRequest:
        """Inverse of `to_dict` (also accepts ``datasets`` rows, where absent languages are ``None``)."""
        if not isinstance(record, Mapping) or not isinstance(record.get("views"), Mapping):
            got = type(record).__name__ if not isinstance(record, Mapping) else f"keys {sorted(map(str, record))}"
            raise EditRequestError(
                f"An edit request record needs 'views': a mapping from language to its version "
                f"({{'en': {{'prompt': ..., 'target': ...}}, ...}}, as EditRequest.to_dict writes); got {got}."
            )
        views = {lang: _as_view(view, lang) for lang, view in record["views"].items() if view is not None}
        case_id = record.get("case_id")
        return cls(
            views=views,
            edit_language=record.get("edit_language", "en"),
            case_id=None if case_id is None else str(case_id),
            machine_translated=tuple(record.get("machine_translated") or ()),
        )


_VIEW_FIELDS = {f.name for f in fields(FactView)}


def _as_view(version: FactView | Mapping[str, Any] | tuple[str, Target], language: str) -> FactView:
    if isinstance(version, FactView):
        return version
    if isinstance(version, tuple):
        if len(version) != 2:
            raise EditRequestError(f"The {language!r} version must be a (prompt, target) pair.")
        return FactView(prompt=version[0], target=version[1])
    if isinstance(version, Mapping):
        if "target" not in version or version.get("target") in (None, ""):
            raise EditRequestError(
                f"The {language!r} version has no target; every parallel version needs the new answer written "
                f"in {language!r} (or the label, for classifiers)."
            )
        unknown = set(version) - _VIEW_FIELDS
        if unknown:
            raise EditRequestError(f"Unknown field(s) {sorted(unknown)} in the {language!r} version.")
        return FactView(**{k: v for k, v in version.items() if v is not None or k in ("prompt", "target")})
    raise EditRequestError(f"Cannot read the {language!r} version from a {type(version).__name__}.")


__all__ = ["EditRequest", "EditRequestError", "FactView", "Target"]


def fact_key(edit_language: str, prompt: str) -> tuple[str, str]:
    """What makes two edits the same fact: the edit language and its prompt (Unicode form, case and spacing aside).

    A later edit of the same fact replaces the earlier one (in `MPNEditor` and in the edit manifest).
    """
    return str(edit_language), " ".join(unicodedata.normalize("NFKC", str(prompt)).casefold().split())
