"""Lifelong curves: a sequential run measured on its way, resumable, written as a table and a plot."""

from __future__ import annotations

import pytest
from test_bench_resume import interrupted_run, requests, run
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.bench import run_benchmark
from peft_mpn.bench.curves import CurveSettings
from peft_mpn.bench.report import write_results

CURVES = CurveSettings(every=2, sample=4, speed_repeats=1)
TIMED = ("seconds_per_edit_median", "seconds_per_edit_mean", "tokens_per_second")


def untimed(curve: list[dict]) -> list[dict]:
    return [{k: v for k, v in point.items() if k not in TIMED} for point in curve]


def test_a_stream_is_measured_every_n_edits_and_its_last_point_is_the_final_judgement(tmp_path):
    results = run(tmp_path / "stream.pt", curves=CURVES)
    curve = results["curve"]
    assert [point["edits"] for point in curve] == [2, 4]
    assert set(curve[0]["judged_cases"]) == set(results["case_ids"][:2])  # only cases edited by then
    last = curve[-1]
    assert set(last["judged_cases"]) == set(results["case_ids"])
    plain = run(tmp_path / "plain.pt")  # measuring on the way changes nothing the stream does
    assert results["per_language"] == plain["per_language"] and results["per_case"] == plain["per_case"]
    assert last["per_language"] == results["per_language"]  # every case judged at the end: the final result
    assert last["memory_size"] > curve[0]["memory_size"]  # each edit's inputs joined the bank
    assert last["adapter_bytes"] > 0
    assert last["retention_all"] == last["per_language"]["en"]["reliability_em"]  # every case judged: the same
    speed = last["tokens_per_second"]
    assert (
        speed["edited"] > 0 and speed["base"] > 0 and speed["ratio"] == pytest.approx(speed["edited"] / speed["base"])
    )

    paths = write_results({**results, "dataset": "tiny"}, tmp_path / "out.json")
    assert paths["curve_plot"].stat().st_size > 0
    table = paths["markdown"].read_text()
    assert "### Lifelong curve" in table and table.count("\n| 2 |") == 1 and table.count("\n| 4 |") == 1


def test_an_interrupted_stream_resumes_with_the_curve_points_it_had(tmp_path, monkeypatch):
    uninterrupted = run(tmp_path / "once.pt", curves=CURVES)
    checkpoint = tmp_path / "resumed.pt"
    interrupted_run(checkpoint, monkeypatch, at_edit=4, curves=CURVES)  # the point after edit 2 was measured
    resumed = run(checkpoint, curves=CURVES)
    assert untimed(resumed["curve"]) == untimed(uninterrupted["curve"])


def test_curves_need_a_sequential_run():
    with pytest.raises(ValueError, match="sequential"):
        run_benchmark(
            tiny_model("llama"), make_tokenizer(), requests(), method="mpn", num_edits=2, prompt_format="raw",
            generation=None, curves=CURVES, progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError):
        CurveSettings(every=0)


def test_a_judged_sample_edits_every_case_and_judges_the_same_few_throughout(tmp_path):
    results = run(tmp_path / "stream.pt", curves=CurveSettings(every=1, sample=4, speed_repeats=1), judge_sample=2)
    judged = results["judged_case_ids"]
    assert len(results["edits"]) == 4 and len(judged) == 2 and set(judged) <= set(results["case_ids"])
    assert sorted(judged, key=results["case_ids"].index) == judged  # in editing order
    assert set(results["per_case"]) == set(judged)
    for point in results["curve"]:  # only sampled cases, once edited
        edited = results["case_ids"][: point["edits"]]
        assert set(point["judged_cases"]) == set(judged) & set(edited)
        assert 0 <= point["retention_all"] <= 1  # every edit made so far, not only the sample
    assert results["curve"][-1]["per_language"] == results["per_language"]
    paths = write_results({**results, "dataset": "tiny"}, tmp_path / "out.json")  # points before any judged edit
    assert paths["curve_plot"].stat().st_size > 0 and "### Lifelong curve" in paths["markdown"].read_text()
    full = run(tmp_path / "full.pt")  # sampling the judging changes nothing the stream does
    assert [r["case_id"] for r in full["edits"]] == [r["case_id"] for r in results["edits"]]
    with pytest.raises(ValueError, match="sequential"):
        run_benchmark(
            tiny_model("llama"), make_tokenizer(), requests(), method="mpn", num_edits=2, prompt_format="raw",
            generation=None, judge_sample=1, progress=False,
        )  # fmt: skip


def test_curve_samples_are_uniform_and_keep_their_cases_from_point_to_point():
    from peft_mpn.bench.curves import ranked_sample

    cases = [EditRequest.single(f"q{i}", "a", case_id=str(i)) for i in range(400)]
    sizes = (100, 200, 300, 400)
    samples = [{int(r.case_id) for r in ranked_sample(cases[:n], 50, seed=0)} for n in sizes]
    for size, earlier, later in zip(sizes, samples, samples[1:]):
        assert len(later) == 50 and {case for case in later if case < size} <= earlier  # a case leaves, never returns
    assert 100 < sum(samples[-1]) / 50 < 300  # not the first cases: a sample of all of them
    assert samples[-1] != {int(r.case_id) for r in ranked_sample(cases, 50, seed=1)}
