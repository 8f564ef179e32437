"""The parts of `benchmarks/results.py`, which builds docs/results.md from `peft-mpn bench` runs.

- `runs`: loading the runs and the planned-run list; labels and per-language readings of a run;
- `stats`: the paired bootstrap of a difference between two runs;
- `sections`: the page's Markdown sections and tables;
- `plots`: the grouped-bar plot of a section.
"""
