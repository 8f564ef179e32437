"""peft's generic tuner checks of merging, unloading and disabling, for MPN and LAFN on tiny Llama, GPT-2 and BERT.

The equivalents of ``PeftCommonTester._test_merge_layers*``, ``_test_safe_merge``, ``_test_unload_adapter``,
``_test_disable_adapter`` and ``_test_mixed_adapter_batches`` in peft's ``tests/testing_common.py``; the save, load
and training checks are in ``test_peft_conformance.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conformance_tiny import (
    CASES,
    MERGE_REFUSED,
    PREFIX,
    adapter_parameters,
    base_model,
    first_scores,
    generate_kwargs,
    inputs,
    is_decoder,
    make_config,
    output,
    peft_model,
    skip_unless_mergeable,
)
from peft import convert_to_lora, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import save_file
from tiny import HIDDEN

from peft_mpn.tuners.ffn import ffn_blocks, ffn_spec, ffn_width


# -- merge, unmerge, merge_and_unload ---------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_merge_layers_and_the_merged_model_saves_and_loads_back(tuner, arch, tmp_path):
    skip_unless_mergeable(tuner, arch)
    model = peft_model(tuner, arch)
    batch = inputs(arch)
    adapted = output(model, batch)
    model.merge_adapter()
    merged = output(model, batch)
    model.unmerge_adapter()
    unmerged = output(model, batch)

    plain = model.merge_and_unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in plain.modules())
    assert not hasattr(plain, "peft_config")
    merged_unloaded = output(plain, batch)
    for result in (merged, unmerged, merged_unloaded):
        torch.testing.assert_close(result, adapted, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged_unloaded, output(base_model(arch), batch), atol=1e-10, rtol=1e-10)

    # The merged model is a plain transformers model: its own save_pretrained folder loads back, same outputs.
    # (An MPN merge widens the FFNs it patched, 64 -> 66; every FFN and the config's width field follow.)
    widths = {ffn_width(down) for down in ffn_blocks(plain).downs.values()}
    assert widths == {66 if tuner == "mpn" else 64}
    assert getattr(plain.config, ffn_spec(plain).width_key) == widths.pop()
    plain.save_pretrained(tmp_path)
    reloaded = type(plain).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(output(reloaded, batch), merged_unloaded, atol=1e-6, rtol=1e-6)


# -- disable_adapter ------------------------------------------------------------------------------------------
def _compared_output(model: torch.nn.Module, arch: str) -> torch.Tensor:
    """What peft's disable test compares: the first generated token's scores (decoders), else the logits."""
    batch = inputs(arch)
    return first_scores(model, batch) if is_decoder(arch) else output(model, batch)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_disable_adapter(tuner, arch):
    before = _compared_output(base_model(arch), arch)
    model = peft_model(tuner, arch)
    adapted = _compared_output(model, arch)
    assert not torch.allclose(before, adapted)
    with model.disable_adapter():
        torch.testing.assert_close(_compared_output(model, arch), before, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_compared_output(model, arch), adapted, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_disable_adapter_after_merge_adapter_is_the_base_model(tuner, arch):
    """Disabling a merged adapter unmerges it (as LoRA does): every disabled forward is the base model's."""
    skip_unless_mergeable(tuner, arch)
    batch = inputs(arch)
    before = output(base_model(arch), batch)
    model = peft_model(tuner, arch)
    adapted = output(model, batch)
    model.merge_adapter()
    with model.disable_adapter():
        for _ in range(2):  # the first disabled forward too
            torch.testing.assert_close(output(model, batch), before, atol=1e-6, rtol=1e-6)
    assert not any(module.merged for module in model.modules() if isinstance(module, BaseTunerLayer))
    torch.testing.assert_close(output(model, batch), adapted, atol=1e-5, rtol=1e-5)


# -- safe_merge -------------------------------------------------------------------------------------------------
BROKEN = "NaNs detected in the merged weights. The adapter default seems to be broken"


@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("bad", [torch.nan, torch.inf])
def test_safe_merge_of_a_broken_adapter_raises_peft_s_error_and_changes_nothing(tuner, arch, bad):
    skip_unless_mergeable(tuner, arch)
    batch = inputs(arch)
    model = peft_model(tuner, arch)
    for name, param in model.named_parameters():
        if PREFIX[tuner] in name:
            param.data[0] = bad
    weights = {k: v.clone() for k, v in model.get_base_model().state_dict().items()}
    for merge in (model.merge_adapter, model.merge_and_unload):
        with pytest.raises(ValueError, match=BROKEN):
            merge(safe_merge=True)
    after = model.get_base_model().state_dict()
    assert after.keys() == weights.keys()
    assert all(torch.equal(after[k], weights[k]) for k in weights if torch.isfinite(weights[k]).all())
    assert not any(module.merged for module in model.modules() if isinstance(module, BaseTunerLayer))
    output(model, batch)  # still an adapter model that runs


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_layers_report_in_and_out_features(tuner, arch):
    layers = [m for m in peft_model(tuner, arch).modules() if isinstance(m, BaseTunerLayer)]
    assert layers and all((layer.in_features, layer.out_features) == (HIDDEN, HIDDEN) for layer in layers)


# -- mixed adapter batches --------------------------------------------------------------------------------------
ROTATION = ("__base__", "adapter0", "adapter1")


def _two_adapters(tuner: str, arch: str, scale: float = 1.0):
    model = peft_model(tuner, arch, seed=0, adapter_name="adapter0")
    torch.manual_seed(1)
    model.add_adapter("adapter1", make_config(tuner, arch))
    with torch.no_grad():
        for param in adapter_parameters(model, tuner).values():
            param.mul_(scale)
    return model.eval()


def _each_alone(model, run):
    """`run(model)` with the adapters disabled, then with adapter0, then adapter1 active."""
    with model.disable_adapter():
        results = [run(model)]
    for name in ROTATION[1:]:
        model.set_adapter(name)
        results.append(run(model))
    return results


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_mixed_adapter_batches(tuner, arch):
    model = _two_adapters(tuner, arch)
    batch = inputs(arch, repeat=3)
    names = [ROTATION[i % 3] for i in range(len(batch["input_ids"]))]
    runs = {"logits": lambda m, b: output(m, b)}
    if is_decoder(arch):
        runs["first generated scores"] = first_scores
    for what, run in runs.items():
        alone = _each_alone(model, lambda m, run=run: run(m, batch))
        for i in range(3):
            for j in range(i):
                assert not torch.allclose(alone[i], alone[j], atol=1e-4, rtol=1e-4), (what, i, j)
        mixed = run(model, {**batch, "adapter_names": names})
        for i in range(3):
            torch.testing.assert_close(mixed[i::3], alone[i][i::3], atol=1e-4, rtol=1e-4, msg=f"{what} {ROTATION[i]}")


@pytest.mark.parametrize(("tuner", "arch"), [case for case in CASES if is_decoder(case.values[1])])
def test_generate_with_mixed_adapter_batches_and_beam_search(tuner, arch):
    model = _two_adapters(tuner, arch, scale=10.0)  # strong adapters, so that each generates its own text
    batch = inputs(arch, repeat=3)
    kwargs = generate_kwargs(batch, max_new_tokens=5, num_beams=3)
    alone = _each_alone(model, lambda m: m.generate(**kwargs))
    assert len({tuple(map(tuple, result.tolist())) for result in alone}) == 3
    mixed = model.generate(**kwargs, adapter_names=[ROTATION[i % 3] for i in range(len(batch["input_ids"]))])
    for i in range(3):
        assert torch.equal(mixed[i::3], alone[i][i::3]), ROTATION[i]


@pytest.mark.parametrize(("tuner", "arch"), [CASES[1], CASES[5]])
def test_mixed_adapter_batches_refusals(tuner, arch):
    model = _two_adapters(tuner, arch)
    batch = inputs(arch)
    with pytest.raises(ValueError, match="non-existing adapter"):
        model(**batch, adapter_names=["adapter0", "nope"])
    with pytest.raises(ValueError, match="Length of `adapter_names`"):
        model(**batch, adapter_names=["adapter0"])
    with pytest.raises(ValueError, match="training mode"):
        model.train()(**batch, adapter_names=["adapter0", "adapter1"])
    if (tuner, arch) not in MERGE_REFUSED:
        model.eval().merge_adapter()
        with pytest.raises(ValueError, match="merged adapters"):
            model(**batch, adapter_names=["adapter0", "adapter1"])


# -- more merging -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_merge_layers_fp16(tuner, arch):
    skip_unless_mergeable(tuner, arch)
    model = get_peft_model(base_model(arch, torch.float16), make_config(tuner, arch)).eval()
    merged = model.merge_and_unload()  # float32 adapter weights merge into float16 ones
    assert {p.dtype for p in merged.parameters()} == {torch.float16}
    output(merged, inputs(arch))


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_merge_layers_multi(tuner, arch):
    skip_unless_mergeable(tuner, arch)
    batch = inputs(arch)
    model = _two_adapters(tuner, arch)
    model.set_adapter("adapter0")
    first = output(model, batch)
    model.set_adapter("adapter1")
    second = output(model, batch)
    assert not torch.allclose(first, second, atol=1e-3, rtol=1e-3)
    copies = [copy.deepcopy(model) for _ in range(2)]
    both = output(model.merge_and_unload(adapter_names=["adapter1", "adapter0"]), batch)
    assert not torch.allclose(both, first, atol=1e-3) and not torch.allclose(both, second, atol=1e-3)
    # Patches are neurons of their own: both merged = both active (LAFN's deltas share neurons; peft lets one
    # adapter at a time be active in a modules_to_save copy, such as BERT's SEQ_CLS classifier).
    if tuner == "mpn" and is_decoder(arch):
        copies[0].base_model.set_adapter(["adapter0", "adapter1"])
        torch.testing.assert_close(both, output(copies[0], batch), atol=1e-4, rtol=1e-4)
        copies[0].base_model.set_adapter("adapter0")
    for names, expected in ((["adapter1"], second), (["adapter0"], first)):
        torch.testing.assert_close(output(copies.pop().merge_and_unload(adapter_names=names), batch), expected)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_merge_adapter_is_idempotent(tuner, arch):
    skip_unless_mergeable(tuner, arch)
    model = peft_model(tuner, arch)
    model.merge_adapter()
    merged = output(model, inputs(arch))
    with pytest.warns(UserWarning, match="All adapters are already merged, nothing to do"):
        model.merge_adapter()
    torch.testing.assert_close(output(model, inputs(arch)), merged, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_safe_merge(tuner, arch, tmp_path):
    skip_unless_mergeable(tuner, arch)
    batch = inputs(arch)
    base = output(base_model(arch), batch)
    model = peft_model(tuner, arch)
    adapted = output(model, batch)
    assert not torch.allclose(base, adapted, atol=1e-6, rtol=1e-6)
    merged = model.merge_and_unload(safe_merge=True)
    torch.testing.assert_close(output(merged, batch), adapted, atol=1e-5, rtol=1e-5)
    state = merged.state_dict()
    torch.save(state, tmp_path / "model.bin")
    once = {}  # tied weights (GPT-2's lm_head and wte) are one tensor, which safetensors wants saved once
    for key, tensor in state.items():
        once.setdefault(tensor.data_ptr(), (key, tensor))
    save_file(dict(once.values()), tmp_path / "model.safetensors")  # needs contiguous tensors


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_unload_is_the_base_model(tuner, arch):
    batch = inputs(arch)
    base = base_model(arch)
    count = len(base.state_dict())
    reference = output(base, batch)
    model = get_peft_model(base, make_config(tuner, arch)).eval()
    assert not torch.allclose(output(model, batch), reference, atol=1e-10, rtol=1e-10)
    plain = model.unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in plain.modules())
    assert not hasattr(plain, "peft_config") and len(plain.state_dict()) == count
    torch.testing.assert_close(output(plain, batch), reference, atol=1e-6, rtol=1e-6)


# -- what does not apply ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_lora_conversion_is_refused(tuner, arch):
    """peft's check runs only where `supports_lora_conversion()`: an MPN patch is a new neuron, not a weight delta
    of the layer it wraps, and both tuners wrap whole FFN blocks, not the Linear layers a LoRA adapter targets."""
    model = peft_model(tuner, arch)
    assert not model.supports_lora_conversion()
    with pytest.raises(TypeError, match="do not support LoRA conversion"):
        convert_to_lora(model, rank=4)


NOT_APPLICABLE = {
    "_test_weighted_combination_of_adapters": (
        "add_weighted_adapter is LoRA's and IA3's API (peft runs the check for those only); MPN and LAFN adapters "
        "combine with absorb_adapter / peft_mpn.hub.compose_adapters (tests/test_compose_tuners.py)"
    ),
    "_test_adding_multiple_adapters_with_bias_raises": (
        "MPNConfig and LAFNConfig have no `bias` option (peft skips configs without one)"
    ),
    "_test_training_prompt_learning_tasks": "MPN and LAFN are not prompt-learning methods",
    "_test_generate_pos_args(raises_err=True)": "only for encoder-decoder models, which have no FFN_SPECS row",
}


@pytest.mark.parametrize("check", NOT_APPLICABLE)
def test_not_applicable(check):
    pytest.skip(NOT_APPLICABLE[check])
