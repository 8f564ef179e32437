"""Sharing edits: manifest, card, save/push/pull by revision, composing, against a loopback Hub HTTP server.

The Hub tests run the real ``huggingface_hub`` client in fresh processes pointed at ``tests/hub_server.py``
with ``HF_ENDPOINT`` and an isolated ``HF_HOME``: push (parent-made edits) -> pull by repo id and revision ->
offline reload from the cache with the server stopped.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from hub_server import FakeHub
from peft import PeftModel, get_peft_model
from tiny import logits, make_tokenizer, run_fresh, sample_inputs, tiny_model

import peft_mpn
from peft_mpn import EditRequest, LAFNConfig, MPNConfig, PatchSet
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.hub import (
    AdapterCompositionError,
    EditManifestError,
    EditManifestNotFoundError,
    compose_adapters,
    list_edits,
    render_edit_card,
    render_metric_table,
    save_edit,
    write_edit_manifest,
)
from peft_mpn.metrics import compute_cross_lingual_edit, score_targets

BASE = "tiny-random/gpt2"  # the name the tiny base model carries, as a Hub id would
TOKEN = "hf_test_token"
MEMORY = ["the weather is nice today", "a cat sat on the mat", "numbers go up", "hello world again"]
FRANCE = EditRequest.single(
    "the capital of france is",
    "lyon",
    parallel={"de": ("die hauptstadt von frankreich ist", "lyon"), "fr": ("la capitale de la france est", "lyon")},
    case_id="france",
)
RIVER = EditRequest.single("the river flows", "south", case_id="river")


def base_model(arch: str = "gpt2") -> torch.nn.Module:
    model = tiny_model(arch)
    model.name_or_path = BASE  # from-config models have no name; peft records this one as base_model_name_or_path
    return model


def next_token(model, prompt: str) -> str:
    tokenizer = make_tokenizer()
    return tokenizer.convert_ids_to_tokens(
        int(logits(model, dict(tokenizer([prompt], return_tensors="pt")))[0, -1].argmax())
    )


def edited(request: EditRequest) -> PeftModel:
    editor = MPNEditor(
        base_model(),
        make_tokenizer(),
        MPNEditorConfig(max_steps=200, learning_rate=0.05, augment_languages=["de"]),
        unrelated_texts=MEMORY,
        progress=False,
    )
    assert editor.edit(request).status == "edited"
    return editor.model


def edit_metrics(model: PeftModel) -> dict:
    """compute_cross_lingual_edit on the France edit: reliability in en/de/fr, locality on a memory prompt."""
    tokenizer = make_tokenizer()
    pairs = [(view.prompt, view.target) for view in FRANCE.views.values()] + [("a cat sat on the", "mat")]
    scores = score_targets(model, tokenizer, pairs)
    with model.disable_adapter():
        before = score_targets(model, tokenizer, pairs[-1:])[0].predicted
    return compute_cross_lingual_edit(
        [s.predicted for s in scores],
        [s.target for s in scores[:-1]] + [before],
        case_id=["france"] * 4,
        language=[*FRANCE.views, "en"],
        probe=["reliability"] * 3 + ["locality"],
        copied=[False, True, True, False],
        augment_languages=["de"],
    )


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two edited MPN adapters saved with save_edit, their models, and the France metrics."""
    root = tmp_path_factory.mktemp("adapters")
    france, river = edited(FRANCE), edited(RIVER)
    metrics = edit_metrics(france)
    save_edit(france, root / "france", [FRANCE], metrics)
    save_edit(river, root / "river", [RIVER])
    return {"root": root, "france": france, "river": river, "metrics": metrics}


# -- manifest and card, locally --------------------------------------------------------------------------------
def test_save_edit_writes_adapter_manifest_and_card(adapters):
    folder = adapters["root"] / "france"
    assert {"adapter_config.json", "adapter_model.safetensors", "edits.json", "README.md"} <= set(os.listdir(folder))
    [record] = list_edits(folder)
    assert record["case_id"] == "france" and record["prompt"] == FRANCE.edit.prompt and record["target"] == "lyon"
    assert record["edit_language"] == "en" and record["languages"] == ["en", "de", "fr"] and record["method"] == "mpn"
    assert record["date"][:4].isdigit()
    reloaded = PeftModel.from_pretrained(base_model(), folder)
    inputs = sample_inputs("gpt2")
    assert torch.equal(logits(reloaded, inputs), logits(adapters["france"], inputs))


def test_card_has_front_matter_metric_table_and_loading_snippet(adapters):
    text = (adapters["root"] / "france" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "peft" and front["base_model"] == BASE
    assert front["tags"] == ["peft-mpn", "knowledge-editing", "mpn", "cross-lingual"]
    assert front["language"] == ["de", "en", "fr"]
    metrics = adapters["metrics"]
    for language, role in (("en", " (edit)"), ("de", " (augmented)"), ("fr", "")):
        scores = metrics["per_language"][language]
        assert f"| {language}{role} | {scores['reliability']:.3f} | – |" in text
    assert f"| en (edit) | {metrics['reliability']:.3f} | – | {metrics['locality']:.3f} | – |" in text
    assert "- **Facts edited:** 1" in text and "| france | en | the capital of france is | lyon |" in text
    assert "import peft_mpn" in text and 'PeftModel.from_pretrained(base, "path/to/this/adapter")' in text


def test_card_shows_record_text_literally():
    hostile = {
        "case_id": "x",
        "edit_language": "en",
        "prompt": "# Owned\n## [click](http://evil.example) <img src=x onerror=alert(1)> | broken",
        "target": "<script>alert(1)</script>",
    }
    body = str(render_edit_card(method="mpn", edits=[hostile])).split("---", 2)[2]
    assert not [line for line in body.splitlines() if line.startswith("#") and "Owned" in line]
    assert "<script>" not in body and "<img" not in body and "](http" not in body
    (row,) = [line for line in body.splitlines() if line.startswith("| x |")]
    assert row.count(" | ") == 3  # the pipe in the prompt does not add a column


def test_metric_table_needs_the_metric_result():
    with pytest.raises(EditManifestError, match="per_language"):
        render_metric_table({"reliability": 1.0})


def test_manifest_write_is_atomic(adapters, tmp_path, monkeypatch):
    folder = tmp_path / "copy"
    save_edit(adapters["river"], folder, [RIVER])
    before = (folder / "edits.json").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_edit_manifest(folder, [FRANCE])
    monkeypatch.undo()
    assert (folder / "edits.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["adapter_config.json", "adapter_model.safetensors", "edits.json", "README.md"]
    )
    write_edit_manifest(folder, [FRANCE], append=True)
    assert [r["case_id"] for r in list_edits(folder)] == ["river", "france"]


def test_failed_save_leaves_the_previous_save(adapters, tmp_path, monkeypatch):
    folder = tmp_path / "kept"
    save_edit(adapters["river"], folder, [RIVER])
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(PeftModel, "save_pretrained", fail)
    with pytest.raises(RuntimeError, match="boom"):
        save_edit(adapters["france"], folder, [FRANCE])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no temporary folder left behind


def test_bad_manifest_input_is_refused_clearly(adapters, tmp_path):
    with pytest.raises(EditManifestNotFoundError, match="write_edit_manifest"):
        list_edits(tmp_path)
    with pytest.raises(EditManifestError, match=r"Edit #0 lacks \['target'\]"):
        save_edit(adapters["river"], tmp_path / "x", [{"prompt": "p", "edit_language": "en"}])
    with pytest.raises(EditManifestError, match="Pass edits="):
        save_edit(adapters["river"], tmp_path / "y")
    (tmp_path / "edits.json").write_text('{"edits": []}')
    with pytest.raises(EditManifestError, match="not a peft-mpn edit manifest"):
        list_edits(tmp_path)
    manifest = json.loads((adapters["root"] / "france" / "edits.json").read_text())
    for damaged in ({**manifest, "version": "1"}, {k: v for k, v in manifest.items() if k != "edits"}):
        (tmp_path / "edits.json").write_text(json.dumps(damaged))
        with pytest.raises(EditManifestError, match="damaged edit manifest"):
            list_edits(tmp_path)


# -- composing, locally ----------------------------------------------------------------------------------------
def test_compose_two_mpn_adapters_holds_both_edits(adapters, tmp_path):
    root = adapters["root"]
    composed = compose_adapters(base_model(), [root / "france", root / "river"])
    assert next_token(composed, FRANCE.edit.prompt) == "lyon"
    assert next_token(composed, RIVER.edit.prompt) == "south"
    assert composed.peft_config["default"].num_patches == (
        adapters["france"].peft_config["default"].num_patches + adapters["river"].peft_config["default"].num_patches
    )
    save_edit(composed, tmp_path / "both")  # the merged manifest travels without edits=
    records = list_edits(tmp_path / "both")
    assert [(r["case_id"], r["source"]) for r in records] == [
        ("france", str(root / "france")),
        ("river", str(root / "river")),
    ]


def test_compose_refuses_the_same_source_twice(adapters):
    root = adapters["root"]
    # the same folder under two spellings: its patches would be added twice and double its effect
    with pytest.raises(AdapterCompositionError, match="same adapter as"):
        compose_adapters(base_model(), [root / "france", root / "river", root / "river" / ".." / "france"])


@pytest.mark.parametrize("revision", ["../../outside", "/etc/passwd", "a//b", "a\\..\\b", ""])
def test_path_like_revisions_are_refused_before_any_hub_call(adapters, revision):
    with pytest.raises(ValueError, match="revision|Revision"):
        list_edits("someone/some-edit", revision=revision)
    with pytest.raises(ValueError, match="revision|Revision"):
        peft_mpn.from_pretrained(base_model(), "someone/some-edit", revision=revision)
    with pytest.raises(ValueError, match="revision|Revision"):
        compose_adapters(base_model(), [adapters["root"] / "france"], revision=revision)


def test_compose_warns_about_a_source_without_manifest(adapters, tmp_path):
    root = adapters["root"]
    bare = tmp_path / "bare"
    adapters["river"].save_pretrained(bare, save_embedding_layers=False)  # plain PEFT: no edits.json
    with pytest.warns(UserWarning, match="no edit manifest"):
        composed = compose_adapters(base_model(), [root / "france", bare])
    assert next_token(composed, RIVER.edit.prompt) == "south"
    assert [r["case_id"] for r in composed.peft_mpn_edits] == ["france"]


def _lafn_adapter(folder, neurons: dict[int, list[int]], seed: int, **config) -> PeftModel:
    torch.manual_seed(seed)
    model = get_peft_model(base_model(), LAFNConfig(neurons=neurons, init_lafn_weights=False, **config))
    model.save_pretrained(folder, save_embedding_layers=False)
    write_edit_manifest(folder, [EditRequest.single("the sky is", "blue", case_id=f"lafn-{seed}")])
    return model


def test_compose_lafn_adapters_equals_both_active(tmp_path):
    _lafn_adapter(tmp_path / "a", {0: [3, 17], 2: [5]}, seed=1)
    _lafn_adapter(tmp_path / "b", {1: [4], 2: [6, 9]}, seed=2)  # layer 1 is new to the first adapter
    composed = compose_adapters(base_model(), [tmp_path / "a", tmp_path / "b"], adapter_name="both")
    assert composed.base_model.neuron_sets("both") == {0: [3, 17], 1: [4], 2: [5, 6, 9]}
    reference = PeftModel.from_pretrained(base_model(), tmp_path / "a", adapter_name="a")
    reference.load_adapter(tmp_path / "b", adapter_name="b")
    reference.base_model.set_adapter(["a", "b"])
    inputs = sample_inputs("gpt2")
    assert torch.allclose(logits(composed, inputs), logits(reference, inputs), atol=1e-5)
    assert not torch.allclose(logits(composed, inputs), logits(base_model(), inputs), atol=1e-3)


def test_compose_lafn_collision_names_layer_neurons_and_sources(tmp_path):
    _lafn_adapter(tmp_path / "first", {0: [3, 17], 2: [5]}, seed=1)
    _lafn_adapter(tmp_path / "second", {0: [17, 30], 2: [5, 8]}, seed=2)
    with pytest.raises(AdapterCompositionError) as error:
        compose_adapters(base_model(), [tmp_path / "first", tmp_path / "second"])
    message = str(error.value)
    assert str(tmp_path / "second") in message and str(tmp_path / "first") in message
    assert "layer 0: neurons [17]" in message and "layer 2: neurons [5]" in message


def _mpn_adapter(folder, arch: str = "gpt2", name: str = BASE, **config) -> None:
    model = tiny_model(arch)
    model.name_or_path = name
    get_peft_model(model, MPNConfig(**config)).save_pretrained(folder, save_embedding_layers=False)


@pytest.mark.parametrize(
    "other, match",
    [
        (lambda folder: _mpn_adapter(folder, name="someone/another-model"), "different base models"),
        (lambda folder: _mpn_adapter(folder, layers_to_transform=[0]), "layers_to_transform differ"),
        (lambda folder: _mpn_adapter(folder, activation="ffn"), "activation differ"),
        (lambda folder: _lafn_adapter(folder, {0: [1]}, seed=0), "different methods"),
    ],
)
def test_compose_refuses_mismatched_adapters(tmp_path, other, match):
    _mpn_adapter(tmp_path / "first")
    other(tmp_path / "second")
    with pytest.raises(AdapterCompositionError, match=match):
        compose_adapters(base_model(), [tmp_path / "first", tmp_path / "second"])


def test_patchset_of_composed_mpn_adapter_keeps_each_sources_patches(adapters):
    root = adapters["root"]
    composed = compose_adapters(base_model(), [root / "france", root / "river"])
    [layer] = composed.base_model.patch_layers().values()
    [source_layer] = adapters["river"].base_model.patch_layers().values()
    river: PatchSet = source_layer.patches("default")
    assert torch.equal(layer.patches("default").keys[-len(river) :], river.keys)


# -- the Hub: push, pull by revision, compose and list remotely, private repos, offline cache --------------------
PUSH = """
import json, sys
sys.path.insert(0, sys.argv[1])
import peft_mpn
from peft import PeftModel
from huggingface_hub import HfApi, hf_hub_download
from peft_mpn.hub import list_edits, push_edit_to_hub
from test_hub import base_model

root, metrics = sys.argv[2], json.loads(sys.argv[3])
def load(name):
    return PeftModel.from_pretrained(base_model(), f"{root}/{name}")
france, river = load("france"), load("river")
oids = {
    "france/main": push_edit_to_hub(france, "france", edits=list_edits(f"{root}/france"), metrics=metrics).oid,
    "france/v2": push_edit_to_hub(river, "tester/france", edits=list_edits(f"{root}/river"), revision="v2").oid,
    "river/main": push_edit_to_hub(river, "tester/river", edits=list_edits(f"{root}/river")).oid,
    "secret/main": push_edit_to_hub(river, "tester/secret", edits=list_edits(f"{root}/river"), private=True).oid,
}
for name in ("lafn-a", "lafn-b"):
    oids[name] = push_edit_to_hub(load(name), f"tester/{name}", edits=list_edits(f"{root}/{name}")).oid
# a model loaded from a local folder: refused before any Hub call, then pushed under the Hub id given
local = load("river")
local.peft_config["default"].base_model_name_or_path = "/data/models/gpt2-local"
try:
    push_edit_to_hub(local, "tester/local-base", edits=list_edits(f"{root}/river"))
except ValueError as error:
    oids["local_refused"] = str(error)
oids["local_exists"] = HfApi().repo_exists("tester/local-base")
oids["local/main"] = push_edit_to_hub(
    local, "tester/local-base", edits=list_edits(f"{root}/river"), base_model="tiny-random/gpt2"
).oid
oids["local_config"] = json.loads(open(hf_hub_download("tester/local-base", "adapter_config.json")).read())
# the loopback Hub refuses what the real one refuses: a card whose base_model is a path
try:
    HfApi().upload_file(
        path_or_fileobj=b"---\\nbase_model: /data/models/gpt2-local\\n---\\n# card\\n",
        path_in_repo="README.md", repo_id="tester/river",
    )
except Exception as error:
    oids["path_card"] = f"{type(error).__name__}: {error}"
print(json.dumps(oids))
"""

PULL = """
import json, sys
sys.path.insert(0, sys.argv[1])
import peft_mpn
from huggingface_hub import HfApi
from peft import PeftModel
from peft_mpn.hub import compose_adapters, list_edits
from test_hub import FRANCE, RIVER, base_model, next_token
from tiny import logits, sample_inputs

inputs = sample_inputs("gpt2")
result = {
    "main": logits(PeftModel.from_pretrained(base_model(), "tester/france"), inputs).tolist(),
    "v2": logits(peft_mpn.from_pretrained(base_model(), "tester/france", revision="v2"), inputs).tolist(),
    "edits_main": [r["case_id"] for r in list_edits("tester/france")],
    "edits_v2": [r["case_id"] for r in list_edits("tester/france", revision="v2")],
    "files_v2": sorted(HfApi().list_repo_files("tester/france", revision="v2")),
    "sha_v2": HfApi().model_info("tester/france", revision="v2").sha,
}
both = compose_adapters(base_model(), ["tester/france", "tester/river"])
result["composed"] = [next_token(both, FRANCE.edit.prompt), next_token(both, RIVER.edit.prompt)]
result["composed_sources"] = [r["source"] for r in both.peft_mpn_edits]
try:
    compose_adapters(base_model(), ["tester/lafn-a", "tester/lafn-b"])
except Exception as error:
    result["collision"] = f"{type(error).__name__}: {error}"
try:
    PeftModel.from_pretrained(base_model(), "tester/secret")
except Exception as error:
    chain = []
    while error is not None:
        chain.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    result["anonymous"] = chain
try:
    list_edits("tester/secret")
except Exception as error:
    result["anonymous_list"] = type(error).__name__
result["with_token"] = [r["case_id"] for r in list_edits("tester/secret", token=sys.argv[2])]
print(json.dumps(result))
"""

OFFLINE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import peft_mpn
from peft import PeftModel
from peft_mpn.hub import list_edits
from test_hub import base_model
from tiny import logits, sample_inputs

model = PeftModel.from_pretrained(base_model(), "tester/france", revision="v2")
print(json.dumps({"v2": logits(model, sample_inputs("gpt2")).tolist(), "edits": list_edits("tester/france", "v2")}))
"""


@pytest.fixture(scope="module")
def hub_round_trip(adapters, tmp_path_factory):
    """Push from one fresh process, pull from another, then reload offline with the server stopped."""
    root = adapters["root"]
    _lafn_adapter(root / "lafn-a", {0: [3, 17]}, seed=1)
    _lafn_adapter(root / "lafn-b", {0: [17, 30]}, seed=2)
    home = tmp_path_factory.mktemp("hf_home")
    hub = FakeHub(tokens={TOKEN}).start()
    online = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        pushed = run_fresh(PUSH, str(root), json.dumps(adapters["metrics"]), env={**online, "HF_TOKEN": TOKEN})
        pulled = run_fresh(PULL, TOKEN, env={**online, "HF_TOKEN": ""})
        card = hub.file("tester/france", "README.md").decode()
    finally:
        hub.stop()
    offline = run_fresh(OFFLINE, env={**online, "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""})
    return {"hub": hub, "pushed": pushed, "pulled": pulled, "offline": offline, "card": card}


def test_pull_by_repo_id_and_revision_gives_identical_logits(adapters, hub_round_trip):
    inputs = sample_inputs("gpt2")
    pulled = hub_round_trip["pulled"]
    assert torch.equal(torch.tensor(pulled["main"]), logits(adapters["france"], inputs))
    assert torch.equal(torch.tensor(pulled["v2"]), logits(adapters["river"], inputs))
    assert pulled["sha_v2"] == hub_round_trip["pushed"]["france/v2"]
    assert {"adapter_config.json", "adapter_model.safetensors", "edits.json", "README.md"} <= set(pulled["files_v2"])


def test_push_records_the_base_models_hub_id_and_never_a_local_path(hub_round_trip):
    pushed = hub_round_trip["pushed"]
    assert "'/data/models/gpt2-local', which is not a Hub model id" in pushed["local_refused"]
    assert "base_model='org/name'" in pushed["local_refused"] and "nothing was pushed" in pushed["local_refused"]
    assert pushed["local_exists"] is False  # refused before the repo was created
    assert pushed["local_config"]["base_model_name_or_path"] == BASE  # what AutoPeftModel loads the base from
    card = hub_round_trip["hub"].file("tester/local-base", "README.md").decode()
    assert yaml.safe_load(card.split("---")[1])["base_model"] == BASE
    # the loopback Hub holds pushes to the real Hub's rule, so a card like the old ones fails here too
    assert "Invalid metadata in README.md" in pushed["path_card"] and '"base_model" with value' in pushed["path_card"]


def test_card_metrics_are_hub_metadata(adapters, hub_round_trip):
    front = yaml.safe_load(hub_round_trip["card"].split("---")[1])
    [entry] = front["model-index"]
    results = {(r["dataset"]["config"], m["type"]): m["value"] for r in entry["results"] for m in r["metrics"]}
    per_language = adapters["metrics"]["per_language"]
    assert results[("de", "reliability")] == round(per_language["de"]["reliability"], 4)
    assert results[("en", "locality")] == round(per_language["en"]["locality"], 4)


def test_a_local_base_model_is_named_in_the_card_text_only():
    record = {"case_id": "x", "edit_language": "en", "prompt": "p", "target": "t", "languages": ["en"]}
    card = str(render_edit_card(method="mpn", edits=[record], base_model="/home/me/models/gemma"))
    assert "base_model" not in card.split("---")[1]
    assert "a local model (/home/me/models/gemma), not on the Hub" in card


def test_list_edits_remote_per_revision(hub_round_trip):
    assert hub_round_trip["pulled"]["edits_main"] == ["france"]
    assert hub_round_trip["pulled"]["edits_v2"] == ["river"]


def test_pushed_card_renders_front_matter_and_metric_table(adapters, hub_round_trip):
    card = hub_round_trip["card"]
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "peft" and front["base_model"] == BASE
    assert {"peft-mpn", "knowledge-editing", "mpn", "cross-lingual"} <= set(front["tags"])
    reliability = adapters["metrics"]["per_language"]["de"]["reliability"]
    assert f"| de (augmented) | {reliability:.3f} |" in card
    assert 'PeftModel.from_pretrained(base, "tester/france")' in card


def test_compose_from_repo_ids_holds_both_edits(hub_round_trip):
    assert hub_round_trip["pulled"]["composed"] == ["lyon", "south"]
    assert hub_round_trip["pulled"]["composed_sources"] == ["tester/france", "tester/river"]


def test_compose_colliding_lafn_repos_names_both(hub_round_trip):
    message = hub_round_trip["pulled"]["collision"]
    assert message.startswith("AdapterCompositionError")
    assert "'tester/lafn-a'" in message and "'tester/lafn-b'" in message and "layer 0: neurons [17]" in message


def test_private_repo_refuses_anonymous_reads(hub_round_trip):
    assert "RepositoryNotFoundError" in hub_round_trip["pulled"]["anonymous"]
    assert hub_round_trip["pulled"]["anonymous_list"] == "RepositoryNotFoundError"
    assert hub_round_trip["pulled"]["with_token"] == ["river"]
    assert ("POST", "/api/models/tester/secret/commit/main") in hub_round_trip["hub"].requests


def test_offline_reload_from_cache_with_server_stopped(adapters, hub_round_trip):
    offline = hub_round_trip["offline"]
    assert torch.equal(torch.tensor(offline["v2"]), logits(adapters["river"], sample_inputs("gpt2")))
    assert [r["case_id"] for r in offline["edits"]] == ["river"]


def test_plugin_exports_the_hub_api():
    assert peft_mpn.push_edit_to_hub is peft_mpn.hub.push_edit_to_hub
    assert peft_mpn.compose_adapters is compose_adapters and peft_mpn.list_edits is list_edits


def test_saved_manifest_is_readable_like_the_adapter_files(adapters, tmp_path):
    folder = save_edit(adapters["river"], tmp_path / "shared", [RIVER])
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes["edits.json"] == modes["adapter_config.json"], modes
