"""The parts of `benchmarks/edit_speed.py`, which times the MPN editor on the real model.

- `configs`: the editor configurations compared and where the data is;
- `machine`: the machine, its load and this process's peak RSS;
- `measure`: `Bench`, the timed edits and the inference overhead;
- `summary`: per-configuration statistics, ratios on shared cases, prefix-caching exactness;
- `report`: the Markdown table.
"""
