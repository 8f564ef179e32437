"""Parallel versions written by a translator: a function, a tiny sequence-to-sequence model from config, and the
edited model itself; checked before training, cached for review, recorded in the manifest and judged apart."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from tiny import VOCAB, make_tokenizer, tiny_model
from transformers import MarianConfig, MarianMTModel

from peft_mpn import EditRequest
from peft_mpn.bench import run_benchmark
from peft_mpn.data import FactView
from peft_mpn.data.languages import script_share
from peft_mpn.data.translation import (
    TranslationError,
    hf_translator,
    model_translator,
    translate_requests,
)
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.hub import save_edit
from peft_mpn.metrics import compute_cross_lingual_edit

GERMAN = {
    "the capital of france is": "die hauptstadt von frankreich ist",
    "the capital of germany is": "die hauptstadt von deutschland ist",
    "lyon": "lyon",
    "rome": "rome",
    "france": "frankreich",
}


class Dictionary:
    """A translator from a table, counting the texts it was asked for."""

    name = "dictionary"

    def __init__(self, table: dict[str, str]) -> None:
        self.table, self.asked = table, []

    def __call__(self, texts, source, target):
        self.asked += list(texts)
        return [self.table.get(text, "") for text in texts]


def france(**fields) -> EditRequest:
    return EditRequest.single("the capital of france is", "lyon", case_id="france", subject="france", **fields)


def test_a_translator_writes_the_missing_versions_and_the_cache_keeps_them(tmp_path):
    translator = Dictionary(GERMAN)
    cache = tmp_path / "review" / "translations.json"  # its folder is made
    (written,) = translate_requests([france()], ["de"], translator, cache=cache)
    assert written.machine_translated == ("de",)
    assert written.views["de"] == FactView("die hauptstadt von frankreich ist", "lyon", subject="frankreich")
    assert sorted(translator.asked) == ["france", "lyon", "the capital of france is"]
    stored = json.loads(cache.read_text())
    assert stored["dictionary"]["en>de"]["the capital of france is"] == "die hauptstadt von frankreich ist"

    # a person corrects the cache; the next run trains on the correction and asks the translator nothing
    stored["dictionary"]["en>de"]["lyon"] = "rome"
    cache.write_text(json.dumps(stored))
    again = Dictionary(GERMAN)
    (corrected,) = translate_requests([france()], ["de"], again, cache=cache)
    assert corrected.views["de"].target == "rome" and again.asked == []
    assert EditRequest.from_dict(corrected.to_dict()) == corrected  # the record round-trips, machine languages too


def test_versions_given_by_a_person_are_kept():
    given = france(parallel={"de": ("hauptstadt von frankreich ist", "lyon")})
    (written,) = translate_requests([given], ["de"], Dictionary(GERMAN))
    assert written == given and written.machine_translated == ()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"the capital of france is": "", "lyon": "lyon"}, "an empty translation"),
        ({"the capital of france is": "the capital of france is", "lyon": "lyon"}, "came back untranslated"),
        ({"the capital of france is": "die hauptstadt", "lyon": ""}, "an empty translation"),
        ({"the capital of france is": "die hauptstadt", "lyon": "ลียง"}, "neither German's nor English's script"),
    ],
)
def test_a_bad_translation_is_skipped_with_a_warning(table, problem, caplog):
    with caplog.at_level(logging.WARNING):
        (written,) = translate_requests([france()], ["de"], Dictionary(table))
    assert "de" not in written.views and written.machine_translated == ()
    assert problem in caplog.text and "france" in caplog.text


def test_a_translation_in_the_wrong_script_is_skipped(caplog):
    russian = Dictionary({"the capital of france is": "die hauptstadt von frankreich ist", "lyon": "Лион"})
    with caplog.at_level(logging.WARNING):
        (written,) = translate_requests([france()], ["ru"], russian)
    assert "ru" not in written.views and "not written in Russian's script" in caplog.text
    # a name kept in the source's script is no reason to refuse a question or an answer
    kept = Dictionary({"the capital of france is": "столица france", "lyon": "lyon", "france": "france"})
    (written,) = translate_requests([france()], ["ru"], kept)
    assert written.views["ru"] == FactView("столица france", "lyon", subject="france")
    assert script_share("Какая столица Франции?", "ru") == 1.0 and script_share("Airbus 的总部在哪里？", "zh") == 0.5


def test_a_failing_translator_is_a_clear_error():
    def broken(texts, source, target):
        raise ConnectionError("service down")

    with pytest.raises(TranslationError, match=r"failed on 'en' -> 'de' \(ConnectionError: service down\)"):
        translate_requests([france()], ["de"], broken)
    with pytest.raises(TranslationError, match="returned 1 results for 3 texts"):
        translate_requests([france()], ["de"], lambda texts, source, target: ["one"])


def test_the_models_own_translations_reach_the_request():
    model, tokenizer = tiny_model("llama"), make_tokenizer()
    translator = model_translator(model, tokenizer, max_new_tokens=4)
    out = translator(["the capital of france is", "lyon"], "en", "de")
    assert len(out) == 2 and all(isinstance(text, str) and "\n" not in text for text in out)
    assert translator.name.startswith("model:")
    with pytest.raises(TranslationError, match=r"no example texts in 'xx': pass examples="):
        translator(["lyon"], "en", "xx")
    own = model_translator(model, tokenizer, examples={"xx": ("a", "b", "c", "d")}, max_new_tokens=2)
    assert len(own(["lyon"], "en", "xx")) == 1
    assert own.name != translator.name  # other examples write other translations: cached apart


def test_a_translation_model_from_config(tmp_path):
    tokenizer = make_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["eng_Latn", "deu_Latn"]})  # NLLB's language tokens
    config = MarianConfig(
        vocab_size=VOCAB + 2, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=2, decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(tmp_path / "translator")
    tokenizer.save_pretrained(tmp_path / "translator")
    translator = hf_translator(tmp_path / "translator", max_new_tokens=5)
    out = translator(["the capital of france is", "lyon", "rome"], "en", "de")
    assert len(out) == 3 and all(isinstance(text, str) for text in out)
    with pytest.raises(TranslationError, match=r"no language token for \['ja'\].*language_codes="):
        translator(["lyon"], "en", "ja")


def test_machine_versions_reach_the_editor_the_manifest_and_their_own_group(tmp_path, monkeypatch):
    model, tokenizer = tiny_model("llama"), make_tokenizer()
    requests = [
        france(parallel={"de": FactView("hauptstadt von frankreich ist", "lyon", locality_prompt="a cat sat on")}),
        EditRequest.single(
            "the capital of germany is", "rome", case_id="germany",
            parallel={"de": FactView("hauptstadt von deutschland ist", "rome", locality_prompt="the sun shines")},
            locality_prompt="a dog runs in",
        ),
    ]  # fmt: skip
    trained = []
    edit = MPNEditor.edit
    results_of = []

    def recording(self, request):
        trained.append(request)
        results_of.append(edit(self, request))
        return results_of[-1]

    monkeypatch.setattr(MPNEditor, "edit", recording)
    cache = tmp_path / "translations.json"
    results = run_benchmark(
        model,
        tokenizer,
        requests,
        method="mpn",
        num_edits=2,
        memory_cases=0,
        prompt_format="raw",
        augment_languages=[],
        translate_languages=["de"],
        translator=Dictionary(GERMAN),
        translation_cache=cache,
        config=MPNEditorConfig(max_steps=3, neighbour_negatives=0, subject_gate_depth=None),
        progress=False,
    )
    assert {r.case_id: r.views["de"].prompt for r in trained} == {
        "france": "die hauptstadt von frankreich ist",  # the translator's, not the data's
        "germany": "die hauptstadt von deutschland ist",
    }
    assert all(r.machine_translated == ("de",) for r in trained)
    assert all(result.languages == ["en", "de"] for result in results_of)  # and the editor trained on them
    assert results["machine_translated_languages"] == ["de"] and results["unseen_languages"] == []
    assert results["translator"] == "dictionary" and "average_machine_translated" in results["metrics"]
    assert cache.is_file()

    editor = MPNEditor(tiny_model("llama"), tokenizer, MPNEditorConfig(max_steps=1))
    folder = save_edit(editor.model, tmp_path / "edit", trained)
    records = json.loads((folder / "edits.json").read_text())["edits"]
    assert {r["case_id"]: r["machine_translated"]["de"]["prompt"] for r in records} == {
        "france": "die hauptstadt von frankreich ist",
        "germany": "die hauptstadt von deutschland ist",
    }


def test_the_metric_reports_machine_translated_languages_apart():
    rows = {
        "predictions": [[1], [1], [2], [3]],
        "references": [[1], [1], [1], [3]],
        "case_id": ["a"] * 4,
        "language": ["en", "de", "fr", "es"],
        "probe": ["reliability"] * 4,
        "copied": [False] * 4,
    }
    result = compute_cross_lingual_edit(**rows, augment_languages=["es"], machine_translated_languages=["de"])
    assert result["machine_translated_languages"] == ["de"] and result["unseen_languages"] == ["fr"]
    assert result["average_machine_translated"]["reliability"] == 1.0
    assert result["average_unseen"]["reliability"] == 0.0 and result["average_augment"]["reliability"] == 1.0
    with pytest.raises(ValueError, match="both augmentation"):
        compute_cross_lingual_edit(**rows, augment_languages=["de"], machine_translated_languages=["de"])


def test_the_bench_refuses_a_language_from_two_sources():
    model, tokenizer = tiny_model("llama"), make_tokenizer()
    requests = [france(parallel={"de": ("hauptstadt von frankreich ist", "lyon")})]
    common = dict(method="mpn", num_edits=1, memory_cases=0, prompt_format="raw", progress=False)
    with pytest.raises(ValueError, match=r"need a translator.*list each language once"):
        run_benchmark(model, tokenizer, requests, augment_languages=["de"], translate_languages=["de"],
                      translator=Dictionary(GERMAN), **common)  # fmt: skip
    with pytest.raises(ValueError, match=r"need a translator"):
        run_benchmark(model, tokenizer, requests, translate_languages=["de"], **common)
