"""How much one engine's threads slow another's calls: the evidence behind the block method.

:func:`measure_contention` times an engine's call alone, call by call next to another
engine, and by the block method; :func:`spin_park_time` measures how long after a call a
spinning worker pool keeps taking the cores, which sets the pause between blocks
(:data:`deploylab.bench.timing.DEFAULT_BLOCK_PAUSE_S`) of :func:`deploylab.bench.timing.time_blocks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from deploylab.bench.checks import positive_int
from deploylab.bench.timing import DEFAULT_BLOCK_PAUSE_S, TimingStats, compare_timings, rotating_rounds
from deploylab.errors import DeployLabError


@dataclass
class Contention:
    """One engine's call timed alone, call by call next to other engines, and by the block method.

    ``stats`` maps each condition (``"alone"``, ``"interleaved with NAME"``, ``"blocks after NAME"``)
    to the victim's timings; medians are medians of the per-round medians (the conditions
    alternate round by round, so slow drift in machine load hits them all alike).
    """

    stats: dict[str, TimingStats]
    pause_s: float

    def slowdown(self, condition: str) -> float:
        return self.stats[condition].median_ms / self.stats["alone"].median_ms

    def format(self) -> str:
        width = max(len(k) for k in self.stats)
        return "\n".join(f"  {name:<{width}}  median {s.median_ms:7.2f} ms  ({s.spread_text()})  "
                         f"{self.slowdown(name):4.2f}x alone" for name, s in self.stats.items())

    def verdict(self, condition: str) -> str:
        """``"interleaved with X: 2.29x the time alone"``, or no measurable difference from alone."""
        found = compare_timings(self.stats[condition], self.stats["alone"])
        if not found.measurable:
            return (f"{condition}: no measurable difference from alone ({self.slowdown(condition):.2f}x, within "
                    f"the spread)")
        return f"{condition}: {self.slowdown(condition):.2f}x the time alone"


def measure_contention(
    victim: Callable[[], object],
    neighbours: Mapping[str, Callable[[], object]],
    rounds: int = 4,
    calls: int = 10,
    warmup: int = 2,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
) -> Contention:
    """Time ``victim`` alone, interleaved call by call with each neighbour, and in blocks after each.

    Every round measures every condition once (``calls`` timed victim calls each, after a
    pause of ``pause_s``), in an order that rotates from round to round. "Interleaved"
    alternates one neighbour call and one timed victim call, the way a call-by-call
    benchmark of two engines does; "blocks" runs ``calls`` neighbour calls, pauses, then
    times the victim's block: the method of :func:`time_blocks`.
    """
    rounds, calls = positive_int(rounds, "rounds"), positive_int(calls, "calls")
    if not neighbours:
        raise DeployLabError("measure_contention needs at least one neighbour")

    def timed_victim(before_each=None) -> list[int]:
        out = []
        for _ in range(calls):
            if before_each is not None:
                before_each()
            t0 = time.perf_counter_ns()
            victim()
            out.append(time.perf_counter_ns() - t0)
        return out

    def alone() -> list[int]:
        for _ in range(warmup):
            victim()
        return timed_victim()

    def interleaved(neighbour) -> Callable[[], list[int]]:
        def run() -> list[int]:
            for _ in range(warmup):
                neighbour()
                victim()
            return timed_victim(before_each=neighbour)
        return run

    def blocks(neighbour) -> Callable[[], list[int]]:
        def run() -> list[int]:
            for _ in range(calls):
                neighbour()
            time.sleep(pause_s)
            for _ in range(warmup):
                victim()
            return timed_victim()
        return run

    conditions: dict[str, Callable[[], list[int]]] = {"alone": alone}
    for name, fn in neighbours.items():
        conditions[f"interleaved with {name}"] = interleaved(fn)
    for name, fn in neighbours.items():
        conditions[f"blocks after {name}"] = blocks(fn)
    method = f"{rounds} rounds of {calls} calls per condition, rotating order, {pause_s:g} s pauses"
    return Contention(rotating_rounds(conditions, rounds, pause_s, method), pause_s)


@dataclass
class SpinParkTime:
    """How much a spinning neighbour slows the next call, by pause between them.

    ``with_ms[i]``: the victim's median right after the neighbour's call and a pause of
    ``pauses_ms[i]``; ``alone_ms[i]``: the same with no neighbour call (so the victim's own
    threads have been idle about as long). ``park_ms`` is the shortest pause from which
    on the slowdown stays under ``threshold`` (None if none did).
    """

    pauses_ms: list[float]
    with_ms: list[float]
    alone_ms: list[float]
    threshold: float
    samples_per_pause: int

    @property
    def slowdown(self) -> list[float]:
        return [w / a if a > 0 else float("inf") for w, a in zip(self.with_ms, self.alone_ms)]

    @property
    def park_ms(self) -> float | None:
        ratios = self.slowdown
        for i, pause in enumerate(self.pauses_ms):
            if all(x < self.threshold for x in ratios[i:]):
                return pause
        return None

    def format(self) -> str:
        lines = [f"pause after the neighbour   victim alone   after the neighbour   slowdown   "
                 f"(medians, n={self.samples_per_pause} each)"]
        lines += [f"  {pause:8.1f} ms               {alone:8.2f} ms     {with_:8.2f} ms          {x:5.2f}x"
                  for pause, alone, with_, x in zip(self.pauses_ms, self.alone_ms, self.with_ms, self.slowdown)]
        park = self.park_ms
        lines.append(f"the neighbour's threads stop slowing the next call after a pause of {park:g} ms "
                     f"(slowdown < {self.threshold:.2f}x from there on)" if park is not None
                     else f"no pause tried brought the slowdown under {self.threshold:.2f}x")
        return "\n".join(lines)


def spin_park_time(
    neighbour: Callable[[], object],
    victim: Callable[[], object],
    pauses_ms=(0, 1, 2, 5, 10, 50, 200),
    samples: int = 15,
    threshold: float = 1.1,
) -> SpinParkTime:
    """Measure how long after a call an engine's threads keep stealing cores from the next one.

    For each pause, ``samples`` times: call ``neighbour``, sleep the pause, time one call
    of ``victim``; then the same without the neighbour's call. Use a victim that needs all
    cores (e.g. PyTorch eager with ``threads`` = the core count) and a neighbour whose pool
    spins (ONNX Runtime's default). The pause :func:`time_blocks` uses must exceed ``park_ms``.
    """
    samples = positive_int(samples, "samples")
    pauses = [float(p) for p in pauses_ms]
    if not pauses or min(pauses) < 0:
        raise DeployLabError(f"pauses_ms must be non-negative milliseconds, got {pauses_ms!r}")
    for _ in range(3):
        neighbour()
        victim()

    def victim_after(pause_ms: float, with_neighbour: bool) -> float:
        timed = []
        for _ in range(samples):
            if with_neighbour:
                neighbour()
            time.sleep(pause_ms / 1000.0)
            t0 = time.perf_counter_ns()
            victim()
            timed.append(time.perf_counter_ns() - t0)
        return float(np.median(timed)) / 1e6

    with_ms, alone_ms = [], []
    for pause in pauses:
        with_ms.append(victim_after(pause, with_neighbour=True))
        time.sleep(DEFAULT_BLOCK_PAUSE_S)
        alone_ms.append(victim_after(pause, with_neighbour=False))
    return SpinParkTime(pauses, with_ms, alone_ms, threshold, samples)
