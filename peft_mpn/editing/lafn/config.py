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
    subject_gate_depth: float | None = field(
        default=0.25,
        metadata={
            "help": "Subject gates: an edit's neurons act only once the text has mentioned the edit's subject, "
            "read at the block this far into the model (0.25: block 4 of Gemma-3-270M's 18; neurons located at or "
            "below it are left out), so the deltas stay silent on unrelated text and on the same question about "
            "another subject (peft_mpn.editing.lafn.gating). Needs the requests' subject field and a fast "
            "tokenizer; an edit whose subject is not found keeps open gates. None: no gates (the paper's LAFN).",
        },
    )
    subject_gate_neighbours: int = field(
        default=8,
        metadata={
            "min": 0,
            "help": "Neighbour questions per trained version the gate must stay shut on: the prompt with its "
            "subject replaced by this many others (from add_unrelated_from_requests' facts, the reference facts "
            "and earlier edits).",
        },
    )
    subject_gate_swaps: int = field(
        default=2,
        metadata={
            "min": 0,
            "help": "Versions of each trained prompt with its subject's first words swapped for this many other "
            "subjects' ('Pala Rural Municipality' for 'Kadrina Rural Municipality'), on which the gate must stay "
            "shut: a gate reads the subject's last token.",
        },
    )
    subject_gate_continuations: int = field(
        default=16,
        metadata={
            "min": 0,
            "help": "The gates must also stay shut on the first this many tokens the unedited model writes after each "
            "unrelated text (greedy, computed once): a gate fitted on prompts alone can open on text the model writes "
            "itself after an unrelated question, and the edit then changes that continuation. 0: prompts only.",
        },
    )
    subject_gate_memory: int = field(
        default=20000,
        metadata={
            "min": 1,
            "help": "Most gate-block FFN inputs of the unrelated texts (every token) kept for fitting gates.",
        },
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seeds the subject gates' draws (neighbour subjects, swapped first words, memory sample)."},
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
        if self.subject_gate_depth is not None and not 0 <= self.subject_gate_depth < 1:
            raise ValueError(f"subject_gate_depth must be in [0, 1) or None, got {self.subject_gate_depth!r}.")
        super().__post_init__()

    def for_run(self, *, edit_language: str, augment_languages: Sequence[str], seed: int) -> LAFNEditorConfig:
        """Locate and train on the edit language and exactly `augment_languages`."""
        return replace(self, train_languages=[edit_language, *augment_languages], seed=seed)
