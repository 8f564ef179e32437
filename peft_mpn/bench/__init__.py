"""The benchmark harness: edit facts with one method, judge every language, before and after.

`runner.run_benchmark` drives an editor (from `peft_mpn.editing.registry`) over a seeded selection of cases, in
single-edit or sequential mode, and judges them with `peft_mpn.metrics.Judge`; `report.write_results` writes the
JSON, a Markdown table and a per-language plot; `command.bench` is `peft-mpn bench` (it loads data and model).
"""

from .command import bench
from .report import plot_results, results_markdown, write_results
from .runner import check_generation, merge_shards, package_versions, run_benchmark, select_cases

__all__ = [
    "bench",
    "check_generation",
    "merge_shards",
    "package_versions",
    "plot_results",
    "results_markdown",
    "run_benchmark",
    "select_cases",
    "write_results",
]
