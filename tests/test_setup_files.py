"""The install files agree: pyproject, constraints.txt, environment.yml, Makefile, .ci/run; and the
run times the notebooks and README.md state agree with the ones the notebooks measured."""

from __future__ import annotations

import json
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
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9,._-]+\])?==([^\s=]+)", line)
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


# ---------------------------------------------------------------- notebook run times
# Every notebook measures its own run time: the first code cell records NOTEBOOK_START, the
# last one prints "notebook ran in N s". The minutes its introduction and README's table state
# must agree with the N of the committed outputs (one machine's run), within a wide margin.
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOK_TIMER_START = "NOTEBOOK_START = time.perf_counter()"
NOTEBOOK_TIMER_END = 'print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s")'
_FIGURE = r"(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?"  # "1.5" or "1–2" (en dash or hyphen)
_INTRO_RUN_TIME = re.compile(r"\*\*Run time\*\*: about " + _FIGURE + r" (s|seconds|minutes?)\b")
_README_RUN_TIME = re.compile(r"~" + _FIGURE + r" (s|min)\b")
_MEASURED = re.compile(r"notebook ran in (\d+) s")


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _stdout(cell: dict) -> str:
    texts = [o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
    return "".join("".join(t) if isinstance(t, list) else t for t in texts)


def _minutes(match: re.Match) -> tuple[float, float]:
    """The stated figure (or range) in minutes, whether it was written in seconds or minutes."""
    scale = 1 / 60 if match[3] in ("s", "seconds") else 1.0
    low = float(match[1]) * scale
    return low, (float(match[2]) * scale if match[2] else low)


def _agrees(minutes: tuple[float, float], measured_s: int) -> bool:
    """A single figure within max(45 s, half the measured time); a range A–B within 45 s of it."""
    low, high = minutes
    if low == high:
        return abs(low * 60 - measured_s) <= max(45.0, 0.5 * measured_s)
    return low * 60 - 45 <= measured_s <= high * 60 + 45


def _stated(minutes: tuple[float, float]) -> str:
    low, high = minutes
    return f"{low * 60:g} s" if low == high else f"{low * 60:g}–{high * 60:g} s"


def _allowed(minutes: tuple[float, float], measured_s: int) -> str:
    low, high = minutes
    if low == high:
        return (f"|{low * 60:g} s - {measured_s} s| = {abs(low * 60 - measured_s):g} s, "
                f"allowed {max(45.0, 0.5 * measured_s):g} s")
    return f"allowed {low * 60 - 45:g} to {high * 60 + 45:g} s"


def test_every_notebook_is_listed():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_times_itself(path):
    cells = _code_cells(_notebook(path))
    assert NOTEBOOK_TIMER_START in _source(cells[0]), \
        f"{path.name}: the first code cell must record `{NOTEBOOK_TIMER_START}`"
    assert "import time" in _source(cells[0]), f"{path.name}: the first code cell must `import time`"
    assert _source(cells[-1]).strip() == NOTEBOOK_TIMER_END, \
        f"{path.name}: the last code cell must be exactly `{NOTEBOOK_TIMER_END}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stated_run_time_matches_the_measured_one(path):
    nb = _notebook(path)
    output = _stdout(_code_cells(nb)[-1])
    measured = _MEASURED.search(output)
    assert measured, (f"{path.name}: the committed output of the last code cell has no 'notebook ran in N s' "
                      f"(it shows {output.strip()!r}); re-execute the notebook (make notebooks)")
    seconds = int(measured[1])

    intro = next(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    stated = _INTRO_RUN_TIME.search(intro)
    assert stated, f"{path.name}: the introduction has no '**Run time**: about N s (or minutes)' line"
    assert "the last cell prints this run's time" in intro[stated.start():].split("\n", 1)[0], \
        f"{path.name}: the run-time line must say that the last cell prints this run's time"
    assert _agrees(_minutes(stated), seconds), \
        (f"{path.name}: the introduction says about {_stated(_minutes(stated))}, "
         f"but the committed run took {seconds} s ({_allowed(_minutes(stated), seconds)})")

    rows = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith(f"| `{path.stem}` |")]
    assert len(rows) == 1, f"{path.name}: README.md needs exactly one table row for it, found {len(rows)}"
    listed = _README_RUN_TIME.search(rows[0].rsplit("|", 2)[-2])
    assert listed, f"{path.name}: README.md's table row has no '~N s' or '~N min' run time: {rows[0][-60:]!r}"
    assert _agrees(_minutes(listed), seconds), \
        (f"{path.name}: README.md's table says {_stated(_minutes(listed))}, "
         f"but the committed run took {seconds} s ({_allowed(_minutes(listed), seconds)})")


@pytest.mark.parametrize("text, seconds", [("**Run time**: about 20 s on", 20), ("**Run time**: about 2 minutes", 120),
                                           ("**Run time**: about 1–2 minutes", (60, 120))])
def test_run_time_parsing(text, seconds):
    low, high = _minutes(_INTRO_RUN_TIME.search(text))
    assert (low * 60, high * 60) == ((seconds, seconds) if isinstance(seconds, int) else seconds)
    assert not _agrees((low, high), 400)  # a stated time far from the measured one fails
