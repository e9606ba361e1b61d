"""The install files agree: pyproject, constraints.txt, environment.yml, Makefile, .ci/run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return canonicalize_name(name)  # lowercase, runs of -_. -> "-"


def _pins(lines) -> dict[str, str]:
    """``name==version`` lines (comments and blanks ignored) -> {normalized name: version}."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=]+)", line)
        assert match, f"not an exact pin: {line!r}"
        name = _norm(match[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match[2]
    return pins


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def constraints() -> dict[str, str]:
    return _pins((REPO / "constraints.txt").read_text().splitlines())


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def _env_pip_pins(environment) -> dict[str, str]:
    subs = [d for d in environment["dependencies"] if isinstance(d, dict)]
    assert len(subs) == 1 and set(subs[0]) == {"pip"}, "expected exactly one `pip:` sub-list"
    return _pins(subs[0]["pip"])


def _required_names(pyproject) -> dict[str, Requirement]:
    project = pyproject["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["course"] + \
        project["optional-dependencies"]["test"]
    return {_norm(Requirement(r).name): Requirement(r) for r in reqs}


# ---------------------------------------------------------------- environment.yml
def test_environment_yml_shape(environment):
    deps = environment["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    assert _env_pip_pins(environment)


def test_environment_pins_are_the_constraints(environment, constraints):
    for name, version in _env_pip_pins(environment).items():
        assert name in constraints, f"{name} is pinned in environment.yml but not in constraints.txt"
        assert version == constraints[name], \
            f"{name}: environment.yml has {version}, constraints.txt {constraints[name]}"


def test_environment_covers_pyproject(environment, pyproject):
    pinned = set(_env_pip_pins(environment))
    missing = sorted(set(_required_names(pyproject)) - pinned)
    assert not missing, f"environment.yml lacks pins for {missing}"


# ---------------------------------------------------------------- constraints and pyproject
def test_constraints_satisfy_pyproject_ranges(pyproject, constraints):
    for name, req in _required_names(pyproject).items():
        assert name in constraints, f"{name} is a dependency but constraints.txt does not pin it"
        assert req.specifier.contains(constraints[name], prereleases=True), \
            f"constraints pin {name}=={constraints[name]} outside pyproject's {req}"


def test_torch_and_torchvision_are_a_matching_pair(constraints):
    torch_v = [int(p) for p in constraints["torch"].split(".")[:2]]
    vision_v = [int(p) for p in constraints["torchvision"].split(".")[:2]]
    assert torch_v[0] == 2 and vision_v[0] == 0
    # torch 2.N pairs with torchvision 0.(N+15): 2.9/0.24, 2.13/0.28, 2.14/0.29
    assert vision_v[1] == torch_v[1] + 15, (constraints["torch"], constraints["torchvision"])


def test_pyproject_entry_point_and_python(pyproject):
    project = pyproject["project"]
    assert project["scripts"]["deploylab"] == "deploylab.cli:main"
    spec = SpecifierSet(project["requires-python"])
    assert "3.10" in spec and "3.11" in spec and "3.9" not in spec


# ---------------------------------------------------------------- Makefile and CI
def test_makefile_targets():
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))
    assert {"install", "course", "test", "lab"} <= targets


def test_ci_runs_make_test():
    run = REPO / ".ci" / "run"
    assert os.access(run, os.X_OK)
    lines = [ln.split("#", 1)[0].strip() for ln in run.read_text().splitlines()]
    assert run.read_text().startswith("#!")
    assert "make test" in lines
