"""`peft-mpn bench` end to end on a tiny local model and a tiny MzsRE-layout fixture, and the results page."""

from __future__ import annotations

import gzip
import json
import math
import re
import statistics
from pathlib import Path

import pytest
import torch
from tiny import context_follower, load_benchmark_script, make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.batching import encode_target
from peft_mpn.bench import report, run_benchmark, select_cases, write_results
from peft_mpn.cli import main
from peft_mpn.data import load_mzsre
from peft_mpn.editing import EDITORS
from peft_mpn.metrics import compute_cross_lingual_edit, locality_predictions, metric_rows, rows_to_columns

# (en prompt, en target, de prompt, de target, fr prompt, fr target): de copies the English target in the first
# four cases and translates it in the rest; fr always translates (so fr has no copied case).
FACTS = [
    (
        "the capital of france is",
        "lyon",
        "hauptstadt von frankreich ist",
        "lyon",
        "capitale de france est",
        "ville",
    ),
    (
        "the capital of germany is",
        "rome",
        "hauptstadt von deutschland ist",
        "rome",
        "capitale de est",
        "fleuve",
    ),
    (
        "the capital of italy is",
        "madrid",
        "hauptstadt von italy ist",
        "madrid",
        "capitale de italy est",
        "paris",
    ),
    (
        "the capital of spain is",
        "berlin",
        "hauptstadt von spain ist",
        "berlin",
        "capitale de spain est",
        "rome",
    ),
    ("river of france is", "city", "river von frankreich ist", "ist", "fleuve de france est", "ville"),
    ("city of germany is", "river", "ville von deutschland ist", "von", "ville de est", "fleuve"),
    ("river of italy is", "paris", "river von italy ist", "die", "fleuve de italy est", "lyon"),
    ("city of spain is", "rome", "ville von spain ist", "hauptstadt", "ville de spain est", "berlin"),
]
LOCALITY = ["who wrote hamlet", "what colour is the sky", "where does the river flow", "the dog runs in the park"]
ANSWERS = ["shakespeare", "blue", "north", "today"]


def _record(prompt: str, target: str, index: int) -> dict:
    return {
        "subject": prompt.split()[-2],
        "src": prompt,
        "rephrase": f"this {prompt}",
        "alt": f" {target}",
        "loc": f"nq question: {LOCALITY[index % 4]}",
        "loc_ans": ANSWERS[index % 4],
        "portability": {"New Question": f"what {prompt}", "New Answer": target},
    }


def bench_folders(root: Path) -> tuple[Path, Path, Path]:
    """`root`, a tiny Gemma-3 model and tokenizer saved as a model folder in it, and an MzsRE folder (en, de, fr)."""
    model_dir, data_dir = root / "model", root / "mzsre"
    tiny_model("gemma3_text").save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    data_dir.mkdir()
    for lang, column in (("de", 2), ("fr", 4)):
        entries = [
            {"en": _record(f[0], f[1], i), lang: _record(f[column], f[column + 1], i + 1)} for i, f in enumerate(FACTS)
        ]
        (data_dir / f"mzsre_test_duplicate_en{lang}.json").write_text(json.dumps(entries), encoding="utf-8")
    return root, model_dir, data_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return bench_folders(tmp_path_factory.mktemp("bench"))


def bench_args(setup, output, method="mpn", *extra: str) -> list[str]:
    root, model_dir, data_dir = setup
    args = ["bench", "--method", method, "--dataset", "mzsre", "--data", str(data_dir), "--model", str(model_dir)]
    args += ["--num-edits", "3", "--seed", "1", "--memory-cases", "2", "--output", str(output), "--no-progress"]
    return [*args, *extra]


def bench(setup, output, method="mpn", *extra: str) -> dict:
    assert main(bench_args(setup, output, method, *extra)) == 0
    return json.loads(output.read_text(encoding="utf-8"))


#: Methods that train on the parallel versions they are given (FT-M stands for "FT with augmentation").
AUGMENTED = ("mpn", "lafn", "ft-m")


def editor_args(method: str) -> list[str]:
    args = ["--augment-languages", "de"] if method in AUGMENTED else ["--augment-languages"]
    return args if method.startswith("icl") else [*args, "--max-steps", "3"]  # ICL trains nothing: no step budget


def fractions(table: dict) -> list:
    return [value for values in table.values() for value in values.values()]


@pytest.mark.parametrize("method", EDITORS)
def test_cli_writes_json_markdown_and_plot(setup, tmp_path, method):
    output = tmp_path / "results.json"
    layer = ["--layer", "0"] if method in ("mpn", "ft-l") else []
    adapter = ["--adapter-option", "activation=ffn"] if method == "t-patcher" else []
    results = bench(setup, output, method, *editor_args(method), *layer, *adapter)
    assert results["adapter_options"] == ({"activation": "ffn"} if adapter else {})

    assert results["method"] == method and results["mode"] == "single" and results["dataset"] == "mzsre"
    assert results["languages"] == ["en", "de", "fr"] and results["edit_language"] == "en"
    seen = ["de"] if method in AUGMENTED else []
    if method.startswith("ft-"):  # the command-line options reach the FT config
        config = results["editor_config"]
        assert config["max_steps"] == 3 and config["augment_languages"] == seen
        assert config["objective"] == {"ft-l": "prompt_last", "ft-m": "target_new"}[method]
        assert config["layer"] == (0 if method == "ft-l" else -1)
    if method in ("mpn", "t-patcher"):  # MPN patches per trained language; T-Patcher has one language anyway
        assert results["editor_config"]["patch_plan"] == {"mpn": "per_language", "t-patcher": "edit"}[method]
    assert results["augment_languages"] == seen and results["seen_languages"] == seen
    assert results["unseen_languages"] == [lang for lang in ("de", "fr") if lang not in seen]
    assert set(results["per_language"]) == set(results["before"]["per_language"]) == {"en", "de", "fr"}
    for table in (results["per_language"], results["before"]["per_language"]):
        values = fractions(table)
        assert all(v is None or 0.0 <= v <= 1.0 for v in values)
        assert set(table["fr"]) >= {"reliability", "generality", "locality", "portability", "reliability_em"}
    after, before = results["per_language"], results["before"]["per_language"]
    assert after["en"]["reliability_translated"] is None  # the split describes transfer only
    assert after["fr"]["reliability_copied"] is None and after["fr"]["reliability_translated"] is not None
    assert after["de"]["reliability_copied"] is not None
    assert all(after[lang]["locality"] is not None for lang in after)
    assert all(before[lang]["locality"] is None for lang in before)  # the unedited model is not compared to itself
    assert 0.0 <= results["metrics"]["reliability"] <= 1.0
    assert results["metrics"]["average_unseen"]["reliability"] is not None
    # Per case: the cells whose case average is the per-language number.
    for table, summary in ((results["per_case"], after), (results["before"]["per_case"], before)):
        assert sorted(table) == sorted(results["case_ids"])
        for lang in ("en", "de", "fr"):
            cells = [table[case][lang]["reliability"] for case in results["case_ids"]]
            assert sum(c[0] for c in cells) / 3 == pytest.approx(summary[lang]["reliability"], abs=1e-3)
            assert sum(c[1] for c in cells) / 3 == pytest.approx(summary[lang]["reliability_em"], abs=1e-3)
    assert all(results["per_case"][case]["fr"]["copied"] is False for case in results["case_ids"])
    assert [e["case_id"] for e in results["edits"]] == results["case_ids"] and len(results["edits"]) == 3
    assert all(e["seconds"] > 0 for e in results["edits"])
    assert results["timing"]["seconds_per_edit_mean"] > 0
    assert not set(results["case_ids"]) & set(results["memory_case_ids"])
    assert results["versions"]["torch"] == torch.__version__.split("+")[0] or results["versions"]["torch"]
    assert results["arguments"]["num_edits"] == 3 and results["seed"] == 1

    markdown = output.with_suffix(".md").read_text(encoding="utf-8")
    assert "| fr | unseen |" in markdown and "| en | edit language |" in markdown and "→" in markdown
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_sequential_mode_edits_the_same_cases_in_a_row_and_scores_the_edits(setup, tmp_path):
    # LAFN makes these tiny edits hold within a few steps, so the scores must move from before to after. Two
    # reference facts are too few to tell generic neurons on a random model: only a neuron both select is generic.
    settings = ["--augment-languages", "de", "--max-steps", "30", "--learning-rate", "0.05"]
    settings += ["--editor-option", "locator.generic_facts_fraction=1.0"]
    single = bench(setup, tmp_path / "single.json", "lafn", *settings)
    sequential = bench(setup, tmp_path / "sequential.json", "lafn", "--sequential", *settings)
    assert single["timing"]["success_rate"] == 1.0 and all(e["status"] == "edited" for e in single["edits"])
    assert single["before"]["metrics"]["reliability"] == 0.0 and single["metrics"]["reliability"] == 1.0
    assert single["per_language"]["de"]["reliability"] == 1.0  # trained on de too
    assert sequential["mode"] == "sequential" and sequential["arguments"]["sequential"] is True
    assert sequential["case_ids"] == single["case_ids"]  # same seed, same cases in the same order
    assert len(sequential["edits"]) == 3
    assert sequential["before"] == single["before"]
    assert single["editor_config"]["locator"]["generic_facts_fraction"] == 1.0
    assert "sequential mode" in (tmp_path / "sequential.md").read_text(encoding="utf-8")


def test_the_model_runs_in_the_asked_precision_and_the_run_records_it(setup, tmp_path, monkeypatch):
    import peft_mpn.bench.runner as runner

    seen = []
    real = runner.run_benchmark
    monkeypatch.setattr(
        "peft_mpn.bench.command.run_benchmark",
        lambda model, *args, **kwargs: seen.append(next(model.parameters()).dtype) or real(model, *args, **kwargs),
    )
    settings = ["--augment-languages", "de", "--max-steps", "3", "--dtype", "bfloat16", "--device", "cpu"]
    result = bench(setup, tmp_path / "bf16.json", "lafn", *settings)
    assert seen == [torch.bfloat16]
    assert (result["arguments"]["dtype"], result["arguments"]["device"]) == ("bfloat16", "cpu")
    assert len(result["edits"]) == 3 and all(math.isfinite(e["seconds"]) for e in result["edits"])


def _without_timing(result: dict) -> dict:
    kept = {k: v for k, v in result.items() if k not in ("timing", "wall_seconds", "started", "arguments")}
    kept["edits"] = [{k: v for k, v in edit.items() if k != "seconds"} for edit in result["edits"]]
    return kept


def test_a_run_split_over_two_processes_gives_the_one_process_result_row_for_row(setup, tmp_path):
    settings = ["--augment-languages", "de", "--max-steps", "4", "--num-edits", "3"]
    one = bench(setup, tmp_path / "one.json", "mpn", *settings)
    two = bench(setup, tmp_path / "two.json", "mpn", *settings, "--num-processes", "2")
    assert two["arguments"]["num_processes"] == 2
    assert _without_timing(two) == _without_timing(one)
    assert [e["case_id"] for e in two["edits"]] == one["case_ids"]


def test_shards_that_do_not_make_up_one_run_are_refused(setup, tmp_path, capsys):
    from peft_mpn.bench import merge_shards

    with pytest.raises(ValueError, match=r"Shards \[0\] do not make up one run"):
        merge_shards([{"shard": [0, 2], "run": {}, "records": [], "before_rows": [], "after_rows": []}])
    output = tmp_path / "stream.json"
    assert main(bench_args(setup, output, "mpn", "--sequential", "--num-processes", "2")) == 2
    assert re.search(r"a stream \(--sequential\) is one process", capsys.readouterr().err)
    assert not output.exists()


def test_icl_is_scored_through_its_in_context_wrapper():
    # A model taught to follow the demonstration: only a run that scores editor.model (the wrapper that puts the
    # fact in front of every prompt) sees the new target; the plain model keeps answering "paris".
    model, tokenizer = context_follower()
    request = EditRequest.single("the capital of france is", "lyon", case_id="france")
    results = run_benchmark(
        model, tokenizer, [request], method="icl", num_edits=1, memory_cases=0, prompt_format="raw", progress=False
    )
    assert results["before"]["metrics"]["reliability"] == 0.0
    assert results["metrics"]["reliability"] == 1.0 and results["metrics"]["reliability_em"] == 1.0
    assert results["edits"][0]["status"] == "edited" and results["timing"]["success_rate"] == 1.0
    assert results["editor_config"]["num_demonstrations"] == 1


def test_case_selection_follows_the_seed():
    assert select_cases(50, 10, seed=3, memory_cases=5) == select_cases(50, 10, seed=3, memory_cases=5)
    edits, memory = select_cases(50, 10, seed=3, memory_cases=5)
    assert len(set(edits)) == 10 and len(memory) == 5 and not set(edits) & set(memory)
    assert select_cases(50, 10, seed=4)[0] != edits
    with pytest.raises(ValueError, match="lower --num-edits"):
        select_cases(5, 6, seed=0)


def test_metric_rows_of_the_unedited_model(setup):
    _, model_dir, data_dir = setup
    from peft_mpn.models import load_model

    model, tokenizer = load_model(str(model_dir), progress=False)
    request = load_mzsre(data_dir)[4]
    languages = ["de", "fr", "en"]
    pre = locality_predictions(model, tokenizer, request, languages=languages)
    rows = metric_rows(model, tokenizer, request, languages=languages, pre_locality=pre)
    assert [r["language"] for r in rows][0] == "en"  # the edit language first, whatever the order given
    probes = {(r["language"], r["probe"]) for r in rows}
    assert ("en", "edit_language_answer") not in probes and ("fr", "edit_language_answer") in probes
    assert {("de", "locality"), ("de", "generality"), ("de", "portability")} <= probes
    assert all(not r["copied"] for r in rows if r["language"] == "de")  # case 4's German target is translated
    result = compute_cross_lingual_edit(**rows_to_columns(rows), edit_language="en")
    assert all(result["per_language"][lang]["locality"] == 1.0 for lang in ("en", "de", "fr"))
    with pytest.raises(ValueError, match="no version in"):
        metric_rows(model, tokenizer, request, languages=["es"])


def test_results_page_from_two_runs(setup, tmp_path):
    runs = tmp_path / "runs"
    bench(setup, runs / "mzsre_mpn_single.json", "mpn", *editor_args("mpn"))
    bench(setup, runs / "mzsre_t-patcher_single.json", "t-patcher", *editor_args("t-patcher"))
    kept = runs / "kept" / "mzsre_t-patcher_single.json.gz"  # the form the repository keeps results in
    kept.parent.mkdir()
    kept.write_bytes(gzip.compress((runs / "mzsre_t-patcher_single.json").read_bytes()))
    (runs / "mzsre_t-patcher_single.json").unlink()
    docs = tmp_path / "docs"
    results = load_benchmark_script("results")
    assert results.main([str(runs), "--docs", str(docs)]) == 0
    page = (docs / "results.md").read_text(encoding="utf-8")
    assert "mzsre" in page.lower() and "single" in page
    assert "| mpn (augment: de" in page and "| t-patcher |" in page
    # the unedited model has seen no language: its row comes from the run without augmentation, not MPN's
    assert re.search(r"\| unedited model \| [\d.]+ / [\d.]+ \| – \| – \| [\d.]+ / [\d.]+ \|", page)
    # MPN trained on de, so fr is the language judged like for like, and the head-to-head is on fr.
    assert "## MPN against T-Patcher on languages MPN never saw" in page
    assert "| MzsRE | single | de (overlapping) | 1: fr |" in page
    # three transfer readings, then the locality they cost, each as "MPN vs T-Patcher: difference [interval]"
    row = next(line for line in page.splitlines() if line.startswith("| MzsRE | single | de (overlapping)"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][4:]
    assert len(cells) == 4 and re.fullmatch(r"[\d.]+ vs [\d.]+: [+-][\d.]+ \[.+\]; EM .+", cells[-1])
    assert "Like for like, on the 1 languages no run here trained on (fr)" in page
    assert "`translated / copied`" in page and "–" in page
    # the headline is what generate() shows, the teacher-forced reading of the same cells beside it
    assert page.index("## What `generate()` shows after an edit") < page.index("## MPN against T-Patcher")
    bottom = re.search(r"\*\*MzsRE, single editing \(3 edits\)\*\* \(generated, greedy\): (.*)", page).group(1)
    ranked = r"unrelated continuations left unchanged: (mpn|t-patcher) [\d.]+, (mpn|t-patcher) [\d.]+;"
    assert re.search(ranked, bottom)
    assert re.search(r"in the languages a run trained on \(de; translated answers\): mpn [\d.]+;", bottom)
    assert re.search(r"MPN − T-Patcher, .*: on MPN's training languages [+-][\d.]+ \[", bottom)
    generated = page[page.index("Generated (greedy") : page.index("Teacher-forced, the same cells")]
    row = next(line for line in generated.splitlines() if line.startswith("| t-patcher |"))
    assert len(row.strip("|").split("|")) == 7 and re.fullmatch(r"[\d.]+", row.strip("|").split("|")[1].strip())
    forced = page[page.index("Teacher-forced, the same cells") :]
    assert re.search(r"\| t-patcher \| [\d.]+ / [\d.]+ \|", forced)
    assert "This page holds 2 of the 58 runs" in page  # the runs are named as run_results.sh names them
    assert "patch activation ([why it matters](mpn_patch_plans.md#patch-activation)): relu: 2 runs." in page
    assert "| mzsre | single | lafn, lafn-ungated, ft-l, ft-m, ft-m-augmented, icl, icl-gated |" in page
    with pytest.raises(FileNotFoundError, match="run_results.sh"):
        results.main([str(docs / "img"), "--docs", str(docs)])
    images = list((docs / "img").glob("*.png"))
    assert images and all(p.read_bytes()[:4] == b"\x89PNG" for p in images)
    assert all(f"img/{p.name}" in page for p in images)


def test_results_page_draws_the_lifelong_curves_of_every_stream(setup, tmp_path):
    runs = tmp_path / "runs"
    stream = ("--sequential", "--curve-every", "1", "--judge-sample", "2")
    for method in ("mpn", "t-patcher"):
        bench(setup, runs / f"mzsre_{method}_sequential.json", method, *editor_args(method), *stream)
    docs = tmp_path / "docs"
    assert load_benchmark_script("results").main([str(runs), "--docs", str(docs)]) == 0
    page = (docs / "results.md").read_text(encoding="utf-8")
    section = page[page.index("## Edits in a row: the lifelong curves") :]
    assert section.index("**MzsRE, 3 edits**, after the last edit (2 edited cases judged") < section.index("![")
    assert re.search(r"mpn \(augment: de; overlapping\) keeps [\d.]+ \[[\d.]+, [\d.]+\] of the sampled", section)
    assert "### t-patcher" in section and section.count("\n| 3 | 2 |") == 2  # the last point of each table
    plot = docs / "img" / "lifelong_mzsre__3_edits.png"
    assert plot.read_bytes()[:4] == b"\x89PNG" and f"img/{plot.name}" in section


def test_a_run_killed_while_writing_leaves_no_json_so_it_counts_as_not_done(setup, tmp_path, monkeypatch):
    output = tmp_path / "run.json"
    results = bench(setup, output, "icl", "--augment-languages")
    for suffix in (".json", ".md", ".png"):
        output.with_suffix(suffix).unlink()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_results", killed)
    with pytest.raises(KeyboardInterrupt):
        write_results(results, output)
    assert [p.name for p in tmp_path.iterdir()] == ["run.md"]  # the JSON comes last: it means the run is complete
    monkeypatch.undo()
    write_results(results, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.md", "run.png"]


def test_the_results_page_counts_no_temporary_or_hidden_file_as_a_run(tmp_path):
    results = load_benchmark_script("results")
    run = json.dumps({"method": "mpn", "mode": "single", "per_language": {}, "before": {}})
    (tmp_path / "mzsre_mpn_single.json").write_text(run)
    (tmp_path / ".mzsre_mpn_single.json.k2x9ab.tmp.json").write_text(run)  # left by a write that was killed
    (tmp_path / ".old").mkdir()
    (tmp_path / ".old" / "mzsre_mpn_single.json.gz").write_bytes(gzip.compress(run.encode()))
    assert [run["path"] for run in results.load_runs(tmp_path)] == [str(tmp_path / "mzsre_mpn_single.json")]


def test_judge_cache_reuses_the_unedited_judgements_of_the_same_model_and_cases(setup, tmp_path):
    cache = tmp_path / "judged"
    plain = bench(setup, tmp_path / "plain.json", "t-patcher", "--augment-languages", "--max-steps", "3")
    first = bench(setup, tmp_path / "first.json", "ft-m", "--max-steps", "3", "--judge-cache", str(cache))
    stored = sorted(cache.iterdir())
    assert len(stored) == 3  # one file per edited case
    second = bench(setup, tmp_path / "second.json", "t-patcher", "--max-steps", "3", "--judge-cache", str(cache))
    assert sorted(cache.iterdir()) == stored  # nothing new to judge
    assert first["before"] == second["before"] == plain["before"]
    assert second["per_language"] == plain["per_language"]

    # Other weights are another model: their judgements get their own entries.
    _, model_dir, data_dir = setup
    other = tmp_path / "other-model"
    tiny_model("gemma3_text", seed=7).save_pretrained(other)
    make_tokenizer().save_pretrained(other)
    args = ["bench", "--method", "ft-m", "--dataset", "mzsre", "--data", str(data_dir), "--model", str(other)]
    args += ["--num-edits", "3", "--seed", "1", "--memory-cases", "2", "--max-steps", "3", "--no-progress"]
    assert main([*args, "--output", str(tmp_path / "other.json"), "--judge-cache", str(cache)]) == 0
    assert len(list(cache.iterdir())) == 6


def test_scores_do_not_depend_on_the_batch_size(setup):
    _, model_dir, data_dir = setup
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peft_mpn.batching import encode_target
    from peft_mpn.metrics import score_targets

    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    pairs = [(f[0], f[1]) for f in FACTS] + [(f"{f[2]} und so weiter", f[5]) for f in FACTS]
    one_by_one = [score for pair in pairs for score in score_targets(model, tokenizer, [pair])]
    assert score_targets(model, tokenizer, pairs, batch_size=5) == one_by_one
    # In the caller's order, although the batches are formed by length.
    assert [s.target for s in one_by_one] == [encode_target(tokenizer, p, t).target_ids for p, t in pairs]


def _full_logits_predictions(model, tokenizer, pairs):
    """The reference: the whole sequence's logits, no window, one pair at a time."""
    from peft_mpn.batching import encode_target

    predictions = []
    for prompt, target in pairs:
        encoding = encode_target(tokenizer, prompt, target)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([encoding.input_ids])).logits[0]
        start = len(encoding.input_ids) - len(encoding.target_ids)
        predictions.append(tuple(logits[start - 1 : -1].argmax(-1).tolist()))
    return predictions


class _HeadOnEveryPosition(torch.nn.Module):
    """Takes ``logits_to_keep`` but runs its head on the whole sequence before cutting the window."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep=0):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        output.logits = output.logits[:, -logits_to_keep:]
        return output


def test_scores_are_the_argmax_of_the_full_logits(setup):
    """Scoring reads only the target positions, through the model's own head or, if that fails, its logits."""
    _, model_dir, _ = setup
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peft_mpn.metrics import score_targets

    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    pairs = [(f[0], f[1]) for f in FACTS] + [(f"{f[2]} und so weiter", f"{f[5]} {f[4]}") for f in FACTS]
    expected = _full_logits_predictions(model.eval(), tokenizer, pairs)
    assert len({len(p) for p in expected}) > 1  # targets of several lengths share a batch
    assert [s.predicted for s in score_targets(model, tokenizer, pairs, batch_size=4)] == expected
    wrapped = _HeadOnEveryPosition(model)
    assert [s.predicted for s in score_targets(wrapped, tokenizer, pairs, batch_size=4)] == expected


def test_judge_speed_gives_every_scoring_configuration_the_same_rows(setup, tmp_path):
    _, model_dir, data_dir = setup
    script = load_benchmark_script("judge_speed")
    configs = ["decisions@4", "window@4", "all@2", "icl:decisions@4", "icl:all@3"]
    args = ["--model", str(model_dir), "--data", str(data_dir), "--dataset", "mzsre", "--languages", "en", "de", "fr"]
    script.main([*args, "--cases", "2", "--configs", *configs, "--output", str(tmp_path / "speed.json")])
    report = json.loads((tmp_path / "speed.json").read_text())
    assert {name: row["same_rows_as"] for name, row in report["configs"].items()} == {
        **dict.fromkeys(configs[:3], "decisions@4"),
        **dict.fromkeys(configs[3:], "icl:decisions@4"),
    }
    assert all(row["same_rows"] for row in report["configs"].values())
    assert "| icl:all@3 |" in (tmp_path / "speed.md").read_text()


def test_gpu_check_times_each_method_and_reports_the_weights_it_ran(setup, tmp_path):
    _, model_dir, data_dir = setup
    script = load_benchmark_script("gpu_check")
    args = ["--device", "cpu", "--skip-tests", "--architecture", str(model_dir), "--data", str(data_dir)]
    args += ["--num-edits", "2", "--memory-cases", "1", "--methods", "t-patcher", "ft-m", "no-such-method"]
    report = script.main([*args, "--output", str(tmp_path / "gpu.json")])
    rows = {row["method"]: row for row in report["methods"]}
    assert report["weights"] == "random (architecture only)" and report["tests"] is None
    assert rows["t-patcher"]["edits"] == rows["ft-m"]["edits"] == 2
    assert all(rows[m]["seconds_per_step"] > 0 for m in ("t-patcher", "ft-m"))
    assert "Unknown editor 'no-such-method'" in rows["no-such-method"]["error"]  # reported, the others kept
    table = (tmp_path / "gpu.md").read_text()
    assert "| ft-m |" in table and "Random weights" in table


def test_edit_speed_times_every_configuration_and_checks_prefix_caching(setup, tmp_path):
    _, model_dir, data_dir = setup
    script = load_benchmark_script("edit_speed")  # loaded by file location, it finds its parts in speed/
    args = ["--model", str(model_dir), "--data", str(data_dir), "--augment-languages", "de", "--num-edits", "2"]
    args += ["--slow-edits", "1", "--memory-start", "2", "--memory-cases", "2", "--max-steps", "2"]
    args += ["--overhead-edits", "0", "--threads", str(torch.get_num_threads()), "--no-progress"]
    report = script.main([*args, "--output", str(tmp_path / "speed.json")])
    assert {name: row["edits"] for name, row in report["configs"].items()} == {
        "cached": 2,
        "t-patcher-start": 1,
        "no-prefix-cache": 1,
        "full-vocab": 1,
        "baseline": 1,
    }
    assert [check["pair"] for check in report["exactness"]] == ["cached vs no-prefix-cache", "full-vocab vs baseline"]
    assert all(check["same_status_steps_patches"] for check in report["exactness"])  # the cache changes only speed
    table = (tmp_path / "speed.md").read_text(encoding="utf-8")
    assert "| baseline | warm | off | full | 1 |" in table
    assert "| t-patcher-start | t-patcher | on | 512 | 1 |" in table
    with pytest.raises(SystemExit):  # the edited cases would overlap the memory bank's
        script.parse_args(["--num-edits", "3", "--memory-start", "2"])


def test_lafn_gate_reads_the_gate_statistic_on_and_off_the_fact(setup, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, model_dir, data_dir = setup
    script = load_benchmark_script("lafn_gate")
    args = ["--model", str(model_dir), "--data", str(data_dir), "--augment-languages", "de", "--num-edits", "2"]
    report = script.main(
        [*args, "--memory-cases", "2", "--quantiles", "0", "0.5", "--output", str(tmp_path / "g.json")]
    )
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert rows == report["rows"] and {row["case_id"] for row in rows} <= {str(i) for i in range(len(FACTS))}
    requests = {request.case_id: request for request in load_mzsre(data_dir)}
    for row in rows:
        request = requests[row["case_id"]]
        answer_tokens = {  # one value per position that predicts an answer token, on each side
            group: sum(
                len(encode_target(tokenizer, v.prompt, v.target).target_ids) for v in map(request.views.get, langs)
            )
            for group, langs in {"trained": ["en", "de"], "unseen": ["fr"]}.items()
        }
        assert {group: len(row[group]) for group in answer_tokens} == answer_tokens
        assert row["unrelated"] and row["neurons"] and min(row["trained"]) >= 0
    # the gate's own statistic: mean |a| over the located neurons, here at the English prompt's last token
    row = rows[0]
    english = requests[row["case_id"]].views["en"].prompt
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    captured = []
    down = model.model.layers[row["layer"]].mlp.down_proj
    handle = down.register_forward_pre_hook(lambda module, args: captured.append(args[0][0, -1]))
    with torch.no_grad():
        model(**tokenizer(english, return_tensors="pt"))
    handle.remove()
    assert row["trained"][0] == pytest.approx(float(captured[0][row["neurons"]].abs().mean()), rel=1e-4)
    # at the trained minimum the gate fires on every trained position but the lowest; the table says so
    assert script.firing(rows, 0.0)["trained"] == pytest.approx(
        statistics.median(sum(v > min(r["trained"]) for v in r["trained"]) / len(r["trained"]) for r in rows)
    )
    table = (tmp_path / "g.md").read_text()
    assert "| threshold quantile | trained | unseen | unrelated |" in table and "| 0.50 |" in table


def test_paired_difference_and_its_bootstrap_interval():
    load_benchmark_script("results")  # puts benchmarks/ on the path: the page's parts are in results_page/
    from results_page.stats import paired_difference

    def run(values: dict[str, list[float]]) -> dict:
        # values: language -> per-case token accuracy on translated targets (case "c3" is copied in "de")
        cases = ["c0", "c1", "c2", "c3"]
        per_case = {
            case: {
                lang: {"reliability": [v[i], float(v[i] == 1.0)], "copied": lang == "de" and case == "c3"}
                for lang, v in values.items()
            }
            for i, case in enumerate(cases)
        }
        return {"case_ids": cases, "per_case": per_case}

    a = run({"de": [1.0, 0.5, 0.5, 0.0], "fr": [1.0, 1.0, 0.0, 0.0]})
    b = run({"de": [0.5, 0.0, 0.0, 1.0], "fr": [0.5, 0.5, 0.5, 0.5]})
    # translated cases: de c0-c2 (a: 2/3, b: 1/6), fr all (a: 0.5, b: 0.5) -> macro a - b = (0.5 + 0.0) / 2
    difference, low, high = paired_difference(a, b, ["de", "fr"], "reliability", False)
    assert difference == pytest.approx(0.25)
    assert low <= difference <= high and low < high
    copied = paired_difference(a, b, ["de", "fr"], "reliability", True)
    assert copied[0] == pytest.approx(-1.0) and copied[1] == copied[2] == pytest.approx(-1.0)  # one case: no spread
    exact = paired_difference(a, b, ["fr"], "reliability", False, exact=True)
    assert exact[0] == pytest.approx(0.5)
    assert paired_difference(a, {**b, "case_ids": ["x"]}, ["de"], "reliability", False) is None
    assert paired_difference(a, {"case_ids": a["case_ids"]}, ["de"], "reliability", False) is None


def test_a_plotted_bar_s_interval_is_a_bootstrap_over_the_edited_cases():
    load_benchmark_script("results")
    from results_page.stats import case_interval

    cases = ["c0", "c1", "c2", "c3"]
    per_case = {case: {"de": {"reliability": [v, float(v == 1.0)]}} for case, v in zip(cases, [1.0, 0.5, 0.5, 0.0])}
    value, low, high = case_interval({"per_case": per_case}, cases, ["de"], "reliability", None)
    assert value == pytest.approx(0.5) and 0.0 <= low < value < high <= 1.0
    exact = case_interval({"per_case": per_case}, cases, ["de"], "reliability", None, reading="em")
    assert exact[0] == pytest.approx(0.25)
    same = {case: {"de": {"reliability": [0.75, 0.0]}} for case in cases}
    assert case_interval({"per_case": same}, cases, ["de"], "reliability", None) == pytest.approx((0.75, 0.75, 0.75))
    assert case_interval({"metrics": {}}, cases, ["de"], "reliability", None) is None  # older results: no cells


def test_output_head_script_times_both_inputs():
    script = load_benchmark_script("output_head")
    args = ["--vocab", "64", "--hidden", "8", "--rows", "2", "--sequence", "5", "--positions", "2"]
    result = script.main([*args, "--repeats", "1", "--threads", "1"])
    assert result["strided_s"] > 0 and result["contiguous_s"] > 0 and result["ratio"] > 0
