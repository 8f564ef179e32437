"""How an edit's patches learn their subject gates (the tuner side is `peft_mpn.tuners.gate`).

A gate is a linear key on the FFN input of an early block. For each patch it is fitted, after the patch itself, to
fire at the last token of the edit's subject in every version the patch was trained on, and nowhere in unrelated
text (a memory bank of every position of the unrelated texts, as the patches' own bank) nor anywhere in the edited
question asked about other subjects (`SubjectPool`'s neighbours) nor anywhere in the edited question with its
subject cut to its last words (a subject's last token is where its gate reads, and "SAM Colombia" must not open on
"Colombia") or with its first words swapped for another subject's ("Pala Rural Municipality" for "Kadrina Rural
Municipality": the same last token, another subject). Subjects are found as `peft_mpn.data.subjects.find_subject`
finds them (inflected in a translation too); where a translated prompt does not mention it as written (a
transliteration: "Хамо Торникрафт" for "Hamo Thornycroft"), the gate reads the token of that question whose input
is most like the subject's last token in the request's other versions. A patch whose subject is still not placed
keeps an open gate: it is exactly as ungated.
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...data.requests import EditRequest
from ...data.subjects import find_subject
from ...devices import input_device
from ...shared_prefix import SharedPrefix
from ...tuners.ffn import num_layers
from ...tuners.gate import OPEN, SubjectGate
from ...tuners.mpn.layer import PatchSet
from ..common import frozen
from ..prefix import run_until
from .memory import MemoryBank
from .neighbours import SubjectPool
from .planning import EditRows, PlannedPatch

logger = logging.getLogger(__name__)

_STEPS = 150
_MARGIN = 1.0
_PUNCTUATION = string.punctuation + string.whitespace + "？。、，「」《》『』"


class SubjectGates:
    """Fits the subject gates of an editor's patches; holds the gate block's memory of unrelated text.

    Args:
        gate: the adapter's `SubjectGate` (`MPNModel.enable_subject_gates`).
        model: the PEFT model.
        tokenizer: its (fast) tokenizer: subjects are found by character offsets.
        memory: the bank of unrelated FFN inputs at the gate's block.
        pad: the pad token id.
        by_likeness: place a subject that a prompt does not mention as written by its likeness to the other
            versions' (`MPNEditorConfig.subject_by_likeness`).
        hardest: how many of the highest-scoring negatives the fit's hinge averages
            (`MPNEditorConfig.subject_gate_hardest`).
        pool: other subjects per language, whose first words replace a subject's in its swapped-head negatives.
        swaps: how many swapped-head negatives per cut of a subject (`MPNEditorConfig.subject_gate_swaps`).
        seed: seeds the draw of those first words.
    """

    def __init__(
        self,
        gate: SubjectGate,
        model: Any,
        tokenizer: Any,
        memory: MemoryBank,
        pad: int,
        by_likeness: bool = True,
        hardest: int = 256,
        pool: SubjectPool | None = None,
        swaps: int = 0,
        seed: int = 0,
    ) -> None:
        self.gate, self.model, self.tokenizer, self.memory, self.pad = gate, model, tokenizer, memory, pad
        self.by_likeness, self.hardest, self.pool, self.swaps = by_likeness, hardest, pool, swaps
        self.generator = torch.Generator().manual_seed(seed)
        self.neighbours: torch.Tensor | None = None  # the current edit's neighbour questions (`neighbour_inputs`)
        if not getattr(tokenizer, "is_fast", False):
            logger.warning("Subject gates need a fast tokenizer (character offsets); patches stay ungated.")

    @classmethod
    def for_editor(cls, editor: Any) -> SubjectGates | None:
        """The gates of an `MPNEditor`'s adapter (enabled at `subject_gate_depth` unless it has some already);
        None where its config turns them off or the model is a classifier or an encoder."""
        depth = editor.config.subject_gate_depth
        tuner, name = editor.tuner, editor.adapter_name
        gate = tuner.subject_gate(name)
        if gate is None and (depth is None or editor.is_classifier or editor.is_encoder):
            return None
        if gate is None:
            layer = int(depth * num_layers(tuner.model.config))
            if layer >= min(tuner.peft_config[name].layers_to_transform):
                logger.warning(
                    "No block before the patched one at subject_gate_depth=%s: patches stay ungated.", depth
                )
                return None
            gate = tuner.enable_subject_gates(layer, name)
        memory = MemoryBank(editor.config.memory_size, editor.config.seed)
        config = editor.config
        return cls(
            gate,
            editor.model,
            editor.tokenizer,
            memory,
            editor._pad,
            config.subject_by_likeness,
            config.subject_gate_hardest,
            editor.subjects,
            config.subject_gate_swaps,
            config.seed,
        )

    def _inputs(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
        """Gate-block FFN inputs [B, T, d] of `texts` (left-padded), their mask, and each text's encoding."""
        encodings = [self.tokenizer(t, truncation=True, max_length=128, return_offsets_mapping=True) for t in texts]
        h, mask = self._row_inputs([e["input_ids"] for e in encodings])
        return h, mask, encodings

    def _row_inputs(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate-block FFN inputs [B, T, d] of token `rows` (left-padded) and their mask."""
        shared = SharedPrefix(rows, self.pad)
        with frozen(self.model), self.gate.record_inputs() as recorded:
            inputs = shared.inputs(self.model)
            run_until(self.model, self.gate.ffn, inputs)
        h = recorded[-1]
        if len(recorded) > 1:  # the shared prefix ran on its own: put its inputs back in front of every row
            h = torch.cat([recorded[0].expand(len(rows), -1, -1), h], dim=1)
        return h.float(), inputs["attention_mask"].bool()

    def continuation_inputs(self, texts: Sequence[str], tokens: int) -> torch.Tensor | None:
        """The gate block's FFN inputs at the first `tokens` tokens the model writes greedily after each of `texts`
        ([N, d]; run it with the edits switched off). A gate is read there at inference, and a gate fitted only on
        prompts can open on text the model itself writes after an unrelated question."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]
        batch = self.tokenizer.pad({"input_ids": encoded}, padding_side="left", return_tensors="pt")
        device = input_device(self.model)
        with frozen(self.model), torch.no_grad():
            written = self.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=tokens,
                do_sample=False,
                pad_token_id=self.pad,
            )[:, batch["input_ids"].shape[1] :].tolist()
        ends = {self.pad, getattr(self.tokenizer, "eos_token_id", None)}
        new = [row[: next((i for i, t in enumerate(row) if t in ends), len(row))] for row in written]
        rows = [prompt + extra for prompt, extra in zip(encoded, new) if extra]
        if not rows:
            return None
        h, _ = self._row_inputs(rows)  # left-padded: every row's written tokens are its last ones
        return torch.cat([h[i, h.shape[1] - len(extra) :] for i, extra in enumerate(e for e in new if e)])

    def _subject_vectors(self, views: Sequence[Any], owners: Sequence[int]) -> list[torch.Tensor | None]:
        """The gate-block input at each view's subject's last token (None where it cannot be placed). `owners`:
        each view's request; with `by_likeness`, a view whose prompt does not mention its subject (a
        transliteration) takes the token of its question most like its request's other versions' subjects."""
        if not getattr(self.tokenizer, "is_fast", False):
            return [None] * len(views)
        h, mask, encodings = self._inputs([view.prompt for view in views])
        offsets = [h.shape[1] - len(encoding["input_ids"]) for encoding in encodings]  # left padding
        found: list[torch.Tensor | None] = []
        for row, (view, encoding) in enumerate(zip(views, encodings)):
            span = find_subject(view.prompt, view.subject)
            end = span[1] if span else -1
            tokens = [i for i, (a, b) in enumerate(encoding["offset_mapping"]) if b > a and a < end <= b]
            found.append(h[row, offsets[row] + tokens[0]] if span and tokens else None)
        if not self.by_likeness:
            return found
        mentioned = list(found)  # placed by likeness: not a model for another version's
        for row, view in enumerate(views):
            siblings = [r for r in range(len(views)) if owners[r] == owners[row]]
            known = [mentioned[r] for r in siblings if mentioned[r] is not None]
            if found[row] is not None or not known:
                continue
            start, end = _question_span(view.prompt, [views[r].prompt for r in siblings])
            spans = encodings[row]["offset_mapping"]
            candidates = [
                t for t, (a, b) in enumerate(spans) if start <= a < b <= end and view.prompt[a:b].strip(_PUNCTUATION)
            ]
            if candidates:
                centre = nn.functional.normalize(torch.stack(known).mean(0), dim=0)
                inputs = h[row, [offsets[row] + t for t in candidates]]
                found[row] = inputs[int((nn.functional.normalize(inputs, dim=-1) @ centre).argmax())]
        return found

    def _partial_subject_vectors(self, views: Sequence[Any], languages: Sequence[str]) -> torch.Tensor | None:
        """Gate-block inputs at every position of each prompt with its subject cut to its last words ("… of
        Barcelona", "… Barcelona" for "Autonomous University of Barcelona"), and with those last words after another
        subject's first word ("Pala Rural Municipality" for "Kadrina Rural Municipality", `swaps` per cut, from the
        pool's subjects in the view's language): a gate must key on the whole subject, not on its last words."""
        texts = []
        for view, language in zip(views, languages):
            span = find_subject(view.prompt, view.subject)
            if span is None:
                continue
            (start, end), words = span, view.prompt[span[0] : span[1]].split()
            heads = self._other_heads(language, words[0]) if len(words) > 1 and self.swaps else []
            for k in range(1, len(words)):
                rest = " ".join(words[k:])
                picks = torch.randperm(len(heads), generator=self.generator)[: self.swaps].tolist()
                for subject in [rest, *(f"{heads[i]} {rest}" for i in picks)]:
                    texts.append(view.prompt[:start] + subject + view.prompt[end:])
        return self.text_inputs(texts) if texts else None

    def text_inputs(self, texts: Sequence[str]) -> torch.Tensor:
        """The gate block's FFN inputs at every text position of `texts` ([N, d]; padding left out)."""
        h, mask, _ = self._inputs(texts)
        return h[mask]

    def _other_heads(self, language: str, head: str) -> list[str]:
        """First words of the pool's subjects in `language`, other than `head`."""
        subjects = self.pool.subjects(language) if self.pool is not None else []
        firsts = dict.fromkeys(words[0] for words in (s.split() for s in subjects) if words)
        return [first for first in firsts if first.casefold() != head.casefold()]

    def _negatives(self, views: Sequence[Any], languages: Sequence[str]) -> list[torch.Tensor]:
        """Where gates fitted for `views` must stay shut: the memory, the neighbour questions (consumed) and the
        views with their subjects cut or swapped."""
        partial = self._partial_subject_vectors(views, languages)
        negatives = [v for v in (self.memory.vectors, self.neighbours, partial) if v is not None]
        self.neighbours = None
        return negatives

    def fit_views(
        self, views: Sequence[Any], owners: Sequence[int], languages: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One gate (key `[d]`, bias) open at the subject of every one of `views` (`FactView`s; `owners`: each
        one's request, `languages`: its language) and shut on the negatives, as the module says; None where a
        subject cannot be placed or the fit misses one: the gate stays open."""
        vectors = self._subject_vectors(views, owners)
        negatives = self._negatives(views, languages)
        if not negatives or any(vector is None for vector in vectors):
            return None
        anchors = torch.stack(vectors)
        keys, bias = fit_gates([anchors], torch.cat([n.to(anchors.device) for n in negatives]).float(), self.hardest)
        return (keys[0], bias[0]) if bool((anchors @ keys[0] + bias[0] > 0).all()) else None

    def fit(
        self,
        patches: PatchSet,
        plan: Sequence[PlannedPatch],
        rows: EditRows,
        requests: Sequence[EditRequest],
        inputs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> PatchSet:
        """`patches` with a gate each, fitted as the module says (against the memory and `neighbours`, which this
        consumes). Each gate opens on the subjects of its patch's planned rows and, given the edit batch's FFN
        `inputs` ([B, T, d]) and decision `positions` ([B, T], -1: none), of every other row of its request where
        the patch fires: the edit was trained with the patch firing there, and holds only if it still does."""
        views = [requests[rows.request[r]].views[rows.language[r]] for r in range(len(rows.request))]
        vectors = self._subject_vectors(views, [int(r) for r in rows.request])
        trained = sorted({int(r) for patch in plan for r in patch.rows})
        negatives = self._negatives([views[r] for r in trained], [rows.language[r] for r in trained])
        fires = _firing(patches, inputs, positions) if inputs is not None and positions is not None else None
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, patch in enumerate(plan):
            own = {int(r) for r in patch.rows}
            if fires is not None:
                own |= {r for r in range(len(rows.request)) if rows.request[r] == patch.request and fires[index, r]}
            groups.setdefault(tuple(sorted(own)), []).append(index)
        d = patches.keys.shape[1]
        gate_keys, gate_bias = torch.zeros(len(plan), d), torch.full((len(plan),), OPEN)  # fitted where vectors are
        fittable = [g for g in groups if all(vectors[r] is not None for r in g)]
        if fittable and negatives:
            positives = [torch.stack([vectors[r] for r in g]) for g in fittable]
            device = positives[0].device
            keys, bias = fit_gates(positives, torch.cat([n.to(device) for n in negatives]).float(), self.hardest)
            gate_keys, gate_bias = gate_keys.to(device), gate_bias.to(device)
            for g, anchors, key, b in zip(fittable, positives, keys, bias):
                if bool((anchors @ key + b > 0).all()):  # a gate that misses one of its subjects stays open
                    gate_keys[groups[g]], gate_bias[groups[g]] = key, b
        like = patches.keys
        return PatchSet(patches.keys, patches.bias, patches.values, gate_keys.to(like), gate_bias.to(like))


def _firing(patches: PatchSet, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[P, B]: whether each patch's key fires (pre-activation above 0) at some decision position of each row."""
    at = inputs[torch.arange(len(inputs), device=inputs.device)[:, None], positions.clamp_min(0)]  # [B, T, d]
    scores = torch.einsum("btd,pd->pbt", at.float(), patches.keys.float()) + patches.bias.float()[:, None, None]
    return ((scores > 0) & (positions >= 0)[None]).any(-1)


def _question_span(prompt: str, versions: Sequence[str]) -> tuple[int, int]:
    """The characters of `prompt` that differ from its request's other `versions` at the start and the end (the
    question, without a prompt format's shared few-shot prefix and answer cue)."""
    start = len(os.path.commonprefix([prompt, *versions]))
    end = len(prompt) - len(os.path.commonprefix([prompt[::-1], *(v[::-1] for v in versions)]))
    return (start, end) if start < end else (0, len(prompt))


def fit_gates(
    positives: Sequence[torch.Tensor], negatives: torch.Tensor, hardest: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear key per group of `positives` ([n_g, d] each): above the margin on its group, below minus the
    margin on the `hardest` highest-scoring `negatives` ([N, d]) of each step; hinge losses, Adam, a fixed number
    of steps (no data-dependent stop, so a result is reproducible). Returns keys [G, d] and biases [G] (the scale
    folded in)."""
    centres = torch.stack([p.mean(0) for p in positives])
    scale = centres.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    keys = (centres / scale).clone().requires_grad_(True)
    bias = torch.zeros(len(positives), device=keys.device, requires_grad=True)
    optimizer = torch.optim.Adam([keys, bias], lr=0.02)
    hardest = min(hardest, len(negatives))
    for _ in range(_STEPS):
        unit = keys * (10 / scale)
        positive = torch.cat([relu_gap(p @ k + b) for p, k, b in zip(positives, unit, bias)]).mean()
        negative = torch.relu(_MARGIN + negatives @ unit.T + bias).topk(hardest, dim=0).values.mean()
        optimizer.zero_grad()
        (positive + negative).backward()
        optimizer.step()
    return (keys * (10 / scale)).detach(), bias.detach()


def relu_gap(scores: torch.Tensor) -> torch.Tensor:
    return torch.relu(_MARGIN - scores)


__all__ = ["SubjectGates", "fit_gates"]
