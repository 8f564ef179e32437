"""Read the multilingual knowledge-editing benchmarks, in their original layouts, into edit requests.

Generation benchmarks: MzsRE, BMIKE-53 and Bi-ZsRE. Classification benchmarks: XNLI and XFEVER, whose
requests carry an int label as `target` and, as locality, another case's input (see
[`load_xnli`][peft_mpn.data.load_xnli]).

Every loader returns `list[EditRequest]` with `edit_language="en"` and one [`FactView`][peft_mpn.FactView]
per language (English is always included: it is the edit). Files may be plain `.json` (as downloaded) or
gzip'd `.json.gz`; a name given with either suffix (or none) finds the other.

Record fields map onto `FactView` as `src` → `prompt`, `alt` → `target`, `rephrase` → `rephrases` (one,
kept even where it equals `src`), `old` → `true_answer`, `loc`/`loc_ans` → `locality_prompt`/`locality_answer`
(the `"nq question: "` prefix of MzsRE/Bi-ZsRE is dropped), and `port`/`port_ans` or
`portability{"New Question","New Answer"}` → the portability pair. Surrounding whitespace is stripped from
every text (some targets start with a space).

`start`/`limit` select `cases[start:start + limit]` after the languages are aligned, so a selection is
deterministic for a given set of files and languages.

The registry (`registry.py`) declares every benchmark once, as a [`DatasetSpec`][peft_mpn.data.DatasetSpec]:
its name, its loader, the options the loader takes and what they mean there, its languages, and whether its
requests are generation (string target) or classification (label) cases.
[`DATASETS`][peft_mpn.data.DATASETS] is its names; [`load_edit_requests`][peft_mpn.data.load_edit_requests]
and [`detect_layout`][peft_mpn.data.detect_layout] dispatch through it. Ask it rather than comparing names:

```python
from peft_mpn.data import dataset_options, dataset_spec

"split" in dataset_options("bmike53")       # True (also XNLI, XFEVER); False for MzsRE, Bi-ZsRE
dataset_spec("xnli").is_generation          # False: label targets
dataset_spec("mzsre").options["languages"]  # what `languages` means for MzsRE
```

A new benchmark is a module here (a loader built from the helpers in `reading.py`, and for labels
`classification.py`) plus one `DatasetSpec` in `registry.py`.

Modules: `reading` (files, records, languages), `classification` (labels, alignment, locality of
classification cases), one per benchmark (`mzsre`, `bmike53`, `bizsre`, `xnli`, `xfever`), `registry`,
`conversions` (to and from `datasets`), `sample` (the bundled BMIKE-53 sample).
"""

from .bizsre import BIZSRE_LANGUAGES, load_bizsre
from .bmike53 import BMIKE53_LANGUAGES, load_bmike53
from .classification import Case, classification_requests
from .conversions import dataset_to_requests, requests_to_dataset
from .mzsre import MZSRE_LANGUAGES, load_mzsre
from .reading import DatasetLayoutError
from .registry import DATASETS, DatasetSpec, dataset_options, dataset_spec, detect_layout, load_edit_requests
from .sample import BUNDLED_SAMPLE_LANGUAGES, build_bmike53_sample, load_bundled_sample
from .xfever import XFEVER_LABELS, XFEVER_LANGUAGES, XFEVER_TEMPLATE, load_xfever
from .xnli import XNLI_LABELS, XNLI_LANGUAGES, XNLI_TEMPLATE, load_xnli

__all__ = [
    "BIZSRE_LANGUAGES",
    "BMIKE53_LANGUAGES",
    "BUNDLED_SAMPLE_LANGUAGES",
    "DATASETS",
    "MZSRE_LANGUAGES",
    "XFEVER_LABELS",
    "XFEVER_LANGUAGES",
    "XFEVER_TEMPLATE",
    "XNLI_LABELS",
    "XNLI_LANGUAGES",
    "XNLI_TEMPLATE",
    "Case",
    "DatasetLayoutError",
    "DatasetSpec",
    "build_bmike53_sample",
    "classification_requests",
    "dataset_options",
    "dataset_spec",
    "dataset_to_requests",
    "detect_layout",
    "load_bizsre",
    "load_bmike53",
    "load_bundled_sample",
    "load_edit_requests",
    "load_mzsre",
    "load_xfever",
    "load_xnli",
    "requests_to_dataset",
]
