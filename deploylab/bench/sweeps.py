"""Sweeps: every runner at every batch size, engines compared by the block method.

A sweep is planned, then measured. :func:`plan_sweep` checks each (runner, batch size)
against the runner's bounds once, and keeps a :class:`~deploylab.bench.run.BenchPoint`
for each it accepts and a :class:`~deploylab.bench.results.SkippedBatch` with the reason
for each it refuses; :func:`run_sweep` times the points, trusting the plan.
:func:`sweep` is both steps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deploylab.batching import check_batch_bounds
from deploylab.bench.checks import positive_int, positive_seconds
from deploylab.bench.concurrency import benchmark_point_concurrent
from deploylab.bench.results import SkippedBatch, SweepResults
from deploylab.bench.run import BenchPoint, default_repeats
from deploylab.bench.timing import DEFAULT_BLOCK_PAUSE_S, time_blocks
from deploylab.errors import DeployLabError

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
# Rounds per batch size in a sweep: every runner's block runs once per round, order rotating.
DEFAULT_SWEEP_ROUNDS = 3


@dataclass
class SweepPlan:
    """What a sweep will measure: ``points`` by batch size (runners in the order given),
    checked against each runner's bounds, and ``skipped``, each refused (runner, batch
    size) with the reason. ``runners`` maps names to the (activated) runners."""

    runners: dict[str, object]
    batch_sizes: list[int]
    seed: int
    points: dict[int, list[BenchPoint]]
    skipped: list[SkippedBatch]

    @property
    def point_count(self) -> int:
        """How many (runner, batch size) points will be measured."""
        return sum(len(group) for group in self.points.values())


def _named_runners(runners) -> dict:
    if isinstance(runners, Mapping):
        named = dict(runners)
    else:
        named = {}
        for runner in runners:
            if runner.name in named:
                raise DeployLabError(
                    f"two runners are named {runner.name!r}; pass a dict {{name: runner}} to tell them apart"
                )
            named[runner.name] = runner
    if not named:
        raise DeployLabError("no runners to benchmark")
    return named


def _batch_sizes(batch_sizes) -> list[int]:
    if isinstance(batch_sizes, (int, np.integer)):
        batch_sizes = (batch_sizes,)
    sizes = list(dict.fromkeys(positive_int(b, "each batch size") for b in batch_sizes))
    if not sizes:
        raise DeployLabError("batch_sizes is empty; give at least one batch size, e.g. (1, 8, 32)")
    return sizes


def plan_sweep(runners, batch_sizes=DEFAULT_BATCH_SIZES, *, seed: int = 0) -> SweepPlan:
    """Check every runner at every batch size once, before anything is timed.

    ``runners``: a dict ``{name: runner}`` (the names label the results) or a list of
    runners (labelled by ``runner.name``). Every runner is activated first: one that
    cannot load fails here, not as a skipped batch. A batch size a runner does not accept
    (a fixed batch dim, or outside its bounds) goes to ``skipped`` with the reason; each
    accepted one gets a seeded feed (``seed``), validated here, not inside a timing loop.
    """
    named = _named_runners(runners)
    sizes = _batch_sizes(batch_sizes)
    for runner in named.values():
        runner.activate()
    points: dict[int, list[BenchPoint]] = {size: [] for size in sizes}
    skipped = []
    for size in sizes:
        for name, runner in named.items():
            try:
                check_batch_bounds(runner, size)
            except DeployLabError as exc:
                skipped.append(SkippedBatch(name, runner.backend, size, str(exc)))
            else:
                points[size].append(BenchPoint.for_checked_size(runner, size, seed, name))
    return SweepPlan(named, sizes, seed, points, skipped)


@dataclass(frozen=True)
class _Timing:
    """A sweep's timing settings, checked."""

    warmup: int
    repeats: int
    seconds: float | None
    rounds: int
    pause_s: float
    levels: list[int]

    @property
    def block(self) -> int:
        """Timed calls per runner per round, so the rounds add up to at least ``repeats``."""
        return -(-self.repeats // self.rounds)


def _timing(warmup, repeats, seconds, rounds, pause_s, concurrency) -> _Timing:
    levels = list(dict.fromkeys(positive_int(c, "each concurrency") for c in concurrency))
    seconds = positive_seconds(seconds)
    rounds = positive_int(rounds, "rounds")
    return _Timing(warmup, default_repeats(repeats, seconds), seconds, rounds, pause_s, levels)


def run_sweep(
    plan: SweepPlan,
    *,
    warmup: int = 3,
    repeats: int | None = None,
    seconds: float | None = None,
    rounds: int = DEFAULT_SWEEP_ROUNDS,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
    concurrency=(),
    progress: bool = True,
) -> SweepResults:
    """Time every point of a :func:`plan_sweep` plan (settings as in :func:`sweep`)."""
    return _measure(plan, _timing(warmup, repeats, seconds, rounds, pause_s, concurrency), progress)


def _measure(plan: SweepPlan, how: _Timing, progress: bool) -> SweepResults:
    from datetime import datetime, timezone

    from tqdm.auto import tqdm

    from deploylab.env import collect_environment

    settings = {"batch_sizes": plan.batch_sizes, "warmup": how.warmup, "repeats": how.repeats,
                "seconds": how.seconds, "seed": plan.seed, "rounds": how.rounds, "pause_s": how.pause_s,
                "concurrency": how.levels}
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = []
    with tqdm(total=plan.point_count * (1 + len(how.levels)), desc="benchmark", unit="point",
              disable=not progress) as bar:
        for size, group in plan.points.items():
            if not group:
                continue
            bar.set_postfix_str(f"batch {size}")
            timings = time_blocks({point.name: point.call() for point in group}, rounds=how.rounds,
                                  block=how.block, warmup=how.warmup, pause_s=how.pause_s, items_per_call=size,
                                  min_block_seconds=(how.seconds or 0.0) / how.rounds)
            for point in group:
                stats = timings[point.name]
                stats.label = point.label
                results.append(point.result(stats))
            bar.update(len(group))
            for point in group:
                for level in how.levels:
                    bar.set_postfix_str(f"{point.name} batch {size} x{level}")
                    time.sleep(how.pause_s)
                    results.append(benchmark_point_concurrent(point, level, seconds=how.seconds))
                    bar.update()
    order = {name: i for i, name in enumerate(plan.runners)}
    results.sort(key=lambda r: (order[r.runner], r.mode != "sync", r.concurrency, r.batch_size))
    return SweepResults(results, collect_environment(), timestamp, list(plan.skipped), settings)


def sweep(
    runners,
    batch_sizes=DEFAULT_BATCH_SIZES,
    *,
    warmup: int = 3,
    repeats: int | None = None,
    seconds: float | None = None,
    rounds: int = DEFAULT_SWEEP_ROUNDS,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
    seed: int = 0,
    concurrency=(),
    progress: bool = True,
) -> SweepResults:
    """Benchmark every runner at every batch size, engines compared by the block method.

    ``runners``: a dict ``{name: runner}`` (the names label the results) or a list of
    runners (labelled by ``runner.name``). Batch sizes a runner does not accept (a fixed
    batch dim, or outside its bounds) are recorded in ``skipped`` with the reason
    (:func:`plan_sweep`, then :func:`run_sweep`).

    At each batch size the runners are timed with :func:`~deploylab.bench.timing.time_blocks`:
    ``rounds`` rounds, in each a pause of ``pause_s`` (spinning worker threads of the
    previous engine park), ``warmup`` untimed calls and a block of timed calls per runner,
    the order rotating. ``repeats`` timed calls per point in all (default 20, split over
    the rounds), or at least ``seconds`` per point. Each ``concurrency`` value c also
    measures :func:`~deploylab.bench.concurrency.benchmark_concurrent` with c requests,
    after a pause. Give every runner the same explicit threads: the table notes when they
    differ. ``progress`` shows a tqdm bar.
    """
    named, sizes = _named_runners(runners), _batch_sizes(batch_sizes)
    how = _timing(warmup, repeats, seconds, rounds, pause_s, concurrency)  # bad settings fail before loading
    return _measure(plan_sweep(named, sizes, seed=seed), how, progress)
