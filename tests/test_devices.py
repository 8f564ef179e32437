"""Every editor on every device and precision it may meet: the CPU in float32 and bfloat16 here, and CUDA when a
GPU is present (`pytest -m gpu`, or `python benchmarks/gpu_check.py`, which runs these first).

An edit must train, be judged and be saved and reloaded with every tensor where the model lives and nothing
non-finite anywhere; the same edit in bfloat16 holds like the float32 one.
"""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.data.requests import EditRequestError
from peft_mpn.editing import EDITORS, editor_config, make_editor
from peft_mpn.locating import LocatorConfig
from peft_mpn.metrics import Judge

REQUEST = EditRequest.single(
    "the capital of france is",
    "lyon",
    rephrases=["the city of france is"],
    locality_prompt="the capital of germany is",
    locality_answer="berlin",
    parallel={
        "de": {
            "prompt": "die hauptstadt von frankreich ist",
            "target": "lyon",
            "rephrases": ["die stadt"],
            "locality_prompt": "die hauptstadt von deutschland ist",
            "locality_answer": "berlin",
        }
    },
)
GPU = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (pytest -m gpu)")
PLACES = [
    pytest.param("cpu", torch.float32, id="cpu-float32"),
    pytest.param("cpu", torch.bfloat16, id="cpu-bfloat16"),
    pytest.param("cuda", torch.float32, id="cuda-float32", marks=[GPU, needs_cuda]),
    pytest.param("cuda", torch.bfloat16, id="cuda-bfloat16", marks=[GPU, needs_cuda]),
]


def _placed_model(device: str, dtype: torch.dtype) -> torch.nn.Module:
    return tiny_model("gemma3_text").to(device=device, dtype=dtype)


def _finite_numbers(value) -> bool:
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value) or math.isnan(value)  # NaN: "no such probe"


UNRELATED = ["the weather is nice today", "a cat sat on the mat", "hello world again"]


@pytest.mark.parametrize(("device", "dtype"), PLACES)
@pytest.mark.parametrize("name", EDITORS)
def test_every_editor_edits_and_is_judged_where_the_model_lives(name, device, dtype):
    tokenizer = make_tokenizer()
    model = _placed_model(device, dtype)
    judge = Judge(tokenizer, augment_languages=["de"])
    judge.reference(model, [REQUEST])
    editor = make_editor(name, model, tokenizer, progress=False)
    if editor.uses_unrelated_text:
        editor.add_unrelated_texts(UNRELATED)
    result = editor.edit(REQUEST)
    assert result.status in ("edited", "skipped", "unfixed", "collided")
    assert all(math.isfinite(loss) for loss in result.losses.values())
    for parameter in editor.model.parameters():
        assert parameter.device.type == device
        assert torch.isfinite(parameter.float()).all()
    rows = judge.rows(editor.model, REQUEST)
    scores = judge.scores(rows)
    assert set(scores["per_language"]) == {"en", "de"}
    assert _finite_numbers(scores)


@pytest.mark.parametrize(("device", "dtype"), PLACES)
@pytest.mark.parametrize("name", ["mpn", "lafn"])
def test_an_adapter_saved_on_the_device_reloads_there_with_the_same_outputs(name, device, dtype, tmp_path):
    tokenizer = make_tokenizer()
    editor = make_editor(name, _placed_model(device, dtype), tokenizer, progress=False)
    editor.edit(REQUEST)
    editor.model.save_pretrained(tmp_path / "edit")
    reloaded = PeftModel.from_pretrained(_placed_model(device, dtype), tmp_path / "edit").eval()
    batch = tokenizer(["the capital of france is", "the capital of germany is"], return_tensors="pt").to(device)
    editor.model.eval()
    with torch.no_grad():
        expected = editor.model(**batch).logits
        actual = reloaded(**batch).logits
    assert actual.device.type == device and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("name", EDITORS)
def test_an_edit_in_bfloat16_ends_as_the_float32_edit_does(name):
    tokenizer = make_tokenizer()
    outcome = {}
    for dtype in (torch.float32, torch.bfloat16):
        editor = make_editor(name, _placed_model("cpu", dtype), tokenizer, progress=False)
        if editor.uses_unrelated_text:
            editor.add_unrelated_texts(UNRELATED)
        result = editor.edit(REQUEST)
        outcome[dtype] = (result.status, result.fixed_languages)
    assert outcome[torch.bfloat16] == outcome[torch.float32]


@GPU
@needs_cuda
@pytest.mark.parametrize("name", ["mpn", "lafn"])
def test_edit_trainer_trains_on_the_gpu_with_finite_losses(name, tmp_path):
    from test_training import arguments

    from peft_mpn.data import requests_to_dataset
    from peft_mpn.metrics import score_targets
    from peft_mpn.training import EditTrainer

    tokenizer = make_tokenizer()
    editor = make_editor(name, _placed_model("cuda", torch.float32), tokenizer, progress=False)
    if editor.uses_unrelated_text:
        editor.add_unrelated_texts(UNRELATED)
    settings = arguments(tmp_path, max_steps=60, per_device_train_batch_size=2, logging_steps=10, use_cpu=False)
    trainer = EditTrainer(editor, settings, train_dataset=requests_to_dataset([REQUEST]))
    trainer.train()
    assert all(p.device.type == "cuda" for p in trainer.model.parameters())
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert score_targets(trainer.model, tokenizer, [("the capital of france is", "lyon")])[0] is not None


@pytest.mark.parametrize("name", EDITORS)
def test_a_model_without_weights_is_refused_with_the_fix(name):
    with pytest.raises(ValueError, match="on the meta device.*Load it with from_pretrained"):
        make_editor(name, tiny_model("llama").to("meta"), make_tokenizer(), progress=False)


def _dispatched(tmp_path, device: str = "cpu") -> torch.nn.Module:
    """The tiny Gemma 3 dispatched by accelerate on `device`, its middle block offloaded (to disk from the CPU, to
    CPU memory from a GPU): the hooks bring that block's weights in for each forward pass."""
    from accelerate import dispatch_model

    main = 0 if device == "cuda" else "cpu"
    device_map = {name: main for name in ("model.embed_tokens", "model.layers.0", "model.layers.2", "model.norm")}
    offload = "disk" if main == "cpu" else "cpu"
    device_map.update({"model.rotary_emb": main, "lm_head": main, "model.layers.1": offload})
    model = tiny_model("gemma3_text")
    return dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path / "offload"), main_device=main)


DISPATCHES = [
    pytest.param("cpu", 1e-5, id="cpu+disk"),
    pytest.param("cuda", 1e-4, id="cuda+cpu", marks=[GPU, needs_cuda]),
]


@pytest.mark.parametrize(("device", "tolerance"), DISPATCHES)
@pytest.mark.parametrize("name", ["mpn", "t-patcher", "ft-m", "icl", "lafn"])
def test_a_model_dispatched_with_an_offloaded_block_edits_like_the_undispatched_one(name, device, tolerance, tmp_path):
    tokenizer = make_tokenizer()
    options = {"locator": LocatorConfig(layers=[2])} if name == "lafn" else {}  # LAFN: the block on a device
    editors = [
        make_editor(name, model, tokenizer, editor_config(name, **options), progress=False)
        for model in (tiny_model("gemma3_text").to(device), _dispatched(tmp_path, device))
    ]
    results = [editor.edit(REQUEST) for editor in editors]
    assert results[1].status == results[0].status and results[1].steps == results[0].steps
    batch = tokenizer(["the capital of france is", "the capital of germany is"], return_tensors="pt").to(device)
    with torch.no_grad():
        logits = [editor.model(**batch).logits for editor in editors]
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=tolerance)


def test_lafn_refuses_to_train_neurons_in_an_offloaded_block_with_the_fix(tmp_path):
    editor = make_editor("lafn", _dispatched(tmp_path), make_tokenizer(), progress=False)
    with pytest.raises(EditRequestError, match=r"blocks \[1\].*offloaded.*LocatorConfig.layers"):
        editor.edit(REQUEST)
