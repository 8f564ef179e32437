"""The LAFN editor: locate language-agnostic factual neurons, then learn deltas on just those neurons."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ...batching import (
    collate_targets,
    encode_targets,
    left_padded_positions,
    pad_token_id,
    takes_logits_to_keep,
    window_logits_at_targets,
)
from ...data.requests import EditRequest, EditRequestError
from ...devices import check_placed, input_device
from ...locating import LocatorConfig, estimate_generic_neurons, locate_neurons
from ...tuners.ffn import ffn_blocks, ffn_spec, locate_block
from ...tuners.gate import SubjectGate
from ...tuners.lafn import LAFNConfig, LAFNModel
from ..base import Editor, EditResult, unrelated_strings
from ..common import CandidateVocabulary, check_generation_requests, fixed_languages, frozen
from ..prefix import PrefixCache
from .config import LAFNEditorConfig
from .gating import LAFNGates
from .objective import LAFNTrainerObjective, delta_norm
from .preserve import UnrelatedActivations, edit_projections, project
from .state import LAFNEditorState

logger = logging.getLogger(__name__)


@dataclass
class LAFNEditResult(EditResult):
    """An `EditResult` that also says which neurons the edit trained and which it found taken.

    ``status`` may also be ``"collided"``: every located neuron already belonged to an earlier edit.
    """

    neurons: dict[int, list[int]] = field(default_factory=dict)  # neurons trained by this edit
    collisions: dict[int, list[int]] = field(default_factory=dict)  # located neurons already owned by earlier edits


class LAFNEditor(LAFNEditorState, Editor):
    """Locates the FFN neurons a fact activates across languages and trains deltas on just those.

    Args:
        model: a plain transformers causal LM (the LAFN adapter is created at the first edit, once its neurons
            are known) or a PeftModel that already carries a LAFN adapter.
        tokenizer: its tokenizer.
        config: editing hyper-parameters.
        unrelated_texts: unrelated prompts: the first `max_locality_texts` for the KL locality term, all of them
            for the preservation projection (`preserved_energy`); keep them apart from the prompts you judge
            locality on.
        reference_requests: other facts whose shared neurons are "generic" (see ``LocatorConfig.
            generic_facts_fraction``); estimated once per set of languages and reused for every edit.
    """

    uses_unrelated_text = True

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        config: LAFNEditorConfig | None = None,
        *,
        unrelated_texts: Iterable[str] | None = None,
        reference_requests: Sequence[EditRequest] | None = None,
        adapter_name: str = "default",
        progress: bool = True,
    ) -> None:
        check_placed(model)
        if isinstance(model, PeftModel) and not isinstance(model.base_model, LAFNModel):
            raise TypeError(f"The model carries a {type(model.base_model).__name__} adapter, not LAFN.")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or LAFNEditorConfig()
        self.adapter_name = adapter_name
        self.progress = progress
        self._pad = pad_token_id(tokenizer)
        self._keeps_logits = takes_logits_to_keep(self.base_model)
        self.unrelated_texts: list[str] = []
        self._activations: UnrelatedActivations | None = None  # of `unrelated_texts`, read when first needed
        self.reference_requests = list(reference_requests or [])
        self._generic: dict[tuple[str, ...], Any] = {}
        gated = self.config.subject_gate_depth is not None and not ffn_spec(self.base_model).encoder
        self.gates = LAFNGates(self) if gated else None
        if self.gates is not None:
            self.gates.add_unrelated(self.reference_requests)
        if unrelated_texts is not None:
            self.add_unrelated_texts(unrelated_texts)

    # -- set-up ----------------------------------------------------------------------------------------------
    def add_unrelated_texts(self, texts: Iterable[str] | Any) -> None:
        """Unrelated prompts: the first `max_locality_texts` enter the KL locality term, every one the
        preservation projection (`LAFNEditorConfig.preserved_energy`)."""
        self.unrelated_texts = list(dict.fromkeys(self.unrelated_texts + unrelated_strings(texts)))
        self._activations = None

    def add_unrelated_from_requests(self, requests: Iterable[EditRequest]) -> None:
        """Use the locality prompts of `requests` as unrelated text, and their subjects for the subject gates'
        neighbour questions."""
        requests = list(requests)
        super().add_unrelated_from_requests(requests)
        if self.gates is not None:
            self.gates.add_unrelated(requests)

    @property
    def base_model(self) -> PreTrainedModel:
        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    @property
    def tuner(self) -> LAFNModel | None:
        return self.model.base_model if isinstance(self.model, PeftModel) else None

    def reset(self) -> None:
        """Remove the LAFN adapter: back to the base model."""
        if isinstance(self.model, PeftModel):
            self.model = self.model.unload()
        if self.gates is not None:
            self.gates.reset()

    def subject_gate(self) -> SubjectGate | None:
        """The adapter's `SubjectGate` (None: no adapter yet, or no gates)."""
        return None if self.tuner is None else self.tuner.subject_gate(self.adapter_name)

    def training_languages(self, request: EditRequest) -> list[str]:
        """The languages whose versions of ``request`` an edit trains on (``train_languages``)."""
        wanted = self.config.train_languages
        if wanted is None:
            return request.languages
        missing = [lang for lang in wanted if lang not in request.views]
        if missing:
            raise EditRequestError(
                f"Request {request.case_id!r} has no version in {missing} (has {request.languages}); "
                "set train_languages to languages every request carries."
            )
        return list(wanted)

    def locate(self, request: EditRequest):
        """The language-agnostic neurons of ``request`` over its training languages."""
        languages = self.training_languages(request)
        config = self.config.locator or LocatorConfig()
        views = {lang: request.views[lang] for lang in languages}
        with self._disabled():
            generic = None
            if self.reference_requests and config.generic_facts_fraction is not None:
                key = tuple(languages)
                if key not in self._generic:
                    self._generic[key] = estimate_generic_neurons(
                        self.base_model, self.tokenizer, self.reference_requests, languages, config
                    )
                generic = self._generic[key]
            return locate_neurons(self.base_model, self.tokenizer, views, config, reference_requests=generic)

    def located(self, requests: Sequence[EditRequest]) -> dict[int, list[int]]:
        """The union of `requests`' located neurons (`{layer: indices}`), above the subject gates' block."""
        located: dict[int, list[int]] = {}
        for request in requests:
            for layer, indices in self.locate(request).neurons.items():
                located[layer] = sorted({*located.get(layer, []), *indices})
        return located if self.gates is None else self.gates.above_gate(located)

    # -- editing ---------------------------------------------------------------------------------------------
    def edit_batch(self, requests: Sequence[EditRequest]) -> LAFNEditResult:
        """Several facts into one adapter: the union of their neuron sets, trained jointly."""
        check_generation_requests(requests, "The LAFN editor")
        start = time.perf_counter()
        rows = [
            (view_prompt, view.target, lang)
            for request in requests
            for lang in self.training_languages(request)
            for view in [request.views[lang]]
            for view_prompt in [view.prompt, *(view.rephrases if self.config.use_rephrases else ())]
        ]
        languages = list(dict.fromkeys(lang for _, _, lang in rows))
        case_ids = [r.case_id for r in requests]
        pairs = [(prompt, target) for prompt, target, _ in rows]
        batch = collate_targets(encode_targets(self.model, self.tokenizer, pairs), self._pad, input_device(self.model))
        if self._all_correct(batch):
            return LAFNEditResult(case_ids, "skipped", languages=languages, fixed_languages=languages)

        located = self.located(requests)
        if not located:
            logger.warning("Edit %s: no neuron located above the subject gates' block; nothing to train.", case_ids)
            return LAFNEditResult(case_ids, "unfixed", languages=languages)
        offloaded = [i for i, down in ffn_blocks(self.base_model, list(located)).downs.items() if down.weight.is_meta]
        if offloaded:
            raise EditRequestError(
                f"LAFN would train neurons in blocks {offloaded}, whose weights accelerate offloaded (device_map "
                "'cpu'/'disk' offload): their deltas cannot live there. Keep those blocks on a device in the "
                "device_map, or search other blocks (LocatorConfig.layers)."
            )
        saved = None if self.config.keep_unfixed else self.state_dict()  # what an unfixed edit is rolled back to
        trained, collisions = self.add_neurons(located)
        if not any(trained.values()):
            return LAFNEditResult(case_ids, "collided", collisions=collisions, languages=languages)
        if self.gates is not None:
            self.gates.fit(requests, trained)
        deltas = list(self.tuner.delta_parameters(self.adapter_name))
        before = [delta.detach().clone() for delta in deltas]
        steps, losses = self._train(batch, trained)
        if not all(bool(torch.isfinite(delta).all()) for delta in deltas):
            # Diverged: put every delta back as it was (this edit's neurons stay, at zero: they change nothing).
            with torch.no_grad():
                for delta, kept in zip(deltas, before):
                    delta.copy_(kept)
            losses = {**losses, "diverged": 1.0}
        correct = self._row_correct(batch)
        fixed = fixed_languages(correct, [language for _, _, language in rows])
        status = "edited" if len(fixed) == len(languages) else "unfixed"
        if status == "unfixed" and saved is not None:
            logger.warning(
                "Edit %s holds in %s of %s after %d steps: rolled back (keep_unfixed=True keeps it).",
                case_ids,
                fixed,
                languages,
                steps,
            )
            self.load_state_dict(saved)
            trained = {}
        elif self.gates is not None:
            self.gates.add_edits(requests)
        return LAFNEditResult(
            case_ids,
            status,
            steps=steps,
            seconds=time.perf_counter() - start,
            languages=languages,
            fixed_languages=fixed,
            losses=losses,
            neurons={k: v for k, v in trained.items() if v},
            collisions=collisions,
        )

    def add_neurons(self, located: dict[int, list[int]]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """Grow (or create) the adapter with ``located`` neurons; returns (new neurons, collisions) per layer.

        Only the new neurons are the edit's to train (`trainable_deltas`); collisions belong to earlier edits.
        """
        if self.tuner is None:
            config = LAFNConfig(
                neurons=located,
                update_input=self.config.update_input,
                cached=self.config.cached,
                activation_threshold=self.config.activation_threshold,
                gate_layer=None if self.gates is None else self.gates.layer,
            )
            self.model = get_peft_model(self.model, config, adapter_name=self.adapter_name)
            return dict(located), {}
        trained, collisions = {}, {}
        for layer, indices in located.items():
            addition = self.tuner.add_neurons(layer, indices, self.adapter_name)
            trained[layer] = list(addition.added)
            if addition.collisions:
                collisions[layer] = list(addition.collisions)
        return trained, collisions

    @contextmanager
    def trainable_deltas(self, trained: dict[int, list[int]]):
        """The delta tensors, trainable, with gradients masked to the ``trained`` neurons (``{layer: indices}``)."""
        params, handles = [], []
        sets = self.tuner.neuron_sets(self.adapter_name)
        for name, layer in self.tuner.lafn_layers(self.adapter_name).items():
            index = locate_block(name).index
            owned = set(trained.get(index, []))
            mask = torch.tensor([k in owned for k in sets[index]], dtype=torch.float32).unsqueeze(-1)
            for store in (layer.lafn_down, layer.lafn_up, layer.lafn_gate):
                if self.adapter_name in store:
                    param = store[self.adapter_name]
                    param.requires_grad_(True)
                    handles.append(param.register_hook(lambda grad, mask=mask: grad * mask.to(grad)))
                    params.append(param)
        try:
            yield params
        finally:
            for handle in handles:
                handle.remove()

    def _train(self, batch: Any, trained: dict[int, list[int]]) -> tuple[int, dict[str, float]]:
        config = self.config
        layer_names = self.tuner.lafn_layers(self.adapter_name)
        lowest = min(layer_names, key=lambda name: locate_block(name).index)
        root = self.tuner.model
        with frozen(self.model), self.trainable_deltas(trained) as params:
            inputs = self._inputs(batch)
            cache = PrefixCache(
                self.model,
                lowest,
                batch.model_inputs(),
                root=root,
                enabled=config.prefix_cache,
                gate=self.subject_gate(),
            )
            with torch.no_grad(), cache.replay():
                full = window_logits_at_targets(self.model(**inputs).logits, batch.target_ids)
            vocab = (
                CandidateVocabulary(batch.target_ids, full, config.vocab_candidates)
                if config.vocab_candidates
                else None
            )
            targets = batch.target_ids if vocab is None else vocab.map(batch.target_ids)
            locality = self.locality_reference()
            projections = self.preservation(trained)
            optimizer = torch.optim.Adam(params, lr=config.learning_rate)
            losses: dict[str, float] = {}
            step = 0
            for step in range(1, config.max_steps + 1):  # noqa: B007 - reported after the loop
                with cache.replay(), vocab.restrict(self.model) if vocab else nullcontext():
                    logits = window_logits_at_targets(self.model(**inputs).logits, batch.target_ids)
                edit_loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
                )
                locality_loss = self.locality_loss(locality)
                norm = delta_norm(params)
                loss = edit_loss + config.locality_weight * locality_loss + config.norm_weight * norm
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                project(projections)
                losses = {"edit": edit_loss.item(), "locality": locality_loss.item(), "norm": norm.item()}
                step_fixed = bool(((logits.argmax(-1) == targets) | (targets == -100)).all())
                if step_fixed and all(self._row_correct(batch, cache)):
                    break
                if vocab is not None and step_fixed:
                    with torch.no_grad(), cache.replay():
                        vocab.extend(window_logits_at_targets(self.model(**inputs).logits, batch.target_ids))
                    targets = vocab.map(batch.target_ids)
        return step, losses

    def preservation(self, trained: dict[int, list[int]]) -> list:
        """The preservation projections of the down deltas of the `trained` neurons (`{layer: indices}`), for
        `project` after each step (none without `preserved_energy` or unrelated texts)."""
        if self.config.preserved_energy is None or not self.unrelated_texts:
            return []
        if self._activations is None:
            self._activations = UnrelatedActivations(self.unrelated_texts, self.tokenizer)
        layers = {locate_block(name).index: layer for name, layer in self.tuner.lafn_layers(self.adapter_name).items()}
        with self._disabled():
            grams = self._activations.grams(self.model, layers)
        return edit_projections(layers, self.adapter_name, trained, grams, self.config.preserved_energy)

    def _inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        inputs = batch.model_inputs()
        if self._keeps_logits:
            inputs["logits_to_keep"] = batch.window
        return inputs

    def locality_reference(self) -> tuple | None:
        """The unedited next-token distributions on the locality texts, for `locality_loss` (None: no term).

        Call it once the adapter holds the edit's neurons: the blocks below the lowest edited one are cached.
        """
        if not self.unrelated_texts or not self.config.max_locality_texts or self.config.locality_weight == 0:
            return None
        lowest = min(self.tuner.lafn_layers(self.adapter_name), key=lambda name: locate_block(name).index)
        root = self.tuner.model
        # Left padding puts every text's last token in the last column, so the output layer (262k rows on Gemma 3,
        # costlier than the edited blocks) runs on that column alone, in every training step.
        texts = self.unrelated_texts[: self.config.max_locality_texts]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
        device = input_device(self.model)
        inputs = {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}
        inputs["position_ids"] = left_padded_positions(inputs["attention_mask"])
        cache = PrefixCache(
            self.model, lowest, inputs, root=root, enabled=self.config.prefix_cache, gate=self.subject_gate()
        )
        if self._keeps_logits:
            inputs["logits_to_keep"] = 1
        with torch.no_grad(), cache.replay(), self._disabled():
            reference = self.model(**inputs).logits[:, -1].log_softmax(-1)
        return inputs, cache, reference

    def locality_loss(self, locality: tuple | None) -> torch.Tensor:
        """KL(unedited ‖ edited) of the next token on the locality texts (0 without a reference)."""
        if locality is None:
            return torch.zeros(())
        inputs, cache, reference = locality
        with cache.replay():
            current = self.model(**inputs).logits[:, -1].log_softmax(-1)
        return F.kl_div(current, reference, log_target=True, reduction="batchmean")

    def _all_correct(self, batch: Any) -> bool:
        with frozen(self.model):
            return all(self._row_correct(batch))

    def _row_correct(self, batch: Any, cache: PrefixCache | None = None) -> list[bool]:
        with torch.no_grad(), cache.replay() if cache is not None else nullcontext():
            logits = window_logits_at_targets(self.model(**self._inputs(batch)).logits, batch.target_ids)
        right = (logits.argmax(-1) == batch.target_ids) | (batch.target_ids == -100)
        return right.all(-1).tolist()

    @contextmanager
    def _disabled(self):
        if isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                yield
        else:
            yield

    def trainer_objective(self, requests: Sequence[EditRequest]) -> LAFNTrainerObjective:
        """Locate and add neurons for `requests`; `EditTrainer` then trains them with LAFN's loss."""
        return LAFNTrainerObjective(self, requests)
