"""Benchmark results and their files: one measurement, a skipped point, a whole sweep.

A :class:`SweepResults` carries the machine it was measured on and its settings; it is
written as JSON (everything, read back by :meth:`SweepResults.from_json`) and CSV (one
row per result, :data:`CSV_COLUMNS`), and read as an aligned table or as the sentence
:meth:`SweepResults.batching_conclusion` computes from its numbers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploylab.bench.timing import MIN_SAMPLES_P90, TimingStats, compare_timings
from deploylab.errors import DeployLabError
from deploylab.paths import read_json_object, replace_when_done, write_atomically

BENCH_MODES = ("sync", "async")
CSV_COLUMNS = ("runner", "backend", "batch", "mode", "concurrency", "n", "median_ms", "q1_ms", "q3_ms", "p90_ms",
               "p99_ms", "min_ms", "throughput_per_s", "per_item_ms", "threads", "spinning", "precision", "method")


def results_paths(out: str | Path) -> tuple[Path, Path]:
    """``r.json`` -> (``r.json``, ``r.csv``): where ``bench --out`` writes. Refused before anything runs:
    a name not ending in .json, and an existing CSV beside it that deploylab did not write (its first line
    is not deploylab's header), which the run would otherwise replace without being asked to."""
    json_path = Path(out)
    if json_path.suffix.lower() != ".json":
        raise DeployLabError(f"--out {str(json_path)!r} must end in .json (the CSV is written beside it, "
                             "same name with .csv)")
    csv_path = json_path.with_suffix(".csv")
    if csv_path.exists():
        try:
            with open(csv_path, encoding="utf-8", newline="") as handle:
                header = handle.readline().strip()
        except (OSError, UnicodeDecodeError):
            header = ""
        if header != ",".join(CSV_COLUMNS):
            raise DeployLabError(f"--out {str(json_path)!r} also writes {str(csv_path)!r}, which exists and was not "
                                 "written by deploylab bench; move it or choose another --out")
    return json_path, csv_path


def _stats_from_dict(data: dict) -> TimingStats:
    fields = TimingStats.__dataclass_fields__
    known = {k: v for k, v in data.items() if k in fields}
    # Files written before quartiles were recorded: the median stands in for them.
    known.setdefault("q1_ms", known.get("median_ms"))
    known.setdefault("q3_ms", known.get("median_ms"))
    return TimingStats(**known)


@dataclass
class BenchmarkResult:
    """One measurement: a runner at one batch size, called synchronously or concurrently.

    ``stats`` are per-call latencies for ``mode="sync"`` (one ``infer`` of ``batch_size``
    items per call). For ``mode="async"`` (``concurrency`` requests in flight) they are
    the wall times of timed rounds of many requests, ``stats.items_per_call`` items each.
    ``throughput_per_s`` is items per second: batch_size * 1000 / median_ms for sync, all
    items / total wall time of the rounds for async. ``threads`` is what the runner was
    asked for (None = the engine's default); ``spinning`` whether its idle worker threads
    spin (ONNX Runtime's ``allow_spinning``; None where the runner does not say);
    ``precision`` what it computes in (fp32 unless the runner reports otherwise, as
    OpenVINO's ``inference_precision`` does).
    """

    runner: str
    backend: str
    batch_size: int
    threads: int | None
    precision: str
    stats: TimingStats
    mode: str = "sync"
    concurrency: int = 1
    throughput_per_s: float | None = None
    spinning: bool | None = None

    def __post_init__(self):
        if self.mode not in BENCH_MODES:
            raise DeployLabError(f"unknown benchmark mode {self.mode!r}; use one of {', '.join(BENCH_MODES)}")
        if self.throughput_per_s is None:
            self.throughput_per_s = self.stats.throughput

    @property
    def per_item_ms(self) -> float:
        """Milliseconds per item at the measured throughput (median_ms / batch_size for sync)."""
        return 1000.0 / self.throughput_per_s if self.throughput_per_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "runner": self.runner, "backend": self.backend, "batch_size": self.batch_size,
            "threads": self.threads, "precision": self.precision, "mode": self.mode,
            "concurrency": self.concurrency, "throughput_per_s": self.throughput_per_s,
            "per_item_ms": self.per_item_ms, "spinning": self.spinning, "stats": self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResult:
        try:
            return cls(runner=data["runner"], backend=data["backend"], batch_size=int(data["batch_size"]),
                       threads=data.get("threads"), precision=data.get("precision", "fp32"),
                       stats=_stats_from_dict(data["stats"]), mode=data.get("mode", "sync"),
                       concurrency=int(data.get("concurrency", 1)), throughput_per_s=data.get("throughput_per_s"),
                       spinning=data.get("spinning"))
        except (KeyError, TypeError) as exc:
            raise DeployLabError(
                f"a benchmark result is missing or has a malformed field ({exc!r}): {data!r:.200}"
            ) from None

    def csv_row(self) -> dict:
        s = self.stats
        def blank(value):
            return "" if value is None else value

        return {"runner": self.runner, "backend": self.backend, "batch": self.batch_size, "mode": self.mode,
                "concurrency": self.concurrency, "n": s.repeats, "median_ms": s.median_ms, "q1_ms": s.q1_ms,
                "q3_ms": s.q3_ms, "p90_ms": blank(s.p90_ms), "p99_ms": blank(s.p99_ms), "min_ms": s.min_ms,
                "throughput_per_s": self.throughput_per_s, "per_item_ms": self.per_item_ms,
                "threads": blank(self.threads), "spinning": blank(self.spinning), "precision": self.precision,
                "method": s.method}

    def format(self) -> str:
        how = "sync" if self.mode == "sync" else f"async x{self.concurrency}"
        return (f"{self.runner} batch {self.batch_size} ({how}): median {self.stats.median_ms:.3f} ms "
                f"({self.stats.spread_text()}), {self.throughput_per_s:.1f} items/s, "
                f"{self.per_item_ms:.4f} ms/item")


@dataclass
class SkippedBatch:
    """A (runner, batch size) a sweep did not measure, and why."""

    runner: str
    backend: str
    batch_size: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- sweeps and their files
@dataclass
class SweepResults:
    """Results of a :func:`sweep`, with the machine they were measured on.

    ``environment`` is :func:`deploylab.env.collect_environment`'s dict, ``timestamp`` an
    ISO 8601 UTC time, ``settings`` the sweep's arguments, ``skipped`` every (runner,
    batch size) that was not measured with the reason.
    """

    results: list[BenchmarkResult]
    environment: dict
    timestamp: str
    skipped: list[SkippedBatch] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def runner_names(self) -> list[str]:
        """Runner names in the order they were first measured or skipped."""
        names: dict[str, None] = {}
        for item in [*self.results, *self.skipped]:
            names.setdefault(item.runner, None)
        return list(names)

    def for_runner(self, runner_name: str, mode: str | None = "sync") -> list[BenchmarkResult]:
        """Results of one runner (of one ``mode``; None for all), by batch size."""
        found = [r for r in self.results if r.runner == runner_name and (mode is None or r.mode == mode)]
        return sorted(found, key=lambda r: (r.mode != "sync", r.concurrency, r.batch_size))

    def best_batch(self, runner_name: str, mode: str = "sync") -> int:
        """The batch size with the highest throughput (items/s) for ``runner_name``."""
        found = self.for_runner(runner_name, mode)
        if not found:
            known = ", ".join(map(repr, self.runner_names)) or "none"
            raise DeployLabError(f"no {mode} results for runner {runner_name!r}; runners measured: {known}")
        return max(found, key=lambda r: r.throughput_per_s).batch_size

    def batching_conclusion(self, runner_name: str) -> str:
        """What batching gained for one runner, computed from this sweep's numbers.

        Compares the time per item at the best batch with the smallest batch measured
        (:func:`compare_timings` on per-item statistics, so a gain inside the noise is
        called that) and names the smallest batch already indistinguishable from the best.
        """
        found = self.for_runner(runner_name)
        best_size = self.best_batch(runner_name)
        by_size = {r.batch_size: r for r in found}
        base, best = by_size[min(by_size)], by_size[best_size]
        gain = best.throughput_per_s / base.throughput_per_s
        prefix = (f"{runner_name}: best batch {best_size}, {best.throughput_per_s:.1f} items/s, "
                  f"{gain:.2f}x batch {base.batch_size}'s {base.throughput_per_s:.1f} items/s")
        if best_size == base.batch_size or not compare_timings(best.stats.per_item(), base.stats.per_item()).measurable:
            return f"{prefix}: no measurable gain from batching on this machine"
        plateau = min(size for size, r in by_size.items()
                      if size == best_size or not compare_timings(r.stats.per_item(), best.stats.per_item()).measurable)
        if plateau == max(by_size):
            return f"{prefix}; throughput was still rising at the largest batch measured ({plateau})"
        return f"{prefix}; throughput is within the noise of the best from batch {plateau} on"

    # -- files
    def to_dict(self) -> dict:
        return {"timestamp": self.timestamp, "settings": self.settings, "environment": self.environment,
                "results": [r.to_dict() for r in self.results], "skipped": [s.to_dict() for s in self.skipped]}

    @classmethod
    def from_dict(cls, data: dict) -> SweepResults:
        if not isinstance(data, dict) or "results" not in data:
            raise DeployLabError("not a deploylab sweep: expected a JSON object with a 'results' list")
        try:
            skipped = [SkippedBatch(**s) for s in data.get("skipped", [])]
        except TypeError as exc:
            raise DeployLabError(f"malformed 'skipped' entry in sweep results: {exc}") from None
        return cls([BenchmarkResult.from_dict(r) for r in data["results"]], data.get("environment", {}),
                   data.get("timestamp", ""), skipped, data.get("settings", {}))

    def to_json(self, path: str | Path) -> Path:
        """Write everything (results, skipped batches, environment, settings) as JSON."""
        path = Path(path)
        write_atomically(path, json.dumps(self.to_dict(), indent=2, default=str).encode("utf-8"))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SweepResults:
        """Read a file written by :meth:`to_json`."""
        path = Path(path)
        data = read_json_object(path, "sweep results file", "give a file written by deploylab bench --out")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DeployLabError(f"sweep results file {str(path)!r} is not deploylab bench results "
                                 f"({type(exc).__name__}: {exc}); give a file written by deploylab bench --out") from None

    def to_csv(self, path: str | Path) -> Path:
        """One row per result with :data:`CSV_COLUMNS` (times in ms, throughput in items/s)."""
        path = Path(path)
        with replace_when_done(path) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for result in self.results:
                writer.writerow(result.csv_row())
        return path

    # -- reading
    def table(self) -> str:
        """An aligned text table under a line naming the machine: one line per result, ``*``
        on each runner's best batch, p90/p99 only where the sample count supports them, and
        a note when the runners' thread counts differ (the comparison is then not like for like)."""
        from deploylab.env import machine_line

        head = f"{machine_line(self.environment or {})}; measured {self.timestamp or 'at an unknown time'}"
        header = ("runner", "backend", "batch", "mode", "conc", "n", "median ms", "IQR ms", "p90 ms", "min ms",
                  "items/s", "ms/item", "threads", "spin", "precision", "best")
        best = {}
        for name in self.runner_names:
            if self.for_runner(name):
                best[name] = self.best_batch(name)
        rows = []
        order = {name: i for i, name in enumerate(self.runner_names)}
        for r in sorted(self.results, key=lambda r: (order[r.runner], r.mode != "sync", r.concurrency, r.batch_size)):
            s = r.stats
            rows.append((r.runner, r.backend, str(r.batch_size), r.mode, str(r.concurrency), str(s.repeats),
                         f"{s.median_ms:.3f}", f"{s.q1_ms:.2f}-{s.q3_ms:.2f}",
                         "-" if s.p90_ms is None else f"{s.p90_ms:.3f}", f"{s.min_ms:.3f}",
                         f"{r.throughput_per_s:.1f}", f"{r.per_item_ms:.4f}",
                         "default" if r.threads is None else str(r.threads),
                         "n/a" if r.spinning is None else ("on" if r.spinning else "off"), r.precision,
                         "*" if r.mode == "sync" and best.get(r.runner) == r.batch_size else ""))
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
        numeric = set(range(2, 12))

        def line(cells):
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines = [head, line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
        if not rows:
            lines.append("(no results)")
        for s in self.skipped:
            lines.append(f"skipped {s.runner} batch {s.batch_size}: {s.reason}")
        methods = sorted({r.stats.method for r in self.results if r.mode == "sync"})
        if methods:
            lines.append("sync rows: " + "; ".join(methods) + f"; p90 needs n >= {MIN_SAMPLES_P90}")
        if any(r.mode == "async" for r in self.results):
            lines.append("async rows: n, median, IQR, min are wall times of rounds of many requests, not latencies")
        threads = {r.runner: r.threads for r in self.results}
        if len(set(threads.values())) > 1 or None in threads.values():
            listed = ", ".join(f"{k}: {'default' if v is None else v}" for k, v in threads.items())
            lines.append(f"note: thread counts are not explicit and equal ({listed}); give every runner the same "
                         f"threads for a like-for-like comparison")
        return "\n".join(lines)
