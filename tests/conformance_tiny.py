"""What the PEFT-conformance tests share: the tuner x architecture cases and small builders.

The cases mirror peft's own generic tuner tests (``PeftCommonTester`` in peft's ``tests/testing_common.py``): each
builds a tiny model, an adapter whose weights are *not* the identity (like ``init_lora_weights=False``), and checks
what peft checks of every tuner. MPN runs with two random patches in the first and last block, LAFN with random
deltas on neurons of the first and last block, including the input-row deltas (``update_input=True``).
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from tiny import DECODER_CONFIGS, logits, sample_inputs, tiny_model

from peft_mpn import LAFNConfig, MPNConfig

ARCHS = ("llama", "gpt2", "bert")
TUNERS = ("mpn", "lafn")
CASES = [pytest.param(tuner, arch, id=f"{tuner}-{arch}") for tuner in TUNERS for arch in ARCHS]
#: what the tuner's parameter names contain (peft's `model.prefix`)
PREFIX = {"mpn": "mpn_", "lafn": "lafn_"}
#: why a case cannot merge, if it cannot
MERGE_REFUSED = {("mpn", "llama"): "MPN patches cannot merge into a gated FFN (refused with a ValueError by design)"}


def is_decoder(arch: str) -> bool:
    return arch in DECODER_CONFIGS


def make_config(tuner: str, arch: str, **overrides):
    """The case's config: random (non-identity) adapter weights, task type set as peft's task models expect."""
    task_type = "CAUSAL_LM" if is_decoder(arch) else "SEQ_CLS"
    if tuner == "mpn":
        # the FFN's own activation: merging patches into an ungated FFN needs it
        kwargs = dict(
            layers_to_transform=[0, -1], num_patches=2, init_patches=False, activation="ffn", task_type=task_type
        )
        return MPNConfig(**{**kwargs, **overrides})
    kwargs = dict(
        neurons={0: [3, 17, 40], -1: [1, 5, 9, 63]}, update_input=True, init_lafn_weights=False, task_type=task_type
    )
    return LAFNConfig(**{**kwargs, **overrides})


def base_model(arch: str, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The same tiny model every call (seeded), like peft's ``from_pretrained(model_id)``."""
    model = tiny_model(arch)
    return model if dtype is None else model.to(dtype)


def peft_model(tuner: str, arch: str, seed: int = 0, adapter_name: str = "default", **overrides) -> PeftModel:
    model = base_model(arch)
    torch.manual_seed(seed)
    return get_peft_model(model, make_config(tuner, arch, **overrides), adapter_name=adapter_name).eval()


def inputs(arch: str, repeat: int = 1) -> dict[str, torch.Tensor]:
    batch = sample_inputs(arch)
    return {k: torch.cat([v] * repeat) for k, v in batch.items()}


def output(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return logits(model, batch)


def generate_kwargs(batch: dict[str, torch.Tensor], **extra) -> dict:
    return {**batch, "max_new_tokens": 3, "do_sample": False, "pad_token_id": 0, **extra}


def first_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The scores of the first generated token (what peft compares: token ids hide small changes)."""
    with torch.no_grad():
        result = model.generate(**generate_kwargs(batch, return_dict_in_generate=True, output_scores=True))
    return result.scores[0]


def skip_unless_mergeable(tuner: str, arch: str) -> None:
    reason = MERGE_REFUSED.get((tuner, arch))
    if reason:
        pytest.skip(reason)


def adapter_parameters(model: torch.nn.Module, tuner: str) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if PREFIX[tuner] in name}
