"""How in-context editing builds its demonstration."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import EditorConfig


@dataclass
class ICLEditorConfig(EditorConfig):
    """How `ICLEditor` builds the in-context demonstration."""

    template: str = field(
        default="New fact: {prompt} {target}\n",
        metadata={"help": "One demonstration, with {prompt} and {target} (the edit-language view of the fact)."},
    )
    num_demonstrations: int = field(
        default=1,
        metadata={
            "min": 1,
            "help": "Stored facts put in front of each prompt (the most similar ones, by token overlap).",
        },
    )

    def __post_init__(self) -> None:
        missing = [key for key in ("{prompt}", "{target}") if key not in self.template]
        if missing:
            raise ValueError(f"The demonstration template needs {' and '.join(missing)}; got {self.template!r}.")
        super().__post_init__()
