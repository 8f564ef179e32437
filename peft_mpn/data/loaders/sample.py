"""The BMIKE-53 zsRE sample bundled with the package (for the offline demo), and how it is rebuilt."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..requests import EditRequest, FactView
from .bmike53 import load_bmike53
from .reading import PathLike, choose_languages, edit_request, record_view

BUNDLED_SAMPLE_LANGUAGES = ("en", "de", "es", "fr", "ru", "zh", "pt", "it", "ja")

_SAMPLE_FILE = "bmike53_sample.json"
_SAMPLE_FIELDS = ("subject", "src", "rephrase", "alt", "loc", "loc_ans")


def load_bundled_sample(languages: str | Iterable[str] | None = None) -> list[EditRequest]:
    """The 24-case BMIKE-53 zsRE sample shipped with the package (en de es fr ru zh pt it ja; MIT).

    It has no portability questions (left out to keep the file small). See
    `peft_mpn/resources/BMIKE53_SAMPLE_LICENSE.md` for its source and
    [`build_bmike53_sample`][peft_mpn.data.build_bmike53_sample].
    """
    text = resources.files("peft_mpn").joinpath("resources", _SAMPLE_FILE).read_text(encoding="utf-8")
    sample = json.loads(text)
    fields, where = sample["fields"], Path(f"peft_mpn/resources/{_SAMPLE_FILE}")
    langs = choose_languages(
        languages, sample["languages"], "The bundled BMIKE-53 sample", where, "load BMIKE-53 itself"
    )
    requests = []
    for case in sample["cases"]:
        views = {
            lang: record_view(dict(zip(fields, case[lang])), f"{where.name}, {case['case_id']}") for lang in langs
        }
        requests.append(edit_request(views, str(case["case_id"]), where.name))
    return requests


def build_bmike53_sample(
    split_dir: PathLike,
    out: PathLike | None = None,
    *,
    n: int = 24,
    languages: Sequence[str] = BUNDLED_SAMPLE_LANGUAGES,
    max_target_words: int = 3,
) -> dict[str, Any]:
    """Rebuild the bundled sample from BMIKE-53's zsRE split folder (writes it to `out` if given).

    Selection: in file order, the first `n` case_ids present in all `languages` whose English target has
    at most `max_target_words` words. Portability is left out to keep the file under 60 KB.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_bmike53(split_dir, "zsre", languages)
    chosen = [req for req in cases if len(req.edit.target.split()) <= max_target_words][:n]

    def row(view: FactView) -> list[str | None]:  # in the order of _SAMPLE_FIELDS
        rephrase = view.rephrases[0] if view.rephrases else None
        return [view.subject, view.prompt, rephrase, view.target, view.locality_prompt, view.locality_answer]

    sample = {
        "source": "BMIKE-53 (github.com/ercong21/MultiKnow, data/BMIKE53/), zsRE split; MIT per the authors",
        "selection": f"first {n} case_ids present in all languages with an English target of "
        f"<= {max_target_words} words; texts stripped; portability left out",
        "languages": list(languages),
        "fields": list(_SAMPLE_FIELDS),
        "cases": [{"case_id": req.case_id, **{lang: row(req.views[lang]) for lang in languages}} for req in chosen],
    }
    if out is not None:
        head = json.dumps({k: v for k, v in sample.items() if k != "cases"}, ensure_ascii=False)[:-1]
        lines = ",\n".join(json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in sample["cases"])
        Path(out).write_text(f'{head}, "cases": [\n{lines}\n]}}\n', encoding="utf-8")
    return sample
