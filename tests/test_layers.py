"""The package's structure, checked: layers only import downward, no loops, no module over
600 lines, ONNX Runtime sessions made only in backends/, no private names across modules.

The layers, bottom to top (function-local imports count: they are arrows too):

    0  errors, text, dtypes, paths, log, env   (no deploylab imports)
    0.5 paths, mmcls_compat (raise deploylab's errors)
    1  data            2  onnx_tools      2.5 onnx_qdq        3  models
    4  backends
    5  compare, batching, rewrite, postprocess, graph_plot, plots
    6  export, custom_ops, bench
    7  profiling, quantize, support
    8  problems (the lessons' failure demonstrations)
    9  cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deploylab"
RANKS = {
    "deploylab": 0, "telemetry": -1, "errors": 0, "text": 0, "dtypes": 0, "paths": 0.5, "log": 0, "env": 0, "mmcls_compat": 0.5,
    "data": 1, "onnx_tools": 2, "onnx_qdq": 2.5, "models": 3, "backends": 4,
    "compare": 5, "batching": 5, "rewrite": 5, "postprocess": 5, "graph_plot": 5, "plots": 5,
    "export": 6, "custom_ops": 6, "bench": 6,
    "profiling": 7, "quantize": 7, "support": 7,
    "problems": 8, "tune": 8, "serve": 8, "cli": 9,
}
MAX_LINES = 600


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(path: Path):
    """(line, imported module, imported names) for every deploylab import in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "deploylab":
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "deploylab":
                    yield node.lineno, alias.name, []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "deploylab"


def test_every_top_level_module_has_a_layer():
    found = {_layer(name) for name, _ in _modules()}
    assert found <= set(RANKS), f"give these a layer in RANKS: {sorted(found - set(RANKS))}"


def test_imports_only_run_downward():
    upward = []
    for name, path in _modules():
        here = _layer(name)
        for line, module, names in _imports(path):
            there = _layer(module)
            if module == "deploylab" and names:  # "from deploylab import x": the package root or a module
                there = names[0] if names[0] in RANKS else "deploylab"
            if there == here:
                continue
            if RANKS[there] >= RANKS[here]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {here} (rank {RANKS[here]}) imports "
                              f"{module} (rank {RANKS[there]})")
    assert not upward, "\n".join(upward)


def test_no_import_loops_between_modules():
    graph: dict[str, set[str]] = {}
    known = {name for name, _ in _modules()}
    for name, path in _modules():
        targets = set()
        for _, module, names in _imports(path):
            for candidate in [f"{module}.{n}" for n in names] + [module]:
                if candidate in known and candidate != name and not name.startswith(candidate + "."):
                    targets.add(candidate)
                    break
        graph[name] = targets
    # Only loops between sibling modules count: a package __init__ re-exporting its modules is not one.
    loops, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if nxt.rsplit(".", 1)[0] == node or node.rsplit(".", 1)[0] == nxt:
                continue  # package <-> its own module
            if state.get(nxt) == "open":
                loops.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, "\n".join(loops)


@pytest.mark.parametrize("name, path", list(_modules()), ids=[n for n, _ in _modules()])
def test_no_module_over_600_lines(name, path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by role"


def test_onnx_runtime_sessions_are_made_only_in_backends():
    outside = [f"{p.relative_to(PACKAGE.parent)}:{i}" for name, p in _modules() if not name.startswith("deploylab.backends")
               for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "InferenceSession(" in line]
    assert not outside, outside


def test_no_private_name_is_imported_from_another_module():
    private = []
    for name, path in _modules():
        for line, module, names in _imports(path):
            same_package = module.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] or module.startswith(name + ".")
            for n in names:
                if n.startswith("_") and not n.startswith("__") and not same_package:
                    private.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module}.{n}")
    assert not private, "\n".join(private)
