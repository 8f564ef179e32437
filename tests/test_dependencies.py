"""constraints.txt (the releases CI installs) stays inside the ranges pyproject.toml declares."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from tiny import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [Requirement(line) for line in [*project["dependencies"], *extras["dev"], *extras["models"]]]


def locked_versions() -> dict[str, Version]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_dependency_is_locked_inside_its_range():
    pins = locked_versions()
    problems = []
    for requirement in declared_requirements():
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pin, prereleases=True):
            problems.append(f"{requirement.name}=={pin} is outside {requirement.specifier}")
    assert problems == [], "refresh the lock with `bash .ci/newest --write-lock`: " + "; ".join(problems)


def test_the_lock_pins_the_cpu_torch_ci_installs():
    # `pip install -c constraints.txt torch==2.13.0` must not conflict with the lock's own torch pin.
    assert locked_versions()["torch"] == Version("2.13.0")
