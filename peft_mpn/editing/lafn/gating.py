"""Subject gates for LAFN: an edit's neurons act only once the text has mentioned the edit's subject.

A LAFN edit is a delta on the down-projection columns of a few located neurons, so it acts wherever those neurons
are active, and they are active on much unrelated text too (the located neurons are only 1.38x as active on the fact
as elsewhere, `docs/lafn_neurons.md`): no update rule on them is both effective on the fact and silent elsewhere.
MPN met the same problem on same-relation neighbours and answered it with subject gates (`peft_mpn.tuners.gate`): a
linear key on an early block's FFN input, fitted to fire at the last token of the edit's subject in every trained
version and nowhere in unrelated text, in the edited question asked about other subjects, or in the question with
the subject cut or its first words swapped. LAFN's neurons get the same gates, fitted the same way
(`SubjectGates.fit_views`), one per edit, on every row the edit trains (each version's prompt and rephrases), before
its deltas are trained, so the deltas are trained as they will act. Besides the unrelated texts, the gate must stay
shut on what the model writes after them (`subject_gate_continuations`): a gate fitted on prompts alone opened on
generated text that no prompt resembled. The gate reads a block below every located neuron; neurons located at or
below it are left out of the edit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import torch
from tqdm.auto import tqdm

from ...data.requests import EditRequest
from ...tuners.ffn import num_layers
from ...tuners.gate import SubjectGate
from ..mpn.memory import MemoryBank
from ..mpn.neighbours import SubjectPool
from ..mpn.subject_gate import SubjectGates

logger = logging.getLogger(__name__)

_BATCH = 32  # unrelated texts per forward pass when the gate memory is built


class LAFNGates:
    """The subject gates of a `LAFNEditor`'s edits: where the gate reads, what it must stay shut on, the fit.

    Args:
        editor: the LAFN editor (its model, tokenizer, config, adapter and unrelated texts are read when needed).
    """

    def __init__(self, editor: Any) -> None:
        self.editor = editor
        self.subjects = SubjectPool()  # other subjects, for the neighbour questions
        self.memory = MemoryBank(editor.config.subject_gate_memory, editor.config.seed)
        self._remembered = 0  # how many of the editor's unrelated texts the memory holds
        self._fitter: SubjectGates | None = None
        self._generator = torch.Generator().manual_seed(editor.config.seed)  # draws neighbour subjects
        self._swaps = torch.Generator().manual_seed(editor.config.seed)  # draws swapped first words

    @property
    def layer(self) -> int:
        """The block whose FFN input the gates read: the adapter's `gate_layer` where it has one (a loaded gated
        adapter keeps its own), else `subject_gate_depth` of the model's blocks."""
        tuner = self.editor.tuner
        gate_layer = None if tuner is None else tuner.peft_config[self.editor.adapter_name].gate_layer
        if gate_layer is not None:
            return gate_layer
        return int(self.editor.config.subject_gate_depth * num_layers(self.editor.base_model.config))

    def above_gate(self, located: dict[int, list[int]]) -> dict[int, list[int]]:
        """`located` without the layers at or below the gate's block (a gated neuron lies above its gate)."""
        kept = {layer: indices for layer, indices in located.items() if layer > self.layer}
        if len(kept) < len(located):
            logger.info(
                "LAFN: left out neurons in blocks %s, at or below block %d whose FFN input the subject gates read "
                "(LocatorConfig.lowest_layer_fraction keeps the search above it).",
                sorted(set(located) - set(kept)),
                self.layer,
            )
        return kept

    def gate(self) -> SubjectGate:
        """The adapter's `SubjectGate` (enabled at `subject_gate_depth` if the adapter has none yet)."""
        return self.editor.tuner.enable_subject_gates(self.layer, self.editor.adapter_name)

    def reset(self) -> None:
        """Forget the fitter (its model is gone) and the subjects of edits; the memory of unrelated text stays."""
        self._fitter = None
        self.subjects.clear_edits()
        self._generator.manual_seed(self.editor.config.seed)
        self._swaps.manual_seed(self.editor.config.seed)

    def state_dict(self) -> dict[str, Any]:
        """What a stream's checkpoint needs to go on as if uninterrupted: the subjects and the random draws."""
        return {
            "subjects": self.subjects.state_dict(),
            "draws": [self._generator.get_state(), self._swaps.get_state()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.subjects.load_state_dict(state["subjects"])
        self._generator.set_state(state["draws"][0])
        self._swaps.set_state(state["draws"][1])

    def _fitter_for(self, gate: SubjectGate) -> SubjectGates:
        editor = self.editor
        if self._fitter is None or self._fitter.gate is not gate or self._fitter.model is not editor.model:
            self._fitter = SubjectGates(
                gate,
                editor.model,
                editor.tokenizer,
                self.memory,
                editor._pad,
                pool=self.subjects,
                swaps=editor.config.subject_gate_swaps,
                seed=editor.config.seed,
            )
            self._fitter.generator = self._swaps
        texts = editor.unrelated_texts[self._remembered :]
        written = editor.config.subject_gate_continuations
        for start in tqdm(
            range(0, len(texts), _BATCH), desc="gate memory", disable=not editor.progress or not texts, leave=False
        ):
            batch = texts[start : start + _BATCH]
            self.memory.add_unrelated(self._fitter.text_inputs(batch))
            if written:
                with editor._disabled():
                    continuations = self._fitter.continuation_inputs(batch, written)
                if continuations is not None:
                    self.memory.add_unrelated(continuations)
        self._remembered = len(editor.unrelated_texts)
        return self._fitter

    def fit(self, requests: Sequence[EditRequest], neurons: dict[int, list[int]]) -> bool:
        """Fit one gate for `requests`' trained versions and put it on their `neurons`; False where it stays open
        (a subject that cannot be placed, or no unrelated text to fit against)."""
        fitter = self._fitter_for(self.gate())
        rephrases = self.editor.config.use_rephrases
        views = [  # every trained row: each version's prompt and, when they are trained on, its rephrases
            (replace(view, prompt=prompt), language, r)
            for r, request in enumerate(requests)
            for language in self.editor.training_languages(request)
            for view in [request.views[language]]
            for prompt in [view.prompt, *(view.rephrases if rephrases else ())]
        ]
        count = self.editor.config.subject_gate_neighbours
        texts = self.subjects.neighbour_texts(
            [(view, language) for view, language, _ in views], count, self._generator
        )
        fitter.neighbours = fitter.text_inputs(texts) if texts else None
        fitted = fitter.fit_views([v for v, _, _ in views], [r for _, _, r in views], [lang for _, lang, _ in views])
        if fitted is None:
            logger.info("LAFN edit %s: its subject gate stays open.", [r.case_id for r in requests])
            return False
        self.editor.tuner.gate_neurons(neurons, *fitted, adapter_name=self.editor.adapter_name)
        return True

    def add_unrelated(self, requests: Iterable[EditRequest]) -> None:
        self.subjects.add_unrelated(requests)

    def add_edits(self, requests: Iterable[EditRequest]) -> None:
        """Later edits' gates stay shut on these facts' questions."""
        self.subjects.add_edits(requests)


__all__ = ["LAFNGates"]
