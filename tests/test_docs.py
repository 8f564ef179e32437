"""The docs stay true to the code: their Python snippets compile and name only what peft_mpn has."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch
from tiny import REPO_ROOT, load_benchmark_script

DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
SNIPPET_PAGES = [*PAGES, REPO_ROOT / "README.md"]  # the README's snippets are checked like the docs' ones
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets(page: Path) -> list[str]:
    return SNIPPET.findall(page.read_text(encoding="utf-8"))


def resolve(dotted: str):
    """The object at ``dotted`` (a module, or an attribute of one), or raise AttributeError/ImportError."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(dotted)


def check_snippet(code: str) -> list[str]:
    """Problems in one snippet: peft_mpn names that do not exist, keyword arguments a peft_mpn callable lacks."""
    problems = []
    names: dict[str, str] = {}  # local name -> dotted peft_mpn path
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "peft_mpn":
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "peft_mpn":
                    names[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
    for dotted in names.values():
        try:
            resolve(dotted)
        except (ImportError, AttributeError):
            problems.append(f"{dotted} does not exist")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func, names)
        if dotted is None:
            continue
        try:
            target = resolve(dotted)
        except (ImportError, AttributeError):
            problems.append(f"{dotted} does not exist")
            continue
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        for keyword in node.keywords:
            if keyword.arg is not None and keyword.arg not in parameters:
                problems.append(f"{dotted}() has no argument {keyword.arg!r}")
    return problems


def _dotted(func: ast.expr, names: dict[str, str]) -> str | None:
    """``peft_mpn...`` path of a called name or attribute chain that starts at a peft_mpn import, else None."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in names:
        return None
    return ".".join([names[func.id], *reversed(parts)])


@pytest.mark.parametrize("page", SNIPPET_PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_snippets_compile_and_use_the_current_api(page):
    for code in snippets(page):
        compile(code, str(page), "exec")
        assert not check_snippet(code), f"{page.name}: {check_snippet(code)}\n{code}"


def test_the_checker_catches_a_wrong_name_and_a_wrong_argument():
    assert check_snippet("from peft_mpn.editing import MPNEditorConfig\nMPNEditorConfig(augment_languages=[])") == []
    assert check_snippet("from peft_mpn import NoSuchThing") == ["peft_mpn.NoSuchThing does not exist"]
    assert check_snippet("import peft_mpn\npeft_mpn.MPNConfig(layer=3)") == [
        "peft_mpn.MPNConfig() has no argument 'layer'"
    ]


def test_every_example_is_documented_and_every_documented_example_exists():
    documented = {name for page in PAGES for name in re.findall(r"examples/(\w+\.py)", page.read_text())}
    scripts = {path.name for path in (REPO_ROOT / "examples").glob("*.py") if not path.name.startswith("_")}
    assert documented == scripts


def test_every_page_is_in_the_nav():
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    # a page outside the nav is built but nothing links to it
    missing = [str(page.relative_to(DOCS)) for page in PAGES if str(page.relative_to(DOCS)) not in nav]
    assert missing == []


def test_results_page_is_the_one_the_kept_runs_build(tmp_path):
    # docs/results.md is generated, never edited: rebuilding it from benchmarks/results/ gives the same text.
    results = load_benchmark_script("results")
    kept = REPO_ROOT / "benchmarks" / "results"
    rebuilt = results.build_page(
        results.load_runs(kept), tmp_path, results.planned_runs(), results.load_classifier_report(kept)
    )
    page = (DOCS / "results.md").read_text(encoding="utf-8")
    assert rebuilt.read_text(encoding="utf-8") == page, "run: python benchmarks/results.py benchmarks/results"
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted(
        p.name for pattern in ("results_*.png", "lifelong_*.png") for p in (DOCS / "img").glob(pattern)
    )  # the page's plots: per-dataset tables and lifelong curves


def test_the_readme_use_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    # The README's first snippet, executed as a user pastes it; only load_model() gives a tiny Gemma 3 with a
    # byte-level tokenizer instead of Gemma-3-270M (same architecture, built from config): seconds, not minutes.
    from tiny import byte_tokenizer, tiny_model

    from peft_mpn import models

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = snippets_under(readme, "## Use")[0]
    tokenizer = byte_tokenizer()
    monkeypatch.setattr(
        models, "load_model", lambda *args, **kwargs: (tiny_model("gemma3_text", vocab_size=len(tokenizer)), tokenizer)
    )
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    status, *_ = printed[0].split()
    assert status in ("edited", "unfixed", "skipped") and printed[0].endswith(" s")
    assert [line.split()[0] for line in printed[1:4]] == ["en", "de", "fr"]  # one line per language
    assert (tmp_path / "my-edit" / "adapter_config.json").is_file()
    inputs = tokenizer(["Which company built the Boeing 747?"], return_tensors="pt")
    with torch.no_grad():  # the adapter reloaded in the "fresh process" part is the edit made above
        assert torch.equal(namespace["edited"](**inputs).logits, namespace["editor"].model(**inputs).logits)


def snippets_under(page_text: str, heading: str) -> list[str]:
    """The ```python blocks of one section of a Markdown page (from `heading` to the next heading of its level)."""
    start = page_text.index(heading + "\n")
    level = heading.split()[0]
    end = page_text.find(f"\n{level} ", start + len(heading))
    return SNIPPET.findall(page_text[start : end if end != -1 else None])


def test_docstring_examples_are_sections_mkdocstrings_renders():
    # Griffe reads "Examples:" with its content on the next lines as a section and renders the code; "Example:",
    # or a blank line after the title, leaves the fences printed as text in the API reference.
    bad = []
    for path in (REPO_ROOT / "peft_mpn").rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[:-1], 1):
            title = line.strip()
            if title == "Example:" or (title == "Examples:" and not lines[number].strip()):
                bad.append(f"{path.relative_to(REPO_ROOT)}:{number}: {title}")
    assert bad == []
