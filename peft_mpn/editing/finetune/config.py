"""How FT-L and FT-M fine-tune (EasyEdit's FT hyper-parameters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..base import EditorConfig

Objective = Literal["prompt_last", "target_new"]


@dataclass
class FTEditorConfig(EditorConfig):
    """How `FTEditor` fine-tunes. Defaults follow EasyEdit's FT hyper-parameters (``hparams/FT``).

    ``FTEditorConfig.ft_l()`` and ``FTEditorConfig.ft_m()`` differ only in ``objective``.
    """

    objective: Objective = field(
        default="prompt_last",
        metadata={
            "help": "'prompt_last' (FT-L): NLL of the target tokens at the prompt's last position. 'target_new' "
            "(FT-M): teacher-forced NLL over the whole target span, the prompt masked."
        },
    )
    layer: int = field(
        default=-1,
        metadata={
            "help": "Block whose FFN down-projection is fine-tuned; negative counts from the end. Default: the "
            "last block, the one MPN patches."
        },
    )
    norm_constraint: float | None = field(
        default=5e-4,
        metadata={
            "above": 0,
            "help": "ε of the L∞ constraint |W - W₀| ≤ ε, W₀ the weight before this edit (EasyEdit's constrained "
            "FT for GPT-2 XL; its Llama configs turn it off). None: unconstrained.",
        },
    )
    learning_rate: float = field(default=5e-4, metadata={"above": 0, "help": "Adam learning rate (EasyEdit: 5e-4)."})
    weight_decay: float = field(default=0.0, metadata={"min": 0, "help": "Adam weight decay (EasyEdit: 0)."})
    max_steps: int = field(
        default=25,
        metadata={
            "min": 1,
            "help": "Step budget per edit (EasyEdit's num_steps, 25). It stops earlier once every target token is "
            "the argmax or the loss is below 0.01.",
        },
    )
    augment_languages: list[str] | None = field(
        default_factory=list,
        metadata={
            "help": "Parallel versions trained together with the edit ('FT with augmentation'). [] (default): the "
            "edit language only; None: every parallel version a request carries; a list: those languages."
        },
    )
    prefix_cache: bool = field(
        default=True,
        metadata={"help": "Replay the frozen blocks below the tuned layer instead of recomputing them (exact)."},
    )

    def __post_init__(self) -> None:
        if self.objective not in ("prompt_last", "target_new"):
            raise ValueError(f"objective must be 'prompt_last' (FT-L) or 'target_new' (FT-M), got {self.objective!r}.")
        if self.augment_languages is not None:
            self.augment_languages = list(self.augment_languages)
        super().__post_init__()

    @classmethod
    def ft_l(cls, **overrides: Any) -> FTEditorConfig:
        """FT-L: the loss at the prompt's last position."""
        return cls(**{**overrides, "objective": "prompt_last"})

    @classmethod
    def ft_m(cls, **overrides: Any) -> FTEditorConfig:
        """FT-M: teacher-forced NLL over the whole target."""
        return cls(**{**overrides, "objective": "target_new"})

    def for_run(self, *, edit_language: str, augment_languages: Sequence[str], seed: int) -> FTEditorConfig:
        """Train on the edit language and exactly `augment_languages` ([]: FT-L/FT-M proper)."""
        return replace(self, augment_languages=list(augment_languages))
