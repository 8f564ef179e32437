"""Edit requests and the benchmark loaders that produce them."""

from .loaders import (
    BIZSRE_LANGUAGES,
    BUNDLED_SAMPLE_LANGUAGES,
    MZSRE_LANGUAGES,
    DatasetLayoutError,
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
from .requests import EditRequest, EditRequestError, FactView

__all__ = [
    "BIZSRE_LANGUAGES",
    "BUNDLED_SAMPLE_LANGUAGES",
    "MZSRE_LANGUAGES",
    "DatasetLayoutError",
    "EditRequest",
    "EditRequestError",
    "FactView",
    "build_bmike53_sample",
    "dataset_to_requests",
    "detect_layout",
    "load_bizsre",
    "load_bmike53",
    "load_bundled_sample",
    "load_edit_requests",
    "load_mzsre",
    "requests_to_dataset",
]
