"""What ``tune`` found: one row per candidate, the winner, the conclusion, the files it writes.

The table ranks measured candidates in budget first (fastest first), then those outside the
budget, then those the budget could not judge, then the ones not measured with the reason.
Every number in the conclusion comes from the final block run of the same search.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.tune.candidates import Candidate

REPORT_NAME = "tune.json"
PLOT_NAME = "pareto.png"
_MARKER = "deploylab tune"


@dataclass(eq=False)
class TuneRow:
    """One candidate (or a baseline) through the search: status, artifact, fidelity, timings."""

    candidate: Candidate
    status: str = ""  # measured, refused, not measured, not on this machine, baseline
    reason: str = ""
    built: object = None
    runner: object = None
    pool: object = None
    in_flight: int = 1
    precision_run: str | None = None
    steps: list[str] = field(default_factory=list)
    call: str = ""
    fidelity: object = None
    accuracy_drop: float | None = None
    budget_value: float | None = None
    in_budget: bool | None = None  # None: not judged (not measured, or a reference that cannot judge)
    judged_by: str = ""
    seconds_per_call: float = 0.0
    screen: object = None  # TimingStats of the screening run
    final: object = None  # TimingStats of the final run (finalists and baselines)
    objective: str = "latency"  # what "faster" means for this row's costs

    def __post_init__(self):
        if not self.status:
            self.status = self.candidate.status if self.candidate.status != "run" else "planned"
            self.reason = self.candidate.reason

    @property
    def label(self) -> str:
        c = self.candidate
        return f"pytorch eager fp32 x{c.threads}" if c.backend == "pytorch" else c.name

    def is_default_ort(self, cpus: int) -> bool:
        """The session a user gets by default: ONNX Runtime, the fp32 file, all cores, one request."""
        c = self.candidate
        return c.backend == "onnxruntime" and c.precision == "fp32" and c.threads == cpus and c.requests == 1

    def cost(self, stats, objective: str) -> float:
        """Lower is better: median ms per call (latency) or minus items/s (throughput)."""
        return stats.median_ms if objective == "latency" else -stats.throughput

    @property
    def screen_cost(self) -> float:
        return self.cost(self.screen, self.objective)

    def to_dict(self) -> dict:
        c = self.candidate
        data = {"name": self.label, "backend": c.backend, "precision": c.precision, "threads": c.threads,
                "recipe": c.recipe, "calibration": c.calibration, "hint": c.hint, "requests": c.requests,
                "in_flight": self.in_flight if self.status == "measured" else None,
                "status": self.status, "reason": self.reason, "precision_run": self.precision_run,
                "in_budget": self.in_budget, "budget_value": self.budget_value,
                "accuracy_drop_points": self.accuracy_drop, "judged_by": self.judged_by,
                "fidelity": self.fidelity.to_dict() if self.fidelity is not None else None,
                "size_mib": self.built.size_mib if self.built is not None else None,
                "build_seconds": self.built.seconds if self.built is not None else None,
                "artifact": self.built.path.name if self.built is not None else None,
                "screen": self.screen.to_dict() if self.screen is not None else None,
                "final": self.final.to_dict() if self.final is not None else None,
                "reproduce": {"steps": self.steps, "call": self.call} if self.steps or self.call else None}
        if c.command:
            data["command"] = c.command
        return data


@dataclass
class TuneReport:
    """The search's result. ``rows``: every candidate in plan order; ``baselines``: PyTorch eager;
    ``winner``: the chosen row (None when no candidate kept the budget)."""

    model: str
    budget: str
    objective: str
    batch: int
    environment: dict
    held_out: str
    held_out_warning: str | None
    reference: str
    reference_classes: int
    rows: list[TuneRow]
    baselines: list[TuneRow]
    finalists: list[TuneRow]
    winner: TuneRow | None
    judged: bool
    seconds: float
    time_budget: float
    calibration: str | None = None
    winner_file: Path | None = None  # where write() copied the winner's artifact

    # -- assembling
    @classmethod
    def assemble(cls, search, rows, baselines, finalists) -> TuneReport:
        import time

        measured = [r for r in rows if r.status == "measured"]
        classes = max((r.fidelity.reference_classes for r in measured if r.fidelity is not None), default=0)
        winner = choose_winner(finalists, search.objective)
        calibration = search._calibration[1] if search._calibration is not None else None
        return cls(search.model.spec_text, str(search.budget), search.objective, search.batch, search.env,
                   search.held_out.source, search.held_out.warning, search.model.reference.name, classes, rows,
                   baselines, finalists, winner, classes >= 2 or not search.budget.counts_classes,
                   time.perf_counter() - search.started, search.seconds,
                   calibration)

    # -- reading
    @property
    def measured(self) -> list[TuneRow]:
        return [r for r in self.rows if r.status == "measured"]

    def ranked(self) -> list[TuneRow]:
        """Measured rows (in budget, outside it, not judged; each fastest first), then the rest."""
        order = {True: 0, False: 1, None: 2}
        measured = sorted(self.measured, key=lambda r: (order[r.in_budget], r.screen_cost))
        return measured + [r for r in self.rows if r.status != "measured"]

    def _speed(self, stats) -> str:
        if stats is None:
            return ""
        if self.objective == "latency":
            return f"{_ms(stats.median_ms)} ({_ms(stats.q1_ms)}-{_ms(stats.q3_ms)})"
        return f"{stats.throughput:.4g}"

    def _final(self, stats) -> str:
        if stats is None:
            return ""
        return _ms(stats.median_ms) if self.objective == "latency" else f"{stats.throughput:.4g}"

    def table(self) -> str:
        """The ranked table (screening run for every measured row, the final run for finalists)."""
        unit = "ms (IQR)" if self.objective == "latency" else "items/s"
        metric = self.budget.split(">")[0].split("<")[0]
        width = max([len(r.label) for r in self.rows + self.baselines] + [9])
        head = (f"{'#':>2}  {'candidate':<{width}} {unit:>20} {'final':>8} {metric:>15} {'top-1':>7} {'top-5':>7} "
                f"{'KL':>8} {'max err':>8} {'MiB':>6} {'build s':>7}  verdict")
        lines = [head, "-" * len(head)]
        rank = 0
        for row in self.ranked():
            if row.status != "measured":
                why = row.reason or row.status
                if row.candidate.command:
                    why += f"; build it there with: {row.candidate.command}"
                lines.append(f"{'-':>2}  {row.label:<{width}} {row.status}: {why}")
                continue
            rank += 1
            f = row.fidelity
            verdict = {True: "in budget", False: "OUTSIDE budget", None: "cannot judge"}[row.in_budget]
            if row is self.winner:
                verdict += "  <- chosen"
            value = "n/a" if row.budget_value is None else f"{row.budget_value:.4g}"
            top5 = "" if f.top5_overlap is None else f"{f.top5_overlap:.2%}"
            kl = "" if f.mean_kl is None else f"{f.mean_kl:.2g}"
            lines.append(f"{rank:>2}  {row.label:<{width}} {self._speed(row.screen):>20} {self._final(row.final):>8} "
                         f"{value:>15} {f.top1_agreement:>7.2%} {top5:>7} {kl:>8} {f.max_abs_error:>8.3g} "
                         f"{row.built.size_mib:>6.1f} {row.built.seconds:>7.1f}  {verdict}")
        for row in self.baselines:
            lines.append(f"{'':>2}  {row.label:<{width}} {self._speed(row.screen):>20} {self._final(row.final):>8}  "
                         "(baseline, not a candidate)")
        return "\n".join(lines)

    def _ratio(self, other: TuneRow | None) -> str | None:
        """``"2.10x faster than X (8.66 ms)"`` (or slower, or no measurable difference) from the final
        run; None without one."""
        from deploylab.bench import compare_timings

        if other is None or other.final is None or self.winner is None or other is self.winner:
            return None
        w, o = self.winner.final, other.final
        if self.objective == "latency":
            ratio, unit, better, worse = o.median_ms / w.median_ms, f"{_ms(o.median_ms)} ms", "faster", "slower"
        else:
            ratio, unit = w.throughput / o.throughput, f"{o.throughput:.4g} items/s"
            better, worse = "the throughput of", "the throughput of"
        if not compare_timings(w, o).measurable:
            return f"no measurable difference from {other.label} ({unit}; {ratio:.2f}x, within the spread)"
        if self.objective == "throughput":
            return f"{ratio:.2f}x {better} {other.label} ({unit})"
        word = better if ratio >= 1 else worse
        return f"{max(ratio, 1 / ratio):.2f}x {word} than {other.label} ({unit})"

    def default_ort(self) -> TuneRow | None:
        cpus = int(self.environment.get("cpu_count") or 1)
        return next((r for r in self.measured + self.baselines if r.is_default_ort(cpus)), None)

    def conclusion(self) -> str:
        """One line: what won and by how much over ONNX Runtime fp32 and PyTorch eager (the final run)."""
        if self.winner is None:
            if self.measured and all(r.in_budget is None for r in self.measured):
                weights = ("give real weights (--checkpoint)" if not self.model.endswith(".onnx")
                           else "export it with real weights")
                return (f"nothing chosen: the fp32 reference gives {self.reference_classes} class(es) over "
                        f"{self.held_out.split(';')[0]}, so the budget {self.budget} cannot judge any candidate "
                        f"(seeded weights?); {weights}, bound kl or max-abs-error, or --allow-unjudged to choose by "
                        "speed alone")
            if not self.measured:
                return "nothing chosen: no candidate could be measured here (see the reasons in the table)"
            return (f"nothing chosen: no measured candidate keeps the budget {self.budget} (see the table); "
                    "loosen it, or add precisions")
        w = self.winner
        speed = (f"{_ms(w.final.median_ms)} ms per call at batch {self.batch}" if self.objective == "latency"
                 else f"{w.final.throughput:.4g} items/s at batch {self.batch}")
        eager = next((r for r in self.baselines if r.candidate.backend == "pytorch"), None)
        versus = [t for t in (self._ratio(self.default_ort()), self._ratio(eager)) if t]
        kept = ("budget not judged: chosen by speed alone (--allow-unjudged)" if w.in_budget is None else
                f"{self.budget.split('>')[0].split('<')[0]} {w.budget_value:.4g} keeps {self.budget}")
        text = f"{w.label} won: {speed}"
        if versus:
            text += ", " + " and ".join(versus)
        finalists = f"{len(self.finalists)} finalist{'s' if len(self.finalists) != 1 else ''}"
        return text + f"; {kept} (final block run of {finalists} and the baselines)"

    # -- files
    def to_dict(self) -> dict:
        from deploylab import __version__

        winner = self.winner
        return {
            "tool": _MARKER, "deploylab_version": __version__, "model": self.model, "budget": self.budget,
            "objective": self.objective, "batch": self.batch, "environment": self.environment,
            "held_out": self.held_out, "held_out_warning": self.held_out_warning, "reference": self.reference,
            "reference_classes": self.reference_classes, "judged": self.judged, "calibration": self.calibration,
            "seconds": round(self.seconds, 1), "time_budget_seconds": self.time_budget,
            "winner": winner.label if winner else None, "conclusion": self.conclusion(),
            "reproduce": ({"steps": winner.steps, "call": winner.call} if winner else None),
            "winner_file": _winner_name(winner) if winner else None,
            "finalists": [r.label for r in self.finalists],
            "candidates": [r.to_dict() for r in self.rows], "baselines": [r.to_dict() for r in self.baselines],
        }

    def write(self, out: str | Path, built=None) -> list[Path]:
        """Write the winner's artifact (``winner.onnx`` or ``winner.xml``/``.bin``), the Pareto plot and
        ``tune.json`` into ``out``; the report last, so a report always describes the files beside it."""
        from deploylab.paths import replace_when_done, write_atomically

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        previous = out / REPORT_NAME
        if is_tune_report(previous):
            old = json.loads(previous.read_text()).get("winner_file")
            previous.unlink()
            for name in ([old, str(Path(old).with_suffix(".bin"))] if old else []):
                (out / Path(name).name).unlink(missing_ok=True)
        written = []
        if self.winner is not None and built is not None:
            target = out / _winner_name(self.winner)
            sources = [(built.path, target)]
            if built.path.suffix == ".xml":
                sources.insert(0, (built.path.with_suffix(".bin"), target.with_suffix(".bin")))
            for source, dest in sources:
                with replace_when_done(dest, dest.suffix) as partial:
                    shutil.copyfile(source, partial)
                written.append(dest)
            self.winner_file = target
        if self.measured:
            self.plot_pareto(out / PLOT_NAME)
            written.append(out / PLOT_NAME)
        write_atomically(out / REPORT_NAME, json.dumps(self.to_dict(), indent=2, default=str).encode())
        written.append(out / REPORT_NAME)
        return written

    # -- the picture
    def pareto_front(self) -> list[TuneRow]:
        """Measured rows no other row beats on both speed and the budget's metric, fastest first."""
        rows = [r for r in self.measured if r.budget_value is not None]
        better = 1.0 if self.budget_op == ">=" else -1.0
        front, best = [], -float("inf")
        for row in sorted(rows, key=lambda r: r.screen_cost):
            score = better * row.budget_value
            if score > best:
                front.append(row)
                best = score
        return front

    @property
    def budget_op(self) -> str:
        return ">=" if ">=" in self.budget else "<="

    def plot_pareto(self, path: str | Path | None = None):
        """Fidelity (the budget's metric) against speed, every measured candidate; the Pareto front
        joined, the budget drawn, the winner starred."""
        from matplotlib.figure import Figure

        from deploylab.paths import save_figure

        rows = [r for r in self.measured if r.budget_value is not None]
        if not rows:
            raise DeployLabError("no measured candidate has a value of the budget's metric to plot")
        fig = Figure(figsize=(10, 4.6), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        x = (lambda r: r.screen.median_ms) if self.objective == "latency" else (lambda r: r.screen.throughput)
        colours = {True: "#2a9d5c", False: "#d1495b", None: "#8d99ae"}
        markers = {"onnxruntime": "o", "openvino": "s", "tensorrt": "^"}
        for row in rows:
            ax.scatter(x(row), row.budget_value, s=50, marker=markers.get(row.candidate.backend, "D"),
                       color=colours[row.in_budget], edgecolor="black", linewidth=0.4)
        front = self.pareto_front()
        ax.plot([x(r) for r in front], [r.budget_value for r in front], color="black", linewidth=0.8,
                linestyle="--", label="Pareto front")
        for row in front:
            ax.annotate(row.label, (x(row), row.budget_value), fontsize=7, xytext=(4, 4), textcoords="offset points")
        bound = float(self.budget.split("=")[-1])
        ax.axhline(bound, color="#d1495b", linewidth=0.8, label=f"budget {self.budget}")
        if self.winner is not None and self.winner.budget_value is not None:
            ax.scatter(x(self.winner), self.winner.budget_value, s=260, marker="*", color="gold", edgecolor="black",
                       zorder=5, label=f"chosen: {self.winner.label}")
        metric = self.budget.split(">")[0].split("<")[0]
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log")
        for axis in (ax.xaxis,):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(f"median latency at batch {self.batch} (ms, log; left is faster)" if self.objective == "latency"
                      else f"throughput at batch {self.batch} (items/s, log; right is faster)")
        ax.set_ylabel(f"{metric} vs the fp32 reference")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="best")
        ax.set_title(f"{self.model}: green in budget, red outside, grey not judged ({len(rows)} candidates)",
                     fontsize=10)
        if path is not None:
            save_figure(fig, path, dpi=110)
        return fig


def _ms(value: float) -> str:
    """Milliseconds to 3 significant figures, trailing zeros kept: 6.00, 18.2, 0.0406."""
    import math

    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}"


def choose_winner(finalists, objective: str) -> TuneRow | None:
    """The finalist with the best final-run timing (lowest median latency, or highest throughput);
    None without finalists. Only rows that keep the budget become finalists
    (:func:`deploylab.tune.search.pick_finalists`)."""
    if not finalists:
        return None
    return min(finalists, key=lambda r: r.cost(r.final, objective))


def _winner_name(row: TuneRow) -> str:
    return "winner.xml" if row.built is not None and row.built.path.suffix == ".xml" else "winner.onnx"


def is_tune_report(path: Path) -> bool:
    """True when ``path`` is a report a previous ``tune`` wrote."""
    try:
        return json.loads(Path(path).read_text()).get("tool") == _MARKER
    except (OSError, ValueError, AttributeError):
        return False
