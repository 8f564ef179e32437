"""Benchmark loaders: layouts (plain and gzip'd), alignment, errors, Dataset round trip, bundled sample."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from peft_mpn.data import (
    BUNDLED_SAMPLE_LANGUAGES,
    MZSRE_LANGUAGES,
    DatasetLayoutError,
    EditRequest,
    EditRequestError,
    FactView,
    build_bmike53_sample,
    dataset_to_requests,
    detect_layout,
    load_bizsre,
    load_bmike53,
    load_bundled_sample,
    load_edit_requests,
    load_mzsre,
    requests_to_dataset,
)

SHARED_DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
RESOURCES = Path(__file__).parents[1] / "peft_mpn" / "resources"


def write_text(path: Path, text: str) -> Path:
    """``text`` into ``path``, gzip'd when the name ends in ``.gz`` (the benchmarks ship both ways)."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write(path: Path, data: object) -> Path:
    return write_text(path, json.dumps(data, ensure_ascii=False))


def zsre_record(i: int, lang: str, **over: object) -> dict:
    tag = "" if lang == "en" else f"[{lang}] "
    record = {
        "subject": f"{tag}S{i}",
        "src": f"{tag}Question {i}?",
        "rephrase": f"{tag}Rephrased {i}?",
        "alt": f" {tag}Answer {i}" if i == 2 else f"{tag}Answer {i}",  # a leading space, as in the real data
        "loc": ("nq question: " if lang == "en" else "") + f"{tag}unrelated {i}",
        "loc_ans": f"{tag}loc answer {i}",
        "portability": {"New Question": f"{tag}Port {i}?", "New Answer": f"{tag}port answer {i}"},
    }
    record.update(over)
    return record


def bmike_record(case_id: int, lang: str, **over: object) -> dict:
    tag = "" if lang == "en" else f"[{lang}] "
    record = {
        "case_id": case_id,
        "subject": f"{tag}S{case_id}",
        "src": f"{tag}Question {case_id}?",
        "rephrase": f"{tag}Question {case_id}?",  # rephrase == src happens in the real data: kept
        "old": f"{tag}old {case_id}",
        "alt": f"{tag}new {case_id}",
        "loc": f"{tag}unrelated {case_id}",
        "loc_ans": f"{tag}loc answer {case_id}",
        "port": f"{tag}Port {case_id}?",
        "port_ans": f"{tag}port answer {case_id}",
    }
    record.update(over)
    return record


@pytest.fixture
def mzsre_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mzsre"
    folder.mkdir()
    for lang, suffix in (("de", ".json"), ("zh", ".json.gz"), ("ru", ".json.gz")):
        rows = [{"en": zsre_record(i, "en"), lang: zsre_record(i, lang)} for i in range(4)]
        write(folder / f"mzsre_test_duplicate_en{lang}{suffix}", rows)
    return folder


@pytest.fixture
def bmike_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bmike" / "mysplit"
    folder.mkdir(parents=True)
    ids = [7, 3, 11, 5]
    write(folder / "mysplit_test.json", [{"en": bmike_record(c, "en")} for c in ids])
    write(
        folder / "mysplit_test_de.json",
        [{"en": bmike_record(c, "en"), "de": bmike_record(c, "de")} for c in ids],
    )
    # another order, and case 11 has no French version (as 39 zsRE cases have no Hebrew one)
    fr_rows = [{"en": bmike_record(c, "en"), "fr": bmike_record(c, "fr")} for c in reversed(ids)]
    fr_rows[1] = {"en": bmike_record(11, "en")}
    write(folder / "mysplit_test_fr.json.gz", fr_rows)
    # as published, <split>_test_en.json is a copy of the German file
    write(
        folder / "mysplit_test_en.json",
        [{"en": bmike_record(c, "en"), "de": bmike_record(c, "de")} for c in ids],
    )
    return folder


def truncate(path: Path) -> Path:
    """``path`` cut in half, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ----------------------------------------------------------------------------------------------- MzsRE


def test_mzsre_plain_and_gz(mzsre_dir: Path) -> None:
    requests = load_mzsre(mzsre_dir)
    assert len(requests) == 4
    first = requests[0]
    assert first.case_id == "0" and first.edit_language == "en"
    assert first.languages == ["en", "de", "ru", "zh"]  # English first, then MzsRE's order
    assert first.edit == FactView(
        prompt="Question 0?",
        target="Answer 0",
        rephrases=("Rephrased 0?",),
        subject="S0",
        locality_prompt="unrelated 0",  # "nq question: " dropped
        locality_answer="loc answer 0",
        portability_question="Port 0?",
        portability_answer="port answer 0",
    )
    assert first.views["zh"].target == "[zh] Answer 0"
    assert requests[2].edit.target == "Answer 2"  # surrounding whitespace stripped


def test_mzsre_languages_selection_and_slicing(mzsre_dir: Path) -> None:
    requests = load_mzsre(mzsre_dir, ["zh"], start=1, limit=2)
    assert [r.case_id for r in requests] == ["1", "2"]
    assert requests[0].languages == ["en", "zh"]
    assert load_mzsre(mzsre_dir, "en")[3].languages == ["en"]
    assert load_mzsre(mzsre_dir, start=3, limit=10)[0].case_id == "3"
    with pytest.raises(ValueError, match="start and limit"):
        load_mzsre(mzsre_dir, start=-1)


def test_mzsre_single_file_and_other_suffix(mzsre_dir: Path) -> None:
    # the plain file asked for by its .gz name (and the other way round) is found
    de = load_mzsre(mzsre_dir / "mzsre_test_duplicate_ende.json.gz")
    zh = load_mzsre(mzsre_dir / "mzsre_test_duplicate_enzh.json")
    assert de[0].languages == ["en", "de"] and zh[0].languages == ["en", "zh"]


def test_mzsre_misaligned_file(mzsre_dir: Path) -> None:
    rows = [{"en": zsre_record(i, "en"), "th": zsre_record(i, "th")} for i in range(4)]
    rows[1], rows[2] = rows[2], rows[1]
    write(mzsre_dir / "mzsre_test_duplicate_enth.json", rows)
    load_mzsre(mzsre_dir, ["de", "zh"])  # the other files still load
    with pytest.raises(DatasetLayoutError, match=r"mzsre_test_duplicate_enth\.json, case 1 is not aligned") as err:
        load_mzsre(mzsre_dir)
    assert "re-download" in str(err.value)


def test_mzsre_length_mismatch(mzsre_dir: Path) -> None:
    write(
        mzsre_dir / "mzsre_test_duplicate_enes.json",
        [{"en": zsre_record(0, "en"), "es": zsre_record(0, "es")}],
    )
    with pytest.raises(DatasetLayoutError, match="has 1 cases"):
        load_mzsre(mzsre_dir, ["de", "es"])


def test_mzsre_missing_language(mzsre_dir: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_mzsre(mzsre_dir, ["de", "it"])
    message = str(err.value)
    assert "'it'" in message and "en, de, ru, zh" in message and "mzsre_test_duplicate_en{xx}" in message


ZH = "mzsre_test_duplicate_enzh.json"  # the fixture keeps it gzip'd; a plain file beside it is read instead


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda folder: truncate(folder / f"{ZH}.gz"), "truncated"),
        (lambda folder: (folder / f"{ZH}.gz").write_bytes(b"\x1f\x8bnot gzip"), "damaged"),
        (lambda folder: write_text(folder / f"{ZH}.gz", '[{"en": {"src": '), "not valid JSON"),
        (lambda folder: (folder / ZH).write_bytes(b'[{"en": "\xff"}]'), "not UTF-8"),
        (lambda folder: write_text(folder / ZH, "[" * 100_000), "nested too deeply"),
    ],
)
def test_a_damaged_file_is_named_with_the_fix(mzsre_dir: Path, damage, problem: str) -> None:
    damage(mzsre_dir)
    with pytest.raises(DatasetLayoutError) as err:
        load_mzsre(mzsre_dir)
    message = str(err.value)
    assert ZH in message and problem in message and "re-download" in message, message
    assert "\n" not in message


# -------------------------------------------------------------------------------------------- BMIKE-53


def test_bmike_joined_splits_load_in_turn_with_their_split_in_the_case_id(bmike_dir: Path) -> None:
    other = bmike_dir.parent / "second"
    other.mkdir()
    write(other / "second_test_de.json", [{"en": bmike_record(c, "en"), "de": bmike_record(c, "de")} for c in (7, 2)])
    joined = load_bmike53(bmike_dir.parent, "mysplit+second", ["de"])
    assert [r.case_id for r in joined] == ["mysplit/7", "mysplit/3", "mysplit/11", "mysplit/5", "second/7", "second/2"]
    assert joined[4].views["de"].prompt == load_bmike53(other, languages=["de"])[0].views["de"].prompt
    assert [r.case_id for r in load_bmike53(bmike_dir.parent, "mysplit+second", ["de"], start=3, limit=2)] == [
        "mysplit/5",
        "second/7",
    ]
    for bad in ("mysplit+", "mysplit+mysplit"):
        with pytest.raises(ValueError, match="distinct names separated by"):
            load_bmike53(bmike_dir.parent, bad)
    with pytest.raises(DatasetLayoutError, match="No BMIKE-53 split 'third'"):
        load_bmike53(bmike_dir.parent, "mysplit+third", ["de"])


def test_bmike_unusual_split_aligned_by_case_id(bmike_dir: Path) -> None:
    requests = load_bmike53(bmike_dir, languages=["de"])
    assert [r.case_id for r in requests] == ["7", "3", "11", "5"]
    view = requests[0].views["de"]
    assert view.true_answer == "[de] old 7" and view.portability_answer == "[de] port answer 7"
    assert view.rephrases == (view.prompt,)  # kept although equal to the prompt
    assert load_bmike53(bmike_dir, "mysplit", "en")[1].languages == ["en"]  # English-only file
    assert load_bmike53(bmike_dir.parent, "mysplit", "de", limit=1)[0].case_id == "7"  # folder above the split


def test_bmike_missing_case_dropped_with_warning_or_strict(bmike_dir: Path) -> None:
    with pytest.warns(UserWarning, match=r"fr: 1\); keeping the 3 cases"):
        requests = load_bmike53(bmike_dir)
    assert [r.case_id for r in requests] == ["7", "3", "5"]
    assert requests[0].languages == ["en", "de", "fr"]  # the _en file is not a language of its own
    assert requests[2].views["fr"].target == "[fr] new 5"
    with pytest.raises(DatasetLayoutError, match="fr: 1"):
        load_bmike53(bmike_dir, strict=True)


def test_bmike_records_in_another_order_than_their_english_ones_are_aligned_by_case_id(bmike_dir: Path) -> None:
    ids = [7, 3, 11, 5]
    german = [bmike_record(c, "de") for c in ids[1:] + ids[:1]]  # English in file order, German shifted by one
    rows = [{"en": bmike_record(c, "en"), "de": de} for c, de in zip(ids, german)]
    write(bmike_dir / "mysplit_test_de.json", rows)
    requests = load_bmike53(bmike_dir, languages=["de"])
    assert [(r.case_id, r.edit.prompt, r.views["de"].prompt) for r in requests] == [
        (str(c), f"Question {c}?", f"[de] Question {c}?") for c in ids
    ]
    for damage, problem in (
        (lambda rows: rows[1]["de"].pop("case_id"), r"case_id 3: the 'de' record has no case_id"),
        (lambda rows: rows[1]["de"].update(case_id=5), r"the 'de' record of case_id 5 appears twice"),
        (lambda rows: rows[1]["de"].update(case_id=99), r"'de' record\(s\) of case_id\(s\) \['99'\] have no English"),
    ):
        broken = json.loads(json.dumps(rows))
        damage(broken)
        write(bmike_dir / "mysplit_test_de.json", broken)
        with pytest.raises(DatasetLayoutError, match=problem) as err:
            load_bmike53(bmike_dir, languages=["de"])
        assert "mysplit_test_de.json" in str(err.value) and "re-download" in str(err.value)


def test_bmike_errors(bmike_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no 'es' version; available: en, de, fr"):
        load_bmike53(bmike_dir, languages=["es"])
    other = bmike_dir.parent / "other"
    other.mkdir()
    write(other / "other_test_de.json", [{"en": bmike_record(1, "en"), "de": bmike_record(1, "de")}])
    with pytest.raises(DatasetLayoutError, match=r"several splits \(mysplit, other\)"):
        load_bmike53(bmike_dir.parent)
    with pytest.raises(DatasetLayoutError, match="No BMIKE-53 split 'nope'"):
        load_bmike53(bmike_dir, "nope")
    bad = [{"en": bmike_record(c, "en", alt="changed"), "es": bmike_record(c, "es")} for c in (7, 3, 11, 5)]
    write(bmike_dir / "mysplit_test_es.json", bad)
    with pytest.raises(DatasetLayoutError, match="English record differs"):
        load_bmike53(bmike_dir, languages=["de", "es"])


# --------------------------------------------------------------------------------------------- Bi-ZsRE


def test_bizsre(tmp_path: Path) -> None:
    rows = [{"en": zsre_record(i, "en"), "zh": zsre_record(i, "zh")} for i in range(3)]
    path = write(tmp_path / "bizsre_test.json.gz", rows)
    requests = load_bizsre(tmp_path, start=1)
    assert [r.case_id for r in requests] == ["1", "2"]
    assert requests[0].views["zh"].locality_prompt == "[zh] unrelated 1"
    assert requests[0].edit.locality_prompt == "unrelated 1"
    assert load_bizsre(path, "en")[0].languages == ["en"]
    with pytest.raises(DatasetLayoutError, match="no 'de' version"):
        load_bizsre(path, ["de"])


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_target_is_named_with_its_file_and_case(tmp_path: Path, empty) -> None:
    rows = [{"en": zsre_record(i, "en"), "zh": zsre_record(i, "zh")} for i in range(3)]
    rows[1]["zh"]["alt"] = empty
    write(tmp_path / "bizsre_test.json", rows)
    with pytest.raises(DatasetLayoutError) as err:
        load_bizsre(tmp_path)
    message = str(err.value)
    assert message.startswith("bizsre_test.json, case 1, 'zh': the record's 'alt'"), message
    assert f"'alt' (the new answer) is empty ({empty!r})" in message and "no 'alt'" not in message, message
    del rows[1]["zh"]["alt"]
    write(tmp_path / "bizsre_test.json", rows)
    with pytest.raises(DatasetLayoutError, match=r"case 1, 'zh': the record has no 'alt' \(fields: "):
        load_bizsre(tmp_path)


# --------------------------------------------------------------------------------------------- generic


def test_generic_detection(mzsre_dir: Path, bmike_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "bizsre_test.json", [{"en": zsre_record(0, "en"), "zh": zsre_record(0, "zh")}])
    assert detect_layout(mzsre_dir) == "mzsre"
    assert detect_layout(bmike_dir) == detect_layout(bmike_dir.parent) == "bmike53"
    assert detect_layout(tmp_path / "bizsre_test.json.gz") == "bizsre"
    assert len(load_edit_requests(mzsre_dir, languages=["de"])) == 4
    assert len(load_edit_requests(bmike_dir, "BMIKE-53", languages="de")) == 4
    assert len(load_edit_requests(tmp_path / "bizsre_test.json")) == 1


def test_unknown_layout(tmp_path: Path) -> None:
    write(tmp_path / "my_data.json", [])
    with pytest.raises(DatasetLayoutError) as err:
        load_edit_requests(tmp_path)
    message = str(err.value)
    assert "my_data.json" in message
    assert all(s in message for s in ("mzsre_test_duplicate_en{xx}", "<split>_test_<lang>", "bizsre_test"))
    with pytest.raises(DatasetLayoutError, match="Unknown dataset 'xquad'"):
        load_edit_requests(tmp_path, "xquad")
    with pytest.raises(FileNotFoundError):
        load_edit_requests(tmp_path / "absent")


# -------------------------------------------------------------------------------------------- datasets


def test_dataset_round_trip(bmike_dir: Path) -> None:
    requests = load_bmike53(bmike_dir, languages="de")
    requests.append(EditRequest.single("Only English?", "yes", case_id=None))  # no 'de' view, no case_id
    dataset = requests_to_dataset(requests)
    assert len(dataset) == 5 and set(dataset.column_names) == {"case_id", "edit_language", "views"}
    assert dataset[4]["views"]["de"] is None
    assert dataset_to_requests(dataset) == requests


def test_dataset_round_trip_labels() -> None:
    requests = [EditRequest.single("A premise. A hypothesis.", 1, parallel={"de": ("Eine Prämisse.", 1)})]
    assert dataset_to_requests(requests_to_dataset(requests)) == requests
    with pytest.raises(ValueError):
        requests_to_dataset(requests + [EditRequest.single("Q?", "A")])


# --------------------------------------------------------------------------------------- bundled sample


def test_bundled_sample() -> None:
    assert (RESOURCES / "bmike53_sample.json").stat().st_size < 60_000
    assert (RESOURCES / "BMIKE53_SAMPLE_LICENSE.md").exists()
    sample = load_bundled_sample()
    assert len(sample) == 24
    assert all(r.languages == list(BUNDLED_SAMPLE_LANGUAGES) for r in sample)
    assert sample[0].case_id == "0" and sample[0].edit.target == "2006"
    assert all(len(r.edit.target.split()) <= 3 for r in sample)
    assert load_bundled_sample(["zh"])[5].views["zh"].target == "也门"
    with pytest.raises(DatasetLayoutError, match="no 'th' version"):
        load_bundled_sample(["th"])


# ----------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED_DATA / "mzsre").is_dir(), reason="shared MzsRE data not available")
def test_real_mzsre() -> None:
    requests = load_mzsre(SHARED_DATA / "mzsre")
    assert len(requests) == 743
    assert all(r.languages == list(MZSRE_LANGUAGES) for r in requests)
    first = requests[0]
    assert first.edit.prompt == "When was the inception of IAAF Combined Events Challenge?"
    assert first.edit.target == "2006"
    assert first.edit.locality_prompt == "what is the name of the last episode of spongebob"
    assert first.views["de"].rephrases == (first.views["de"].prompt,)  # a known quirk, kept
    assert first.views["zh"].target == "2006年"
    assert first.views["th"].target == "2549"  # Buddhist-era year
    assert first.views["ru"].portability_answer == "легкая атлетика"


@pytest.mark.skipif(not (SHARED_DATA / "bmike53" / "zsre").is_dir(), reason="shared BMIKE-53 data not available")
def test_bundled_sample_is_reproducible() -> None:
    rebuilt = build_bmike53_sample(SHARED_DATA / "bmike53" / "zsre")
    bundled = json.loads((RESOURCES / "bmike53_sample.json").read_text(encoding="utf-8"))
    assert rebuilt == bundled


def test_copied_means_the_edit_language_string_outside_the_edit_language():
    views = {
        "en": FactView(prompt="the capital of france is", target="Lyon"),
        "de": FactView(prompt="die hauptstadt von frankreich ist", target=" Lyon "),
        "ru": FactView(prompt="столица франции", target="Лион"),
    }
    request = EditRequest(views=views, edit_language="en")
    assert [request.copies_edit_target(lang) for lang in ("en", "de", "ru")] == [False, True, False]


@pytest.mark.parametrize(
    "make_request, field",
    [
        (lambda: EditRequest.single(b"the capital of france is", "lyon"), "prompt"),
        (lambda: EditRequest.single("the capital of france is", b"lyon"), "target"),
        (lambda: EditRequest.single("the capital of france is", b""), "target"),
        (lambda: EditRequest.single("q", "a", parallel={"de": (bytearray(b"die hauptstadt"), "lyon")}), "prompt"),
        (lambda: EditRequest.single("q", "a", parallel={"de": {"prompt": "die", "target": b"lyon"}}), "target"),
        (lambda: EditRequest.single("q", "a", rephrases=b"the capital city of france is"), "rephrase"),
        (lambda: EditRequest.single("q", "a", locality_prompt=b"who wrote hamlet"), "locality_prompt"),
    ],
)
def test_bytes_are_refused_as_bytes_not_as_empty_text(make_request, field: str) -> None:
    with pytest.raises(EditRequestError, match=rf"{field} is (bytes|bytearray), not a str; decode it") as err:
        make_request()
    assert "empty" not in str(err.value)


def test_a_prompt_that_is_not_text_is_named_by_its_type() -> None:
    with pytest.raises(EditRequestError, match="prompt must be a str, got int"):
        EditRequest.single(42, "lyon")


@pytest.mark.parametrize("record", [{}, {"views": None}, {"case_id": "x", "views": ["en"]}, ["en"]])
def test_a_record_without_views_is_named_with_the_shape_it_needs(record) -> None:
    with pytest.raises(EditRequestError, match="needs 'views': a mapping from language to its version"):
        EditRequest.from_dict(record)
