"""The neuron locator: intersection and vote semantics on a tiny model whose neurons are wired by hand.

The constructed Llama reads only the last token (attention outputs are zeroed), and FFN neuron ``j`` of layers 0
and 2 fires exactly when that token's embedding has feature ``j``. So which neurons each prompt selects, and
how they combine over paraphrases, languages and reference facts, is known in advance.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from peft import get_peft_model
from tiny import REPO_ROOT, make_tokenizer, tiny_model

from peft_mpn import EditRequest, FactView, LAFNConfig
from peft_mpn.locating import (
    LocatorConfig,
    NeuronLocation,
    estimate_generic_neurons,
    locate_neurons,
    locator_layers,
    model_paraphraser,
    score_neurons,
)

FACT, EN, ONE, DE, FR, GENERIC, EN_DE, REF = range(8)
#: last word of a prompt -> the features (= neurons) it switches on
FEATURES = {
    "is": [FACT, EN, ONE, GENERIC, EN_DE],
    "city": [FACT, EN, GENERIC, EN_DE],
    "ist": [FACT, DE, GENERIC, EN_DE],
    "hauptstadt": [FACT, DE, GENERIC, EN_DE],
    "est": [FACT, FR, GENERIC],
    "capitale": [FACT, FR, GENERIC],
    "hamlet": [GENERIC, REF],
    "von": [GENERIC, REF],
    "sky": [GENERIC, REF],
    "colour": [GENERIC, REF],
    "lyon": [EN],
    "berlin": [DE],
}
#: ||W_down[:, j]||: within a prompt all present neurons fire equally, so this is their ranking
NORMS = {GENERIC: 6.0, FACT: 5.0, EN_DE: 4.0, ONE: 3.5, EN: 3.0, DE: 3.0, FR: 3.0, REF: 3.0}
LAYER_SCALE = {0: 1e-3, 2: 1.0}  # layer 1's FFN is all zeros

FRANCE = EditRequest.single(
    "the capital of france is",
    "paris",
    rephrases=["france capital city"],
    parallel={
        "de": FactView("die hauptstadt von frankreich ist", "paris", rephrases=("frankreich hauptstadt",)),
        "fr": FactView("la capitale de la france est", "paris", rephrases=("france capitale",)),
    },
    case_id="france",
)
REFERENCES = [
    EditRequest.single(
        "who wrote hamlet", "shakespeare", parallel={"de": ("hamlet von", "shakespeare"), "fr": ("de hamlet", "x")}
    ),
    EditRequest.single(
        "what colour sky", "blue", parallel={"de": ("sky colour", "blue"), "fr": ("colour of sky", "b")}
    ),
]
THRESHOLD = dict(selection="threshold", threshold=0.1)


@pytest.fixture(scope="module")
def wired():
    """(model, tokenizer): the hand-wired tiny Llama described in the module docstring."""
    model = tiny_model("llama")
    tokenizer = make_tokenizer()
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        for word, features in FEATURES.items():
            model.model.embed_tokens.weight[vocab[word], features] = 1.0
        for index, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight.zero_()
            mlp = layer.mlp
            for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                proj.weight.zero_()
            if index in LAYER_SCALE:
                for j, norm in NORMS.items():
                    mlp.gate_proj.weight[j, j] = 1.0
                    mlp.up_proj.weight[j, j] = 1.0
                    mlp.down_proj.weight[-1, j] = norm * LAYER_SCALE[index]  # writes to an unused dimension
    return model, tokenizer


def locate(wired, request=FRANCE, **kwargs):
    model, tokenizer = wired
    options = {key: kwargs.pop(key) for key in ("reference_requests", "paraphraser", "languages") if key in kwargs}
    return locate_neurons(model, tokenizer, request, LocatorConfig(**kwargs), **options)


# -- semantics ------------------------------------------------------------------------------------------------
def test_per_language_sets_are_the_neurons_selected_for_every_paraphrase(wired):
    location = locate(wired, **THRESHOLD)
    # ONE fires on "is" but not on the rephrase "france capital city", so English does not keep it
    assert location.per_language == {
        "en": {0: [FACT, EN, GENERIC, EN_DE], 2: [FACT, EN, GENERIC, EN_DE]},
        "de": {0: [FACT, DE, GENERIC, EN_DE], 2: [FACT, DE, GENERIC, EN_DE]},
        "fr": {0: [FACT, FR, GENERIC], 2: [FACT, FR, GENERIC]},
    }
    assert location.prompts["en"] == ["the capital of france is", "france capital city"]
    assert location.layers == [0, 1, 2] and location.languages == ["en", "de", "fr"]


def test_strict_intersection_and_language_vote(wired):
    strict = locate(wired, **THRESHOLD)
    assert strict.neurons == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    half = locate(wired, language_vote=0.5, **THRESHOLD)  # 2 of 3 languages: EN_DE joins
    assert half.neurons == {0: [FACT, GENERIC, EN_DE], 2: [FACT, GENERIC, EN_DE]}
    anyone = locate(wired, language_vote=0.3, **THRESHOLD)
    assert anyone.neurons[2] == [FACT, EN, DE, FR, GENERIC, EN_DE]
    # scores are the mean over all six prompts, so the generic neuron (largest norm) leads
    assert strict.scores[2][GENERIC] > strict.scores[2][FACT] > 100 * strict.scores[0][FACT] > 0


def test_generic_neurons_selected_for_all_reference_facts_are_removed(wired):
    location = locate(
        wired, generic_facts_fraction=1.0, reference_requests=[*REFERENCES, FRANCE], **THRESHOLD
    )  # the fact itself (same case_id) is not a reference
    assert location.num_references == 2
    assert location.generic == {0: [GENERIC, REF], 2: [GENERIC, REF]}
    assert location.neurons == {0: [FACT], 2: [FACT]}
    assert "generic set" in location.summary()
    # estimated once and reused for many facts: the same answer
    model, tokenizer = wired
    config = LocatorConfig(generic_facts_fraction=1.0, **THRESHOLD)
    generic = estimate_generic_neurons(model, tokenizer, [*REFERENCES, FRANCE], FRANCE.languages, config)
    reused = locate_neurons(model, tokenizer, FRANCE, config, reference_requests=generic)
    assert (reused.neurons, reused.generic, reused.num_references) == (location.neurons, location.generic, 2)


def test_top_k_ranks_within_each_prompt_and_threshold_keeps_every_firing_neuron(wired):
    top2 = locate(wired, top_k=2)
    assert top2.per_language["en"] == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    assert top2.per_language["fr"] == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    top3 = locate(wired, top_k=3)  # French has no EN_DE, so its third is FR
    assert top3.per_language["en"][2] == [FACT, GENERIC, EN_DE]
    assert top3.per_language["fr"][2] == [FACT, FR, GENERIC]
    assert top3.neurons == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    # a relative threshold of 0.6 · max keeps GENERIC (6) and FACT (5) but not EN_DE (4)
    assert locate(wired, selection="threshold", threshold=0.6).neurons == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    absolute = locate(wired, selection="threshold", threshold=1.0, relative_threshold=False)
    assert sorted(absolute.neurons) == [2]  # layer 0's scores are 1000x smaller


def test_layer_scope_ranks_per_layer_and_global_scope_over_all_layers(wired):
    assert locate(wired, top_k=2, scope="layer").neurons == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}
    assert locate(wired, top_k=2, scope="global").neurons == {2: [FACT, GENERIC]}
    assert locate(wired, top_k=2, layers=[-1, 0]).layers == [0, 2]
    upper = locate(wired, top_k=2, lowest_layer_fraction=0.5)  # 3 layers: from block int(1.5) = 1 up
    assert upper.layers == [1, 2] and upper.neurons == {2: [FACT, GENERIC]}
    assert locate(wired, top_k=2, layers=[0, 2], lowest_layer_fraction=0.4).layers == [2]


def test_integrated_gradients_scores_have_the_activation_shape(wired):
    model, tokenizer = wired
    prompts, targets = ["the capital of france is", "france capital city"], ["paris", "paris"]
    activation = score_neurons(model, tokenizer, prompts, LocatorConfig())
    ig = score_neurons(
        model, tokenizer, prompts, LocatorConfig(scoring="integrated_gradients", ig_steps=4), targets=targets
    )
    assert ig.shape == activation.shape == (2, 3, 64)
    assert torch.all(ig[:, 1] == 0)  # layer 1 has no active neuron
    location = locate_neurons(
        tiny_model("llama"),
        tokenizer,
        FRANCE,
        LocatorConfig(scoring="integrated_gradients", ig_steps=4, top_k=20, language_vote=0.3),
    )
    assert isinstance(location, NeuronLocation) and location.num_neurons > 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_integrated_gradients_add_up_to_the_log_prob_change(arch):
    """Completeness: Σ_k IG_k = log p(target | a) − log p(target | a zeroed at the read position), per layer."""
    model, tokenizer = tiny_model(arch), make_tokenizer()
    prompt, target = "the capital of france is", "paris"
    config = LocatorConfig(scoring="integrated_gradients", ig_steps=50, batch_size=50)
    ig = score_neurons(model, tokenizer, [prompt], config, targets=[target])[0]
    inputs = dict(tokenizer([prompt], return_tensors="pt"))
    target_id = tokenizer.convert_tokens_to_ids(target)
    downs = [block.mlp.c_proj if arch == "gpt2" else block.mlp.down_proj for block in locate_blocks(model)]

    def log_prob(zero_layer=None):
        def zero(module, args):
            a = args[0].clone()
            a[:, -1] = 0
            return (a,)

        handle = downs[zero_layer].register_forward_pre_hook(zero) if zero_layer is not None else None
        with torch.no_grad():
            value = torch.log_softmax(model(**inputs).logits[0, -1].float(), -1)[target_id]
        if handle:
            handle.remove()
        return float(value)

    full = log_prob()
    for layer in range(len(downs)):
        change = full - log_prob(layer)
        assert float(ig[layer].sum()) == pytest.approx(change, rel=0.02, abs=1e-3)


def locate_blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


# -- architectures, padding and positions ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_activation_scores_match_a_manual_hook_and_ignore_padding(arch):
    """|a_k| · ||W_down[:, k]||, with GPT-2's Conv1D W_down stored as [F, d] (a row norm there)."""
    model, tokenizer = tiny_model(arch), make_tokenizer()
    prompts = ["the capital of france is", "hello world"]
    together = score_neurons(model, tokenizer, prompts)
    for row, prompt in enumerate(prompts):
        alone = score_neurons(model, tokenizer, [prompt])[0]
        torch.testing.assert_close(together[row], alone, atol=1e-5, rtol=1e-4)
        captured: list[torch.Tensor] = []
        layer = locate_blocks(model)[1].mlp
        down = layer.c_proj if arch == "gpt2" else layer.down_proj
        handle = down.register_forward_pre_hook(lambda m, args, out=captured: out.append(args[0][0, -1]))
        with torch.no_grad():
            model(**tokenizer([prompt], return_tensors="pt"))
        handle.remove()
        norms = down.weight.norm(dim=1) if arch == "gpt2" else down.weight.norm(dim=0)
        torch.testing.assert_close(alone[1], captured[0].abs() * norms, atol=1e-5, rtol=1e-4)


def test_encoder_reads_cls_for_target_first_and_the_last_token_for_last():
    model, tokenizer = tiny_model("bert"), make_tokenizer(encoder=True)
    prompt = "the capital of france is"
    captured = []
    down = model.bert.encoder.layer[0].output.dense
    handle = down.register_forward_pre_hook(lambda m, args: captured.append(args[0][0]))
    with torch.no_grad():
        model(**tokenizer([prompt], return_tensors="pt"))
    handle.remove()
    norms = down.weight.norm(dim=0)
    for position, token in (("target_first", 0), ("last", -1)):
        scores = score_neurons(model, tokenizer, [prompt, "hello"], LocatorConfig(position=position))[0, 0]
        torch.testing.assert_close(scores, captured[0][token].abs() * norms, atol=1e-5, rtol=1e-4)
    label_request = EditRequest.single(prompt, 1, rephrases=["france capital city"])
    location = locate_neurons(
        model, tokenizer, label_request, LocatorConfig(scoring="integrated_gradients", ig_steps=3)
    )
    assert location.num_neurons > 0


def test_template_puts_every_language_at_the_same_slot(wired):
    model, tokenizer = wired
    config = LocatorConfig(template="{prompt} the city", top_k=2)
    scores = score_neurons(model, tokenizer, ["the capital of france is", "die hauptstadt von frankreich ist"], config)
    torch.testing.assert_close(scores[0], scores[1])  # both read at "city"
    assert locate_neurons(model, tokenizer, FRANCE, config).neurons == {0: [FACT, GENERIC], 2: [FACT, GENERIC]}


def test_locates_through_a_peft_model_and_feeds_lafn(wired):
    model, tokenizer = wired
    location = locate(wired, **THRESHOLD)
    peft_model = get_peft_model(model, location.lafn_config())
    try:
        assert peft_model.base_model.neuron_sets() == location.neurons
        again = locate_neurons(peft_model, tokenizer, FRANCE, LocatorConfig(**THRESHOLD))
        assert again.neurons == location.neurons
        assert locator_layers(peft_model) == [0, 1, 2]
    finally:
        peft_model.unload()
    assert isinstance(LAFNConfig(neurons=location.neurons), LAFNConfig)


# -- paraphrases ----------------------------------------------------------------------------------------------
NO_DE_REPHRASES = EditRequest.single(
    "the capital of france is",
    "paris",
    rephrases=["france capital city"],
    parallel={"de": ("die hauptstadt von frankreich ist", "paris")},
)


def test_paraphraser_fills_languages_without_rephrases(wired):
    calls = []

    def paraphraser(prompt, language):
        calls.append(language)
        return ["frankreich hauptstadt", prompt, ""]

    location = locate(wired, request=NO_DE_REPHRASES, paraphraser=paraphraser, **THRESHOLD)
    assert calls == ["de"]
    assert location.prompts["de"] == ["die hauptstadt von frankreich ist", "frankreich hauptstadt"]
    assert location.neurons[2] == [FACT, GENERIC, EN_DE]
    views = {"en": ["the capital of france is", "france capital city"], "de": "frankreich hauptstadt"}
    single = locate(wired, request=views, require_paraphrases=False, **THRESHOLD)
    assert single.prompts["de"] == ["frankreich hauptstadt"]


def test_model_paraphraser_returns_strings():
    paraphrase = model_paraphraser(tiny_model("gpt2"), make_tokenizer(), n=2, max_new_tokens=3)
    result = paraphrase("the capital of france is", "en")
    assert isinstance(result, list) and len(result) <= 2 and all(isinstance(p, str) and p for p in result)


# -- records and plots ----------------------------------------------------------------------------------------
def test_to_dict_from_dict_round_trips_through_json(wired):
    location = locate(wired, generic_facts_fraction=1.0, reference_requests=REFERENCES, **THRESHOLD)
    restored = NeuronLocation.from_dict(json.loads(json.dumps(location.to_dict())))
    assert restored == location
    assert restored.counts() == {0: 1, 1: 0, 2: 1}
    assert "layer" in location.summary()


def test_plots_render_to_png(wired):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    location = locate(wired, language_vote=0.5, **THRESHOLD)
    assert location.jaccard()[0][1] == pytest.approx(6 / 10)  # en vs de: {FACT, GENERIC, EN_DE} x 2 layers
    for plot in (location.plot_layers, location.plot_overlap):
        ax = plot()
        buffer = io.BytesIO()
        ax.figure.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")
        plt.close(ax.figure)
    _, axes = plt.subplots(1, 2)
    assert location.plot_layers(ax=axes[0], per_language=False) is axes[0]
    plt.close(axes[0].figure)


def test_importing_the_locator_loads_neither_matplotlib_nor_the_editors():
    # matplotlib is imported by a plot that draws its own figure, not before; locating sits below editing
    code = "import sys, peft_mpn.locating; print(sorted({'matplotlib', 'peft_mpn.editing'} & set(sys.modules)))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# -- errors ---------------------------------------------------------------------------------------------------
def test_a_language_without_paraphrases_is_located_on_its_prompt_or_refused_by_name_when_required(wired):
    assert locate(wired, request=NO_DE_REPHRASES).neurons  # the default: the single prompt is enough
    with pytest.raises(ValueError, match="'de' has no paraphrases") as error:
        locate(wired, request=NO_DE_REPHRASES, require_paraphrases=True)
    assert "paraphraser=" in str(error.value) and "require_paraphrases=False" in str(error.value)
    with pytest.raises(ValueError, match="paraphraser returned none"):
        locate(wired, request=NO_DE_REPHRASES, paraphraser=lambda prompt, language: [], require_paraphrases=True)


def test_no_overlap_says_how_many_each_language_had(wired):
    views = {"en": ["lyon", "rome lyon"], "de": ["berlin", "rome berlin"]}  # disjoint neurons
    with pytest.raises(ValueError, match="No language-agnostic neurons") as error:
        locate(wired, request=views, top_k=2)
    message = str(error.value)
    assert "en: 2" in message and "de: 2" in message and "top_k" in message and "language_vote" in message
    with pytest.raises(ValueError, match="generic"):  # top-1 is GENERIC everywhere: all of it is removed
        locate(wired, top_k=1, generic_facts_fraction=0.5, reference_requests=REFERENCES)


def test_bad_layers_scoring_and_inputs_are_refused(wired):
    with pytest.raises(ValueError, match=r"\[5\] are out of range for this 3-layer model"):
        locate(wired, layers=[5])
    with pytest.raises(ValueError, match=r"No layer of \[0\] is at or above lowest_layer_fraction=0.5"):
        locate(wired, layers=[0], lowest_layer_fraction=0.5)
    with pytest.raises(ValueError, match=r"lowest_layer_fraction.*\[0, 1\)"):
        LocatorConfig(lowest_layer_fraction=1.0)
    with pytest.raises(ValueError, match="scoring='gradient'.*'integrated_gradients'"):
        LocatorConfig(scoring="gradient")
    with pytest.raises(ValueError, match="threshold"):
        LocatorConfig(selection="threshold")
    with pytest.raises(ValueError, match="one target per prompt"):
        locate(wired, request={"en": ["a b", "c d"]}, scoring="integrated_gradients")
    with pytest.raises(ValueError, match="generic_facts_fraction is None"):
        locate(wired, reference_requests=REFERENCES)
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        LocatorConfig(template="Q: A:")
