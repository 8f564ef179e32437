"""How the LAFN editor locates neurons and trains their deltas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ...locating import LocatorConfig
from ..base import EditorConfig


@dataclass
class LAFNEditorConfig(EditorConfig):
    """How `LAFNEditor` learns an edit."""

    train_languages: list[str] | None = field(
        default=None,
        metadata={
            "help": "Languages whose versions the edit is trained (and its neurons located) on. None: every "
            "language a request carries (multilingual editing, the LAFN paper's setting); ['en']: cross-lingual "
            "editing from English only."
        },
    )
    use_rephrases: bool = field(default=True, metadata={"help": "Train on each version's paraphrases too."})
    locator: LocatorConfig | None = field(
        default=None, metadata={"help": "A peft_mpn.locating.LocatorConfig (default: its defaults)."}
    )
    update_input: bool = field(
        default=False, metadata={"help": "Also learn deltas on the located neurons' up/gate rows."}
    )
    cached: bool = field(
        default=False,
        metadata={"help": "Apply the deltas only where the located neurons are active (see LAFNConfig.cached)."},
    )
    activation_threshold: float | None = field(
        default=None, metadata={"help": "Threshold of the cached update (required with cached=True)."}
    )
    learning_rate: float = field(default=2e-2, metadata={"above": 0, "help": "Adam learning rate of the deltas."})
    max_steps: int = field(default=100, metadata={"min": 1, "help": "Step budget per edit."})
    locality_weight: float = field(
        default=1.0, metadata={"min": 0, "help": "Weight of KL(unedited ‖ edited) on the unrelated locality texts."}
    )
    norm_weight: float = field(
        default=1e-3, metadata={"min": 0, "help": "Weight of the squared-norm penalty on the deltas."}
    )
    max_locality_texts: int = field(default=8, metadata={"min": 0, "help": "Most unrelated texts in the KL term."})
    vocab_candidates: int | None = field(
        default=512,
        metadata={"min": 1, "help": "Softmax of the edit loss over targets + top-k candidates (None: exact)."},
    )
    prefix_cache: bool = field(
        default=True, metadata={"help": "Replay the frozen blocks below the lowest edited layer (exact, faster)."}
    )
    preserved_energy: float | None = field(
        default=None,
        metadata={
            "above": 0,
            "max": 1,
            "help": "Keep the deltas out of the directions that carry this share of the located neurons' activation "
            "energy on the unrelated texts (every position, unedited model): after each step the edit's down-"
            "projection deltas are projected onto the rest, so text like the unrelated texts hardly moves "
            "(AlphaEdit's preservation projection, on the located neurons). None (default): no projection. "
            "Up/gate deltas (update_input) are not projected. Off by default: at 0.99 with the bench's 25 steps "
            "only 4 of 30 CounterFact edits on Gemma-3-270M held (docs/concepts/language-agnostic-neurons.md).",
        },
    )
    keep_unfixed: bool = field(
        default=False,
        metadata={
            "help": "Keep an edit that does not hold in every training language within max_steps. False (default): "
            "it is rolled back, neurons and deltas, and reported as unfixed."
        },
    )

    def __post_init__(self) -> None:
        if self.cached and self.activation_threshold is None:
            raise ValueError("cached=True needs an activation_threshold (the cached update's gate); set one.")
        super().__post_init__()

    def for_run(self, *, edit_language: str, augment_languages: Sequence[str], seed: int) -> LAFNEditorConfig:
        """Locate and train on the edit language and exactly `augment_languages`."""
        return replace(self, train_languages=[edit_language, *augment_languages])
