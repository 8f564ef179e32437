"""How the MPN editor learns patches (T-Patcher's hyper-parameters plus MPN's cross-lingual sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ..base import EditorConfig


@dataclass
class MPNEditorConfig(EditorConfig):
    """How `MPNEditor` learns patches. Defaults follow Transformer-Patcher (Huang et al., 2023).

    MPN's part is `augment_languages` / `samples_per_step`: the edit batch mixes the edit with sampled
    parallel versions. `augment_languages=[]` turns that off, which is T-Patcher (`MPNEditorConfig.t_patcher()`).
    """

    # cross-lingual sampling (MPN)
    augment_languages: list[str] | None = field(
        default=None,
        metadata={
            "help": "Languages whose parallel versions join the edit batch. None: every parallel version a request "
            "carries; []: none (T-Patcher)."
        },
    )
    samples_per_step: int = field(
        default=4, metadata={"min": 0, "help": "Parallel versions sampled into each step's edit batch (per request)."}
    )
    include_edit_language: bool = field(
        default=True, metadata={"help": "Keep the edit-language version in every step's batch."}
    )
    key_init: Literal["edit", "mean"] = field(
        default="edit",
        metadata={
            "help": "Initialise a patch key from the edit-language FFN input ('edit') or from the mean over the "
            "edit and augmentation languages ('mean')."
        },
    )
    # patches
    patch_plan: Literal["edit", "per_language", "separate"] = field(
        default="per_language",
        metadata={
            "help": "'per_language': patches for the edit language's wrong tokens, shared by every language, and "
            "for each augmentation language's own wrong tokens (its answer may be a different string, which one "
            "shared value vector cannot produce in every language). 'edit': shared patches only, one per target "
            "slot any language gets wrong (T-Patcher's plan read literally; far fewer edits hold in every "
            "language, docs/mpn_patch_plans.md). 'separate': as "
            "per_language, but the edit language's patches are anchored in the edit language only, so no patch is "
            "trained to fire in several languages: sharper on same-relation neighbours, less general."
        },
    )
    max_patches_per_edit: int = field(
        default=10,
        metadata={
            "min": 1,
            "help": "Generation: one patch per wrong target token, at most this many (per language). A wrong token "
            "past the cap is never patched; zsRE's Russian and Chinese targets often have 6-17 wrong tokens. 5 was "
            "the default before: on 30 zsRE edits in a row 22 held when made against 25 at 10 (docs/how-to/"
            "edit-a-stream.md).",
        },
    )
    amplifier_init: float = field(
        default=10.0,
        metadata={
            "help": "Initial value of the element-wise amplifier a in the patch value v = z ⊙ a (z ~ N(0, I)); "
            "both are trained, so a large a makes the value move fast."
        },
    )
    warm_start: bool = field(
        default=True,
        metadata={
            "help": "Start each patch in closed form: a key that separates its edit from the memory bank and the "
            "edit's own silent inputs (Fisher's discriminant, pre-activation +margin on the edit, -margin on the "
            "most activated silent input), and a value along the edit loss's gradient, scaled by a line search. "
            "False: Transformer-Patcher's start (key q/||q||², value z ⊙ a with random z)."
        },
    )
    # losses
    label_smoothing: float = field(
        default=0.1, metadata={"min": 0, "below": 1, "help": "ε of the label-smoothed NLL edit loss."}
    )
    entropy_weight: float = field(
        default=0.1,
        metadata={"min": 0, "help": "Classification: weight of the entropy term subtracted from the edit loss."},
    )
    activation_weight: float = field(default=1.0, metadata={"min": 0, "help": "Weight of the activation loss l_a."})
    activation_topk: int = field(
        default=5, metadata={"min": 1, "help": "l_a averages exp(-a) over the k least-activated edit inputs."}
    )
    memory_weight: float | None = field(
        default=None,
        metadata={"min": 0, "help": "Weight c_m of the memory loss; None: 10 for generation, 5 for classification."},
    )
    memory_topk: int = field(
        default=1000, metadata={"min": 1, "help": "l_m averages over the k most-activated memories."}
    )
    memory_margin: float = field(
        default=3.0,
        metadata={"min": 0, "help": "The patch should stay below -margin on memories (and margin below the edit)."},
    )
    # optimisation
    learning_rate: float = field(default=1e-2, metadata={"above": 0, "help": "Adam learning rate."})
    weight_decay: float = field(default=0.01, metadata={"min": 0, "help": "Adam weight decay."})
    max_grad_norm: float = field(default=5.0, metadata={"above": 0, "help": "Gradient clipping norm."})
    max_steps: int = field(
        default=200, metadata={"min": 1, "help": "Step budget per edit (T-Patcher allows up to 2000)."}
    )
    patience: int = field(
        default=5,
        metadata={
            "min": 1,
            "help": "Once the edit holds in every trained language, stop when every memory is below -margin or "
            "l_m has not improved by 1% for this many steps.",
        },
    )
    stall_steps: int = field(
        default=30,
        metadata={
            "min": 0,
            "help": "Stop early when for this many steps no more trained versions hold and the edit loss over all of "
            "them is not 1% lower (a shared patch that cannot write some language's answer stalls there); the edit "
            "then ends as at the step budget. 0: always run to the budget.",
        },
    )
    # memory bank
    memory_size: int = field(
        default=20000,
        metadata={
            "min": 1,
            "help": "Most FFN inputs of unrelated text kept in the memory bank (subsampled), and most inputs of past "
            "edits (a uniform sample of all of them once a stream outgrows it).",
        },
    )
    memory_batch_size: int = field(default=16, metadata={"min": 1, "help": "Batch size when encoding memory texts."})
    add_edits_to_memory: bool = field(
        default=True, metadata={"help": "Append each edit's FFN inputs to the memory so later patches stay silent."}
    )
    keep_unfixed: bool = field(
        default=False,
        metadata={
            "help": "Keep the patches of an edit that does not hold in its edit language when the step budget runs "
            "out; False (default): roll it back, so the adapter is exactly as before and the result says "
            "'unfixed'. An edit that holds in the edit language but not in every augmentation language is kept.",
        },
    )
    silent_after_answer: int = field(
        default=4,
        metadata={
            "min": 0,
            "help": "Generation: positions after each trained answer where the patches must stay silent, like "
            "memory: the answer's last token and the next ones the model writes after it (greedy), so generation "
            "neither repeats the new answer nor drifts after it; 0: Transformer-Patcher's original (silent on "
            "unrelated text only).",
        },
    )
    neighbour_negatives: int = field(
        default=8,
        metadata={
            "min": 0,
            "help": "Neighbour questions per trained version: the edited prompt with its subject replaced by this "
            "many other subjects (from the unrelated facts given with add_unrelated_from_requests, and from earlier "
            "edits), on which the patches must stay silent, so an edit keys on its fact and not on the relation's "
            "wording; 0: off (Transformer-Patcher's original). Needs the requests' subject field.",
        },
    )
    neighbour_key_negatives: bool = field(
        default=False,
        metadata={
            "help": "Keep each patch's key, not only its subject gate, silent on the neighbour questions. False: the "
            "gate alone tells the edit's subject from the others, and the neighbour questions run only up to the "
            "gate's block (a quarter of the cost); on 20 CounterFact edits this kept locality (0.99 seen) and raised "
            "English generality from 0.60 to 0.75 exact match, since a key pushed off its relation's wording also "
            "misses the paraphrases. True: the behaviour before. Without gates the key always takes them.",
        },
    )
    subject_gate_depth: float | None = field(
        default=0.25,
        metadata={
            "help": "Subject gates (causal LMs): each patch adds its value only once the text has mentioned the "
            "edit's subject, read at the block this far into the model (0.25: a quarter of the way, block 4 of "
            "Gemma-3-270M's 18), so an edit stays silent on the same question about another subject. Needs the "
            "requests' subject field and a fast tokenizer; a patch whose subject is not found stays ungated. None: no "
            "gates (Transformer-Patcher's original).",
        },
    )
    subject_by_likeness: bool = field(
        default=True,
        metadata={
            "help": "Where a version's prompt does not mention its subject as written or inflected (a "
            "transliteration: 'Хамо Торникрафт' for 'Hamo Thornycroft'), its gate reads the token of its question "
            "whose gate-block input is most like the subject's last token in the request's other versions. False: "
            "that patch stays ungated (fires on every question its key matches).",
        },
    )
    subject_gate_swaps: int = field(
        default=2,
        metadata={
            "min": 0,
            "help": "Gates are also fitted to stay shut on each trained prompt with its subject's first words "
            "swapped for this many other subjects' first words ('Pala Rural Municipality' for 'Kadrina Rural "
            "Municipality'), since a gate reads the subject's last token. 0: cut subjects only (as before).",
        },
    )
    subject_gate_hardest: int = field(
        default=256,
        metadata={
            "min": 1,
            "help": "The gate fit's hinge on negatives averages this many, those scoring highest at each step (out of "
            "the memory, the neighbour questions and the cut subjects). Fewer weighs each negative still above "
            "the gate's threshold more, so no training negative is left open; more spreads the push over many.",
        },
    )
    # speed
    prefix_cache: bool = field(
        default=True,
        metadata={
            "help": "Compute the frozen blocks below the patch once per edit and train on the suffix only "
            "(identical results, much faster)."
        },
    )
    vocab_candidates: int | None = field(
        default=512,
        metadata={
            "min": 1,
            "help": "Generation: take the edit loss's softmax over the targets plus each decision point's top-k "
            "tokens (re-drawn at every full check) instead of the whole vocabulary; None for the exact softmax. "
            "Whether an edit holds is always judged on the full vocabulary.",
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for value init and cross-lingual sampling."})

    def __post_init__(self) -> None:
        if self.patch_plan not in ("edit", "per_language", "separate"):
            raise ValueError(f"patch_plan must be 'edit', 'per_language' or 'separate', got {self.patch_plan!r}.")
        if self.subject_gate_depth is not None and not 0 <= self.subject_gate_depth < 1:
            raise ValueError(f"subject_gate_depth must be in [0, 1) or None, got {self.subject_gate_depth!r}.")
        if self.key_init not in ("edit", "mean"):
            raise ValueError(f"key_init must be 'edit' or 'mean', got {self.key_init!r}.")
        if self.augment_languages is not None:
            self.augment_languages = list(self.augment_languages)
        super().__post_init__()

    @property
    def augmented(self) -> bool:
        return self.augment_languages != [] and self.samples_per_step > 0

    @classmethod
    def t_patcher(cls, **overrides: object) -> MPNEditorConfig:
        """Transformer-Patcher: the same editor with cross-lingual augmentation off."""
        return cls(**{"patch_plan": "edit", **overrides, "augment_languages": []})

    def for_run(self, *, edit_language: str, augment_languages: Sequence[str], seed: int) -> MPNEditorConfig:
        """Train on exactly `augment_languages` (besides the edit language), seeded with `seed`."""
        return replace(self, augment_languages=list(augment_languages), seed=seed)
