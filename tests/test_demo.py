"""`peft-mpn demo` on a tiny local model: its numbers are the judge's, its data the bundled sample or --data."""

from __future__ import annotations

import json
import re

import pytest
from tiny import REPO_ROOT, make_tokenizer, tiny_model

from peft_mpn.cli import main
from peft_mpn.demo import MEMORY_START, load_demo_facts, run_demo
from peft_mpn.metrics import exact_matches

# (en prompt, de prompt, fr prompt, en/de target, fr target): de copies the English target, fr translates it.
FACTS = [
    ("the capital of france is", "die hauptstadt von frankreich ist", "la capitale de france est", "lyon", "ville"),
    ("the capital of germany is", "die hauptstadt von deutschland ist", "la capitale de est", "rome", "fleuve"),
    ("the capital of italy is", "die hauptstadt von italy ist", "la capitale de italy est", "madrid", "paris"),
    ("the capital of spain is", "die hauptstadt von spain ist", "la capitale de spain est", "berlin", "rome"),
]
LOCALITY = [("who wrote hamlet", "shakespeare"), ("what colour is the sky", "blue")]


def _record(prompt: str, target: str, index: int) -> dict:
    question, answer = LOCALITY[index % 2]
    return {
        "subject": prompt.split()[-2],
        "src": prompt,
        "rephrase": f"this {prompt}",
        "alt": target,
        "loc": f"nq question: {question}",
        "loc_ans": answer,
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny Llama saved as a model folder, and a 4-case MzsRE folder (en, de, fr)."""
    root = tmp_path_factory.mktemp("demo")
    model_dir, data_dir = root / "model", root / "mzsre"
    tiny_model("llama").save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    data_dir.mkdir()
    for lang, prompt, target in (("de", 1, 3), ("fr", 2, 4)):
        entries = [{"en": _record(f[0], f[3], i), lang: _record(f[prompt], f[target], i)} for i, f in enumerate(FACTS)]
        (data_dir / f"mzsre_test_duplicate_en{lang}.json").write_text(json.dumps(entries), encoding="utf-8")
    return model_dir, data_dir


def test_the_demo_formats_the_judges_scores(setup):
    model_dir, data_dir = setup
    report = run_demo(str(model_dir), data_dir, num_facts=2, augment_languages=["de", "xx"], progress=False)
    assert report.methods == ["T-Patcher", "MPN"] and report.augment_languages == ["de"]  # xx: no fact has it
    assert report.languages == ["en", "de", "fr"] and report.unseen_languages == ["fr"]
    assert "memory bank from case 2" in report.source  # the folder has no case 400: the cases after the facts
    for method in ("before", *report.methods):
        scores = report.scores[method]
        assert scores["num_cases"] == 2
        held, total = exact_matches(scores, "en")
        assert report.wins(method, ["en"], "reliability") == f"{held}/{total}"
    assert report.scores["before"]["locality"] is None
    assert all(0.0 <= report.scores[m]["average"]["locality"] <= 1.0 for m in report.methods)

    text = report.markdown()
    assert text.startswith(f"Source: {report.source}")
    summary = text.index("| facts whose new answer wins | before | T-Patcher | MPN |")
    assert summary < text.index("| language | seen in editing | before | T-Patcher | MPN |")  # the bottom line first
    assert "| trained by MPN (de), copied |" in text and "| trained by neither (fr), translated |" in text
    assert "| trained by MPN (de), translated |" not in text  # no fact has one: no row of dashes
    assert re.search(r"\| de \| yes \(MPN\) \| - \(\d/2\) \|", text)  # de copies every English target
    assert re.search(r"\| fr \| no \| \d/2 \(-\) \|", text)  # fr translates every one
    locality = [f"{report.scores[m]['average']['locality']:.2f}" for m in report.methods]
    assert f"| locality | - | {locality[0]} | {locality[1]} |" in text
    # generation: counted in the bottom line, and the text itself shown before and after each method's edit
    generated = [report.wins(m, ["en"], "reliability", "gen") for m in ["before", *report.methods]]
    assert f"| en, generated answer exact | {' | '.join(generated)} |" in text
    assert "| en, generated answer stops |" in text and "| locality, generated | - |" in text
    assert set(report.generated) == {"before", "T-Patcher", "MPN"}
    for case, (target, before) in report.generated["before"].items():
        after = report.generated["MPN"][case][1]
        assert (
            f"| {case} | `{target}` | `{before.replace(chr(10), '⏎')}` |" in text
            and f"`{after.replace(chr(10), '⏎')}`" in text
        )


def test_demo_facts_default_to_the_bundled_sample_and_read_any_benchmark_folder(setup):
    _, data_dir = setup
    facts, memory, source = load_demo_facts(None, 8)
    assert len(facts) == 8 and len(memory) == 12 and "bundled BMIKE-53" in source
    assert not {f.case_id for f in facts} & {m.case_id for m in memory}
    facts, memory, source = load_demo_facts(data_dir, 3, memory_facts=5)
    assert [f.case_id for f in facts] == ["0", "1", "2"] and [m.case_id for m in memory] == ["3"]
    assert MEMORY_START == 400 and str(data_dir) in source
    with pytest.raises(ValueError, match="at most 12"):
        load_demo_facts(None, 13)
    with pytest.raises(FileNotFoundError, match="leave --data out for the bundled"):
        load_demo_facts(data_dir / "missing", 2)


def test_the_demo_reads_nothing_outside_the_package(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert "shared" not in help_text and "--no-progress" in help_text  # like every other command
    for module in (REPO_ROOT / "peft_mpn").rglob("*.py"):
        assert not re.search(r"\.\./shared|[\"']shared[\"']", module.read_text(encoding="utf-8")), module
