"""EditTrainer on tiny models: batch edits hold, GA matches one big batch, metrics, checkpoints and resuming."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny import make_tokenizer, run_fresh, tiny_model
from transformers import TrainingArguments

from peft_mpn import EditRequest, FactView
from peft_mpn.data import requests_to_dataset
from peft_mpn.editing import LAFNEditor, LAFNEditorConfig, MPNEditor, MPNEditorConfig
from peft_mpn.locating import LocatorConfig
from peft_mpn.metrics import score_targets
from peft_mpn.training import EditTrainer

MEMORY = [
    "the weather is nice today",
    "a cat sat on the mat",
    "numbers go up",
    "hello world again",
    "music plays loud",
]
LOCALITY = {"en": ("who wrote hamlet", "shakespeare"), "de": ("the sun shines over", "hills")}
FACTS = [
    ("france", "frankreich", "lyon"),
    ("germany", "deutschland", "rome"),
    ("italy", "italy", "madrid"),
    ("spain", "spain", "berlin"),
]


def request(index: int) -> EditRequest:
    country_en, country_de, answer = FACTS[index]
    views = {
        "en": FactView(
            f"the capital of {country_en} is",
            answer,
            locality_prompt=LOCALITY["en"][0],
            locality_answer=LOCALITY["en"][1],
        ),
        "de": FactView(
            f"die hauptstadt von {country_de} ist",
            answer,
            locality_prompt=LOCALITY["de"][0],
            locality_answer=LOCALITY["de"][1],
        ),
    }
    return EditRequest(views, "en", case_id=str(index))


REQUESTS = [request(i) for i in range(len(FACTS))]
PAIRS = [(view.prompt, view.target) for r in REQUESTS for view in r.views.values()]


def arguments(tmp_path, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(tmp_path),
        learning_rate=0.05,
        max_steps=80,
        per_device_train_batch_size=4,
        lr_scheduler_type="constant",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def mpn_trainer(
    tmp_path, arch: str = "llama", eval_cases: bool = False, plan: str = "edit", **overrides
) -> EditTrainer:
    editor = MPNEditor(
        tiny_model(arch), make_tokenizer(), MPNEditorConfig(patch_plan=plan), unrelated_texts=MEMORY, progress=False
    )
    dataset = requests_to_dataset(REQUESTS)
    return EditTrainer(
        editor, arguments(tmp_path, **overrides), train_dataset=dataset, eval_dataset=dataset if eval_cases else None
    )


def all_exact(model, tokenizer, pairs) -> list[bool]:
    return [score.exact for score in score_targets(model, tokenizer, pairs)]


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "mpn_" in n or "lafn_" in n}


def test_trainer_edit_fixes_every_fact_in_both_languages_and_keeps_memory(tmp_path):
    # (On the tiny Gemma 3 this batch stays 1 of 8 short, with MPNEditor.edit_batch too: the objective's limit.)
    trainer = mpn_trainer(tmp_path, logging_steps=20)
    model, tokenizer = trainer.model, trainer.processing_class
    with model.disable_adapter():
        assert not all(all_exact(model, tokenizer, PAIRS))
        memory_before = [s.predicted for s in score_targets(model, tokenizer, [(m, "the") for m in MEMORY])]
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "mpn_" not in n}

    trainer.train()

    assert all(all_exact(model, tokenizer, PAIRS))
    assert [s.predicted for s in score_targets(model, tokenizer, [(m, "the") for m in MEMORY])] == memory_before
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if "mpn_" not in n)
    assert any("loss" in entry for entry in trainer.state.log_history)


def test_gradient_accumulation_gives_the_same_adapter_as_one_big_batch(tmp_path):
    whole = mpn_trainer(tmp_path / "whole", max_steps=3, per_device_train_batch_size=4)
    whole.train()
    accumulated = mpn_trainer(
        tmp_path / "ga", max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2
    )
    accumulated.train()
    a, b = adapter_tensors(whole.model), adapter_tensors(accumulated.model)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert accumulated.state.global_step == 3
    initial = mpn_trainer(tmp_path / "initial", max_steps=3)
    assert not all(torch.allclose(a[k], v) for k, v in adapter_tensors(initial.model).items())


def test_evaluate_reports_the_cross_lingual_edit_metric_per_language(tmp_path):
    trainer = mpn_trainer(tmp_path, eval_cases=True)
    trainer.train()
    after = trainer.evaluate()

    assert set(after["eval_per_language"]) == {"en", "de"}
    assert after["eval_reliability"] == after["eval_per_language"]["en"]["reliability"] == 1.0
    assert after["eval_per_language"]["de"]["reliability_em"] == 1.0
    assert after["eval_num_cases"] == len(REQUESTS) and after["eval_average_augment"]["reliability"] == 1.0
    locality = [after["eval_per_language"][lang]["locality"] for lang in ("en", "de")]
    # locality is agreement with the base model: recompute it by hand for the English locality prompt
    with trainer.model.disable_adapter():
        (base,) = score_targets(trainer.model, trainer.processing_class, [LOCALITY["en"]])
    (edited,) = score_targets(trainer.model, trainer.processing_class, [LOCALITY["en"]])
    assert locality[0] == float(base.predicted == edited.predicted)


def test_resume_from_checkpoint_gives_the_uninterrupted_run(tmp_path):
    uninterrupted = mpn_trainer(tmp_path / "full", max_steps=6)
    uninterrupted.train()

    stopped = mpn_trainer(tmp_path / "run", max_steps=6, save_strategy="steps", save_steps=3)
    stopped.args.max_steps = 3  # stop at the first checkpoint, as an interrupted run would
    stopped.train()
    saved = json.loads((tmp_path / "run" / "checkpoint-3" / "adapter_config.json").read_text())
    assert saved["num_patches"] == stopped.model.peft_config["default"].num_patches > 0

    resumed = mpn_trainer(tmp_path / "run", max_steps=6, save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))

    assert resumed.state.global_step == 6
    a, b = adapter_tensors(uninterrupted.model), adapter_tensors(resumed.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_refuses_a_checkpoint_of_another_adapter_shape(tmp_path):
    trainer = mpn_trainer(tmp_path, max_steps=1, save_strategy="steps", save_steps=1)
    trainer.train()
    config_path = tmp_path / "checkpoint-1" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["num_patches"] += 1
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="same unedited model"):
        mpn_trainer(tmp_path, max_steps=2).train(resume_from_checkpoint=True)


def test_saved_adapter_reproduces_the_edit_in_a_fresh_process(tmp_path):
    trainer = mpn_trainer(tmp_path)
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "adapter")
    expected = [list(s.predicted) for s in score_targets(trainer.model, trainer.processing_class, PAIRS)]
    result = run_fresh(
        """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import peft_mpn  # registers MPN
        from peft import PeftModel
        from tiny import make_tokenizer, tiny_model
        from peft_mpn.metrics import score_targets
        pairs = json.loads(sys.argv[3])
        model = PeftModel.from_pretrained(tiny_model("llama"), sys.argv[2])
        print(json.dumps([list(s.predicted) for s in score_targets(model, make_tokenizer(), pairs)]))
        """,
        str(tmp_path / "adapter"),
        json.dumps(PAIRS),
    )
    assert result == expected
    assert expected == [list(score.target) for score in score_targets(trainer.model, trainer.processing_class, PAIRS)]


def test_lafn_trainer_edits_the_located_neurons_only(tmp_path):
    config = LAFNEditorConfig(locator=LocatorConfig(top_k=16, language_vote=0.5, require_paraphrases=False))
    editor = LAFNEditor(tiny_model("llama"), make_tokenizer(), config, unrelated_texts=MEMORY, progress=False)
    trainer = EditTrainer(
        editor, arguments(tmp_path, learning_rate=0.02, max_steps=60), train_dataset=requests_to_dataset(REQUESTS[:2])
    )
    pairs = PAIRS[:4]
    deltas_before = {n: t for n, t in adapter_tensors(trainer.model).items() if "subject" not in n}
    assert all(not t.any() for t in deltas_before.values())  # zero deltas (gates fitted): unchanged so far

    trainer.train()

    assert all(all_exact(trainer.model, trainer.processing_class, pairs))
    assert trainer.model.peft_config["default"].neurons == trainer.model.base_model.neuron_sets()


def test_lafn_trainer_keeps_the_preservation_projection_after_every_step(tmp_path):
    unrelated = ["the sky"]  # fewer positions than located neurons: avoided exactly with preserved_energy=1
    locator = LocatorConfig(top_k=32, language_vote=0.5)
    config = LAFNEditorConfig(locator=locator, preserved_energy=1.0, locality_weight=0.0, max_locality_texts=0)
    editor = LAFNEditor(tiny_model("llama"), make_tokenizer(), config, unrelated_texts=unrelated, progress=False)
    trainer = EditTrainer(
        editor, arguments(tmp_path, learning_rate=0.02, max_steps=60), train_dataset=requests_to_dataset(REQUESTS[:1])
    )
    encoded = dict(trainer.processing_class(unrelated, return_tensors="pt"))
    with torch.no_grad():
        before = trainer.model(**encoded).logits
    trainer.train()
    with torch.no_grad():
        after = trainer.model(**encoded).logits
    assert any(t.any() for t in adapter_tensors(trainer.model).values())  # it trained
    assert torch.allclose(before, after, atol=1e-4)


def test_bad_input_is_refused_with_the_fix(tmp_path):
    editor = MPNEditor(
        tiny_model("llama"), make_tokenizer(), MPNEditorConfig(), unrelated_texts=MEMORY, progress=False
    )
    trainer = EditTrainer(editor, arguments(tmp_path))
    with pytest.raises(ValueError, match="no train_dataset"):
        trainer.train()
    with pytest.raises(TypeError, match="MPNEditor or LAFNEditor"):
        EditTrainer(object(), arguments(tmp_path))


def test_patches_of_earlier_edits_stay_frozen(tmp_path):
    editor = MPNEditor(
        tiny_model("llama"),
        make_tokenizer(),
        MPNEditorConfig(learning_rate=0.05),
        unrelated_texts=MEMORY,
        progress=False,
    )
    assert editor.edit(REQUESTS[0]).status == "edited"
    earlier = editor.tuner.num_patches()
    before = {k: v[:earlier] for k, v in adapter_tensors(editor.model).items()}
    trainer = EditTrainer(editor, arguments(tmp_path, max_steps=5), train_dataset=requests_to_dataset(REQUESTS[1:]))
    trainer.args.weight_decay = 0.01
    with pytest.raises(ValueError, match="set weight_decay=0"):
        trainer.train()
    trainer.args.weight_decay = 0.0
    trainer.train()
    after = adapter_tensors(trainer.model)
    assert editor.tuner.num_patches() > earlier
    assert all(torch.equal(after[k][:earlier], before[k]) for k in before)
    initial = trainer.objective.plan.initial
    assert not torch.equal(after["base_model.model.model.layers.2.mlp.mpn_values.default"][earlier:], initial.values)


def test_trainer_edits_get_subject_gates_like_the_editors(tmp_path):
    """Patches trained by the Trainer get their gates fitted after training, as `MPNEditor.edit` fits them."""
    requests = [
        EditRequest(
            {lang: dataclasses.replace(view, subject=FACTS[i][0]) for lang, view in request(i).views.items()},
            "en",
            case_id=str(i),
        )
        for i in range(2)
    ]
    editor = MPNEditor(
        tiny_model("llama"), make_tokenizer(), MPNEditorConfig(), unrelated_texts=MEMORY, progress=False
    )
    trainer = EditTrainer(editor, arguments(tmp_path), train_dataset=requests_to_dataset(requests))
    trainer.train()
    patches = editor.layer.patches(editor.adapter_name)
    assert len(patches) and bool(patches.gate_keys.any(-1).all())  # every trained patch got a gate
    pairs = [(view.prompt, view.target) for r in requests for view in r.views.values()]
    assert all(all_exact(trainer.model, editor.tokenizer, pairs))  # and the edits still hold through them
