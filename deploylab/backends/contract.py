"""The runner contract as checks a runner can fail, run over every runner on the machine.

Like scikit-learn's estimator checks: one suite, the same for every backend, so a new
backend (or a change to one) is held to what the benchmark, the comparisons and the command
line rely on. :func:`check_runner` runs a fresh runner through them and returns the failures
(an empty list: the runner keeps the contract).

What is checked, on a feed the caller gives (real inputs, so outputs mean something):
describe (named inputs/outputs, listed by ``describe()``), infer (one array per declared
output, of the declared dtype and fixed dims, the same twice), input checks (a missing, an
extra, a wrongly typed, a wrong-rank and a non-array input are each refused with an error
naming it), settings, clone (same settings, same outputs, its own engine) and many requests
(threads over clones, or the runner's own queue, give the serial outputs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import numpy as np

from deploylab.backends.base import Runner, RunnerSettings
from deploylab.dtypes import PRECISION_NAMES
from deploylab.errors import DeployLabError


def _same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _refuses(runner: Runner, feed: Mapping, *named: str) -> str | None:
    """None when ``runner.infer(feed)`` raises a DeployLabError naming every ``named``; else why not."""
    try:
        runner.infer(feed)
    except DeployLabError as exc:
        missing = [n for n in named if n not in str(exc)]
        return f"error does not name {', '.join(missing)}: {exc}" if missing else None
    except Exception as exc:  # noqa: BLE001 - an engine error leaking through is the failure
        return f"raised {type(exc).__name__} instead of a DeployLabError: {str(exc)[:120]}"
    return "accepted it"


def _check_outputs(runner: Runner, outputs, feed) -> list[str]:
    failures = []
    if not isinstance(outputs, dict) or list(outputs) != runner.output_names:
        return [f"infer returned {type(outputs).__name__} keys {list(outputs) if isinstance(outputs, dict) else '-'}, "
                f"not the declared outputs {runner.output_names}"]
    for spec in runner.outputs:
        value = outputs[spec.name]
        if not isinstance(value, np.ndarray):
            failures.append(f"output {spec.name!r} is a {type(value).__name__}, not a numpy array")
            continue
        if value.dtype != np.dtype(spec.dtype):
            failures.append(f"output {spec.name!r} is {value.dtype}, declared {np.dtype(spec.dtype)}")
        if value.ndim != len(spec.shape) or any(isinstance(d, int) and d != g for d, g in zip(spec.shape, value.shape)):
            failures.append(f"output {spec.name!r} has shape {value.shape}, declared {spec.shape_text()}")
    return failures


def _wrong_inputs(runner: Runner, feed: Mapping[str, np.ndarray]) -> list[tuple[str, dict, tuple[str, ...]]]:
    """(what, feed, words the error must name) for each kind of bad input."""
    first = runner.inputs[0]
    value = np.asarray(feed[first.name])
    others = {k: v for k, v in feed.items() if k != first.name}
    other_dtype = np.float64 if value.dtype != np.float64 else np.float32
    return [
        ("a missing input", others, (first.name,)),
        ("an extra input", {**feed, "not_an_input": value}, ("not_an_input",)),
        ("a wrong dtype", {**others, first.name: value.astype(other_dtype)}, (first.name, np.dtype(other_dtype).name)),
        ("a wrong rank", {**others, first.name: value[None]}, (first.name,)),
        ("a list, not an array", {**others, first.name: value.tolist()}, (first.name,)),
    ]


def check_runner(make: Callable[[], Runner], feed: Mapping[str, np.ndarray], threads: int = 2) -> list[str]:
    """Run a fresh runner from ``make()`` through the contract on ``feed``; returns the failures."""
    runner = make()
    failures: list[str] = []
    try:
        inputs, outputs = runner.inputs, runner.outputs
    except Exception as exc:  # noqa: BLE001
        return [f"describe failed: {type(exc).__name__}: {exc}"]
    if not inputs or not outputs:
        failures.append(f"describes {len(inputs)} inputs and {len(outputs)} outputs")
    names = [s.name for s in inputs + outputs]
    if len(set(names)) != len(names):
        failures.append(f"tensor names repeat: {names}")
    text = runner.describe()
    failures += [f"describe() does not list {n!r}" for n in names if n not in text]

    first = runner.infer(feed)
    failures += _check_outputs(runner, first, feed)
    if not failures and not _same(first, runner.infer(feed)):
        failures.append("two calls on the same feed gave different outputs")

    for what, bad, named in _wrong_inputs(runner, feed):
        reason = _refuses(runner, bad, *named)
        if reason:
            failures.append(f"{what}: {reason}")

    settings = runner.settings()
    if not isinstance(settings, RunnerSettings):
        failures.append(f"settings() returned {type(settings).__name__}, not RunnerSettings")
    elif settings.precision not in set(PRECISION_NAMES.values()):
        failures.append(f"settings().precision {settings.precision!r} is not one of {sorted(set(PRECISION_NAMES.values()))}")

    twin = runner.clone()
    if twin is None and not runner.thread_safe:
        failures.append("clone() gave None, and the runner is not thread_safe: many requests cannot be served")
    elif twin is not None:
        if twin is runner or type(twin) is not type(runner):
            failures.append(f"clone() gave {'the runner itself' if twin is runner else type(twin).__name__}")
        elif twin.settings() != settings:
            failures.append(f"clone() settings {twin.settings()} differ from {settings}")
        elif not _same(twin.infer(feed), first):
            failures.append("clone() gives other outputs on the same feed")

    failures += _check_many_requests(runner, twin, feed, first, threads)
    return failures


def _check_many_requests(runner: Runner, twin: Runner | None, feed, expected, threads: int) -> list[str]:
    if runner.queues_requests:
        got = runner.infer_queued([feed] * (threads + 1), threads)
        return [] if all(_same(g, expected) for g in got) else ["infer_queued gives other outputs than infer"]
    workers = [runner if runner.thread_safe else (runner.clone() or runner) for _ in range(threads)]
    results: list = [None] * threads

    def work(index: int) -> None:
        try:
            results[index] = workers[index].infer(feed)
        except Exception as exc:  # noqa: BLE001
            results[index] = exc

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    bad = [r for r in results if not isinstance(r, dict) or not _same(r, expected)]
    return [f"{len(bad)} of {threads} concurrent requests gave other outputs or failed: "
            f"{next((r for r in bad if isinstance(r, Exception)), '')}"] if bad else []
