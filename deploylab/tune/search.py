"""``tune``: build every candidate, judge it on held-out inputs, time them together, choose.

1. The model (a spec, exported here, or an ONNX file) gets its batch dim fixed at the tuned
   batch size; its fp32 outputs on held-out inputs (:mod:`.heldout`) are the reference
   (PyTorch eager when deploylab has the model, else ONNX Runtime on the file).
2. Candidates (:func:`~deploylab.tune.candidates.plan_candidates`) are built cheapest first,
   each artifact once, each judged against the reference: the budget's metric, top-1
   agreement, top-5 overlap, KL and max abs error. A candidate an engine refuses keeps the
   engine's reason. When the time budget would run out, the rest are reported as not measured.
3. Every measured candidate, PyTorch eager and the default ONNX Runtime fp32 session are timed
   by the block method (:func:`deploylab.bench.time_blocks`: engine by engine, pauses between,
   the order rotating, equal explicit threads). The in-budget candidates close to the best are
   timed again in a longer final run, and the winner is chosen from that run: the choice is
   not the luck of one short block.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.tune.artifacts import (
    Built,
    build_artifact,
    fix_batch,
    make_candidate_runner,
    refusal_after_compile,
    runner_call,
)
from deploylab.tune.budget import Budget, parse_budget
from deploylab.tune.candidates import OBJECTIVES, PRECISIONS, Candidate, plan_candidates
from deploylab.tune.report import TuneReport, TuneRow

DEFAULT_BUDGET = "top1-agreement>=0.99"
DEFAULT_TIME_BUDGET_S = 180.0
#: The final run re-times the in-budget candidates within this factor of the best screened one.
FINAL_WITHIN = 1.15
FINAL_MAX = 4
# Screening and final block settings per objective: (rounds, block, warmup). A throughput call
# is a whole batch (or a round of requests in flight), so it takes fewer, longer calls; the
# screening only prunes, the final run decides.
_SCREEN = {"latency": (3, 10, 2), "throughput": (2, 2, 1)}
_FINAL = {"latency": (5, 20, 3), "throughput": (4, 3, 1)}
_PAUSE_S = 0.2
_MIN_BLOCK_S = {False: 0.1, True: 0.25}  # screening, final


def parse_time_budget(text) -> float:
    """``"180s"``, ``"3m"``, ``"90"`` (seconds) -> seconds, from 1 s to 24 h."""
    raw = str(text).strip().lower()
    scale = 60.0 if raw.endswith("m") else 1.0
    number = raw[:-1] if raw[-1:] in ("s", "m") else raw
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 1 <= seconds <= 86400):
        raise DeployLabError(f"--time-budget {text!r} must be a duration from 1s to 24h, e.g. 180s or 3m")
    return seconds


def _positive(value, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
        raise DeployLabError(f"{name} must be an integer from 1 to {high}, got {value!r}")
    return int(value)


def _check_metric_defined(budget: Budget, outputs) -> None:
    """Refuse a budget whose metric the model's outputs do not define (top-5 of 5 classes or fewer)."""
    columns = int(np.prod(outputs.shape[1:])) if outputs.ndim > 1 else 1
    needs = {"top5-overlap": 6, "kl": 2}.get(budget.metric, 0)
    if columns < needs:
        raise DeployLabError(f"--budget {budget}: the model's output has {columns} value(s) per input, and "
                             f"{budget.metric} needs at least {needs}; bound top1-agreement or max-abs-error instead")


def _check_out(out: Path) -> None:
    from deploylab.tune.report import REPORT_NAME, is_tune_report

    if out.exists() and not out.is_dir():
        raise DeployLabError(f"--out {str(out)!r} is a file; give a folder (it is created if missing)")
    if out.is_dir() and any(out.iterdir()) and not is_tune_report(out / REPORT_NAME):
        raise DeployLabError(f"--out {str(out)!r} is a folder with other files in it; give an empty or new folder "
                             f"(or one a previous tune wrote: it holds {REPORT_NAME})")
    try:  # made now, so an unwritable place fails before the search, not after it
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".deploylab-tune-{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DeployLabError(f"--out {str(out)!r} cannot be written ({exc.strerror or exc}); choose a folder you "
                             "can write to") from None


class _Model:
    """The tuned ONNX file, the reference runner, the eager runner (None for an ONNX file)."""

    def __init__(self, model, checkpoint, batch: int, work: Path, threads: int):
        from deploylab.backends.onnxruntime import OnnxRuntimeRunner

        given = Path(str(model))
        self.bundle = None
        if given.suffix.lower() == ".onnx":
            if checkpoint is not None:
                raise DeployLabError("--checkpoint applies to a model spec; an ONNX file carries its weights")
            if not given.is_file():
                raise DeployLabError(f"model file {str(given)!r} does not exist")
            self.path = work / f"{given.stem}_b{batch}.onnx"
            self.spec_text = str(given)
            self.export_step = [f"python -c \"from deploylab.tune.artifacts import fix_batch; "
                                f"fix_batch('{given.name}', '{self.path.name}', {batch})\""
                                f"  # the batch dim fixed at {batch}"]
            if not fix_batch(given, self.path, batch):
                self.path, self.export_step = given, []
        else:
            self._export(str(model), checkpoint, batch, work)
        self.reference = (self.eager(threads) if self.bundle is not None else
                          OnnxRuntimeRunner(self.path, intra_op_threads=threads, name="onnxruntime fp32 (reference)"))

    def _export(self, spec, checkpoint, batch, work):
        import warnings

        from deploylab.export import export_bundle
        from deploylab.models import resolve_model
        from deploylab.text import shape_text

        bundle = resolve_model(spec, checkpoint=checkpoint)
        if batch != bundle.input_shape[0]:
            shape = (batch, *bundle.input_shape[1:])
            bundle = resolve_model(spec, checkpoint=checkpoint, input_shape=shape)
        self.bundle = bundle
        self.path = work / f"{bundle.name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notes; the graph is checked below
            export_bundle(bundle, self.path, exporter="torchscript", opset=17)
        self.spec_text = spec
        flags = f" --checkpoint {checkpoint}" if checkpoint is not None else ""
        self.export_step = [f"deploylab export {spec} -o {self.path.name} --exporter torchscript --opset 17 "
                            f"--input-shape {shape_text(bundle.input_shape)}{flags}"]

    def eager(self, threads: int):
        from deploylab.backends.torch_eager import TorchEagerRunner

        return TorchEagerRunner(self.bundle, name=f"pytorch eager fp32 x{threads}", threads=threads)


def _environment():
    from deploylab.env import collect_environment

    env = collect_environment()
    tensorrt_here = bool(env.get("gpu")) and bool(env.get("packages", {}).get("tensorrt"))
    return env, tensorrt_here


def tune(
    model,
    *,
    budget: str | Budget = DEFAULT_BUDGET,
    objective: str = "latency",
    batch: int = 1,
    backends=("onnxruntime", "openvino", "tensorrt"),
    precisions=PRECISIONS,
    time_budget: float | str = DEFAULT_TIME_BUDGET_S,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    allow_unjudged: bool = False,
    views: int | None = None,
    progress: bool = True,
    work_dir: str | Path | None = None,
    calib_data: str | Path | None = None,
) -> TuneReport:
    """The fastest deployment of ``model`` on this machine that keeps ``budget``; see the module docstring.

    ``model``: a model spec (``efficientnet_lite0``, ``resnet18``, ...) or an ONNX file.
    ``budget``: ``METRIC>=N`` / ``METRIC<=N`` (:func:`~deploylab.tune.budget.parse_budget`).
    ``objective``: ``latency`` (median ms per call at ``batch``) or ``throughput`` (items/s,
    with requests in flight where the engine can use them). ``backends``/``precisions``:
    the names to combine (lists, or comma-separated text); ``time_budget``: seconds (or
    ``"3m"``) for the whole search (the first candidate and the final run always run);
    ``out``: a folder for the report (``tune.json``), the Pareto plot and the winner's
    artifact. ``allow_unjudged``: when the reference gives one class for every held-out
    input (seeded weights), choose by speed anyway and say so (otherwise nothing is chosen).
    ``views``: held-out photo views (default 320). ``work_dir``: build every candidate's
    artifact there and keep them (default: a temporary folder, removed at the end; the
    winner is copied to ``out``). ``calib_data``: int8 calibration inputs (an .npy/.npz of
    preprocessed samples or an image folder; default: the built-in set for the input shape).
    Returns the :class:`TuneReport`.
    """
    started = time.perf_counter()
    budget = budget if isinstance(budget, Budget) else parse_budget(budget)
    if objective not in OBJECTIVES:
        raise DeployLabError(f"--objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    batch = _positive(batch, "--batch", 1024)
    if views is not None:
        _positive(views, "--views", 100_000)
    seconds = parse_time_budget(time_budget)  # a number of seconds, or text such as "3m"
    backends = backends.split(",") if isinstance(backends, str) else list(backends)
    precisions = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    env, tensorrt_here = _environment()
    cpus = int(env.get("cpu_count") or os.cpu_count() or 1)
    from deploylab.env import cpu_supports_bf16

    def plan(onnx_name: str):
        return plan_candidates(backends, precisions, cpus=cpus, bf16_cpu=cpu_supports_bf16(env),
                               tensorrt_here=tensorrt_here, model=onnx_name, objective=objective)

    plan("model.onnx")  # bad --backends or --precisions fail before anything loads
    out = Path(out) if out is not None else None
    made_out = out is not None and not out.exists()
    if out is not None:
        _check_out(out)
    with contextlib.ExitStack() as stack:
        if made_out:  # a search that fails leaves no empty folder of its own behind
            stack.callback(lambda: out.is_dir() and not any(out.iterdir()) and out.rmdir())
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deploylab-tune-")))
        else:
            work = Path(work_dir)
            if work.exists() and not work.is_dir():
                raise DeployLabError(f"work_dir {str(work)!r} is a file; give a folder")
            work.mkdir(parents=True, exist_ok=True)
        search = _Search(model, checkpoint, budget, objective, batch, plan, seconds, cpus, env, work,
                         allow_unjudged, views, progress, started, calib_data)
        report = search.run()
        if out is not None:
            report.write(out, search.winner_built)
    return report


class _Search:
    def __init__(self, model, checkpoint, budget, objective, batch, plan, seconds, cpus, env, work,
                 allow_unjudged, views, progress, started, calib_data=None):
        self.budget, self.objective, self.batch = budget, objective, batch
        self.seconds, self.cpus, self.env, self.work = seconds, cpus, env, work
        self.allow_unjudged, self.progress, self.started = allow_unjudged, progress, started
        self.calib_data = calib_data
        self.model = _Model(model, checkpoint, batch, work, cpus)
        self.plan = plan(self.model.path.name)  # the build commands name the file tune exported
        from deploylab.batching import predict
        from deploylab.tune.heldout import held_out_inputs

        self.held_out = held_out_inputs(self.model.path, batch, views)
        if budget.metric == "accuracy-drop" and self.held_out.accepted is None:
            raise DeployLabError(f"--budget {budget} needs labelled held-out inputs, and this model's are "
                                 f"{self.held_out.source} without labels; bound top1-agreement, kl or max-abs-error "
                                 "instead")
        self.reference_outputs = predict(self.model.reference.activate(), self.held_out.inputs, 32 if
                                         self.model.bundle is not None else batch)
        _check_metric_defined(budget, self.reference_outputs)
        self.built: dict[tuple, Built | str] = {}
        self.fidelity: dict[tuple, tuple] = {}  # numerics key -> (outputs, seconds per call)
        self.fidelity_owner: dict[tuple, str] = {}  # numerics key -> the candidate whose outputs those are
        self._calibration = None
        self.winner_built: Built | None = None

    # -- phase 1: build and judge
    def calibration(self):
        """(samples, where they come from), made once; a failure is kept and raised for every int8 build."""
        if self._calibration is None:
            from deploylab.quantize.dispatch import calibration_for_model

            try:
                self._calibration = calibration_for_model(self.model.path, self.calib_data)
            except DeployLabError as exc:
                self._calibration = exc
        if isinstance(self._calibration, DeployLabError):
            raise self._calibration
        return self._calibration

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self) -> TuneReport:
        from tqdm.auto import tqdm

        rows = [TuneRow(c, objective=self.objective) for c in self.plan]
        runnable = [r for r in rows if r.candidate.status == "run"]
        # Within one artifact's numerics, the all-cores runner goes first: it judges the held-out
        # inputs fastest, and its siblings only check that they give the same outputs.
        first_seen = {}
        for i, row in enumerate(runnable):
            first_seen.setdefault(row.candidate.numerics_key, i)
        runnable.sort(key=lambda r: (first_seen[r.candidate.numerics_key], -r.candidate.threads))
        build_times, judge_times = [1.0], [0.0]
        with tqdm(total=len(runnable), desc="tune: build and judge", unit="candidate",
                  disable=not self.progress) as bar:
            for row in runnable:
                bar.set_postfix_str(row.candidate.name)
                key = row.candidate.build_key
                new_build = key not in self.built
                new_numerics = row.candidate.numerics_key not in self.fidelity
                reserve = self._timing_estimate([r for r in rows if r.status == "measured"])
                # the next step: its build (as long as the longest so far) and its judging (a full
                # pass over the held-out inputs, or the siblings' short check)
                judge = sum(judge_times[1:]) / max(1, len(judge_times) - 1)
                step = (max(build_times) if new_build else 0.0) + (judge if new_numerics else 0.5)
                if row is not runnable[0] and self.elapsed() + reserve + step > self.seconds:
                    what = "built" if new_build else "judged"
                    row.status, row.reason = "not measured", f"time budget spent before it was {what}"
                    bar.update()
                    continue
                t0 = time.perf_counter()
                self._build_and_judge(row)
                if new_build and isinstance(self.built.get(key), Built):
                    build_times.append(self.built[key].seconds)
                if new_numerics and row.status == "measured":
                    judge_times.append(time.perf_counter() - t0 - (self.built[key].seconds if new_build else 0.0))
                bar.update()
        measured = [r for r in rows if r.status == "measured"]
        extras = self._baselines(measured)
        self._time(measured, extras, final=False)
        finalists = pick_finalists(measured, self.allow_unjudged)
        if finalists:
            # ONNX Runtime's default session is re-timed for the conclusion anyway: when it keeps the
            # budget it competes in the final run like any finalist.
            default = [r for r in measured if r.is_default_ort(self.cpus)]
            finalists += [r for r in default if r not in finalists and pick_finalists([r], self.allow_unjudged)]
            self._time(list(dict.fromkeys(finalists + default + list(extras))), [], final=True)
        report = TuneReport.assemble(self, rows, extras, finalists)
        self.winner_built = self.built.get(report.winner.candidate.build_key) if report.winner else None
        for row in rows + extras:
            if row.runner is not None:
                row.runner.deactivate()
        return report

    def _build_and_judge(self, row: TuneRow) -> None:
        candidate = row.candidate
        key = candidate.build_key
        if key not in self.built:
            try:
                self.built[key] = build_artifact(candidate, self.model.path, self.work, self.calibration)
            except DeployLabError as exc:
                self.built[key] = str(exc)
        built = self.built[key]
        if isinstance(built, str):
            row.status, row.reason = "refused", built
            return
        row.built = built
        from deploylab.log import info_held

        try:
            with info_held():  # "asked for f16, runs bf16": the table gives it as the refusal's reason
                runner = make_candidate_runner(candidate, built).activate()
        except DeployLabError as exc:
            row.status, row.reason = "refused", str(exc)
            return
        refusal = refusal_after_compile(candidate, runner)
        if refusal:
            runner.deactivate()
            row.status, row.reason = "refused", refusal
            return
        row.runner = runner
        # ONNX Runtime's settings name the session's float precision; an int8 file runs int8 kernels
        row.precision_run = runner.settings().precision if candidate.backend == "openvino" else candidate.precision
        if self.objective == "throughput" and candidate.requests != 1:
            row.in_flight = candidate.requests or runner.optimal_requests
        row.steps = self.model.export_step + built.steps
        row.call = runner_call(candidate, built, self.batch, row.in_flight)
        self._judge(row)
        row.status = "measured"

    def _judge(self, row: TuneRow) -> None:
        from deploylab.batching import predict
        from deploylab.quantize.evaluate import fidelity
        from deploylab.tune.heldout import accuracy

        key = row.candidate.numerics_key
        inputs = self.held_out.inputs
        if key in self.fidelity:
            outputs, per_call = self.fidelity[key]
            few = min(len(inputs), max(self.batch, (32 // self.batch) * self.batch))
            mine = predict(row.runner, inputs[:few], self.batch)
            scale = float(np.abs(outputs[:few]).max()) or 1.0
            if np.abs(mine - outputs[:few]).max() <= 1e-5 * scale:
                row.judged_by = "the same outputs as " + self.fidelity_owner[key]
            else:
                outputs, per_call = self._predict(row, inputs)
        else:
            outputs, per_call = self._predict(row, inputs)
            self.fidelity[key] = (outputs, per_call)
            self.fidelity_owner[key] = row.candidate.name
        row.seconds_per_call = per_call
        row.fidelity = fidelity(self.reference_outputs, outputs)
        if self.held_out.accepted is not None:
            row.accuracy_drop = 100.0 * (accuracy(self.reference_outputs, self.held_out.accepted)
                                         - accuracy(outputs, self.held_out.accepted))
        # A constant classifier agrees with any other: class-based budgets cannot judge it. KL and
        # the max abs error compare values, which a constant reference still pins down.
        judged = row.fidelity.reference_classes >= 2 or not self.budget.counts_classes
        row.budget_value = self.budget.value_in(row.fidelity, row.accuracy_drop)
        row.in_budget = self.budget.met(row.budget_value) if judged else None

    def _predict(self, row, inputs):
        from deploylab.batching import predict

        t0 = time.perf_counter()
        outputs = predict(row.runner, inputs, self.batch)
        return outputs, (time.perf_counter() - t0) / max(1, len(inputs) // self.batch)

    def _timing_estimate(self, rows) -> float:
        """Seconds the screening of ``rows`` and the final run will take, from their judging pass's
        seconds per call (a round of requests in flight takes about two single-thread calls)."""
        if not rows:
            return 0.0
        rounds, block, warmup = _SCREEN[self.objective]
        final_rounds, final_block, final_warmup = _FINAL[self.objective]
        per = [r.seconds_per_call * (2 if r.candidate.requests != 1 and self.objective == "throughput" else 1)
               for r in rows]
        screen = sum(rounds * (_PAUSE_S + max((block + warmup) * p, _MIN_BLOCK_S[False])) for p in per)
        # the finalists are the fastest; the two baselines (eager, ORT fp32) are about as slow as the median
        typical = sorted(per)[len(per) // 2]
        final_block_s = [max((final_block + final_warmup) * p, _MIN_BLOCK_S[True])
                         for p in [min(per)] * FINAL_MAX + [typical] * 2]
        final = final_rounds * (sum(final_block_s) + (FINAL_MAX + 2) * _PAUSE_S)
        return screen + final

    # -- phase 2: time
    def _baselines(self, measured) -> list[TuneRow]:
        """What the conclusion compares with, timed with the candidates: PyTorch eager (when deploylab
        has the model) and ONNX Runtime's default fp32 session (when it is not a measured candidate)."""
        from deploylab.backends.onnxruntime import OnnxRuntimeRunner

        slowest = max((r.seconds_per_call for r in measured), default=0.01)
        rows = []
        if self.model.bundle is not None:
            rows.append(TuneRow(Candidate("pytorch", "fp32", self.cpus)))
            rows[-1].runner = self.model.eager(self.cpus).activate()
        if not any(r.is_default_ort(self.cpus) for r in measured):
            rows.append(TuneRow(Candidate("onnxruntime", "fp32", self.cpus)))
            rows[-1].runner = OnnxRuntimeRunner(self.model.path, intra_op_threads=self.cpus).activate()
        for row in rows:
            row.status, row.objective, row.seconds_per_call = "baseline", self.objective, slowest
        return rows

    def _call(self, row: TuneRow):
        from deploylab.batching import batch_feed
        from deploylab.bench import RequestPool

        feed = batch_feed(row.runner, self.batch, 0)
        row.runner.check(feed)
        requests = row.candidate.requests
        if self.objective == "latency" or requests == 1:
            return (lambda: row.runner.infer(feed)), self.batch
        in_flight = row.in_flight
        if row.pool is None:
            row.pool = RequestPool(row.runner, in_flight)
        feeds = [feed] * (2 * in_flight)
        return (lambda: row.pool.run(feeds)), self.batch * len(feeds)

    def _time(self, rows, extras, final: bool) -> None:
        from deploylab.bench import time_blocks

        everyone = list(rows) + list(extras)
        if not everyone:
            return
        rounds, block, warmup = (_FINAL if final else _SCREEN)[self.objective]
        calls, items = {}, {}
        for row in everyone:
            calls[row.label], items[row.label] = self._call(row)
        if self.progress:
            print(f"tune: timing {len(everyone)} {'finalists' if final else 'candidates'} by blocks "
                  f"({rounds} rounds, {_PAUSE_S:g} s pauses, order rotating)", flush=True)
        # a block lasts at least this long, so a fast model's block is not a handful of microseconds
        min_block = _MIN_BLOCK_S[final]
        stats = time_blocks(calls, rounds=rounds, block=block, warmup=warmup, pause_s=_PAUSE_S, items_per_call=items,
                            min_block_seconds=min_block)
        for row in everyone:
            if final:
                row.final = stats[row.label]
            else:
                row.screen = stats[row.label]
        for row in everyone:
            if row.pool is not None:
                row.pool.close()
                row.pool = None


def pick_finalists(measured, allow_unjudged: bool = False, within: float = FINAL_WITHIN,
                   limit: int = FINAL_MAX) -> list[TuneRow]:
    """The screened rows the final run re-times: only rows that keep the budget (or, with
    ``allow_unjudged``, rows the budget could not judge), the fastest first, those within
    ``within`` of the fastest, at most ``limit``. A row outside the budget is never one of them,
    whatever its speed."""
    eligible = [r for r in measured if r.in_budget is True or (r.in_budget is None and allow_unjudged)]
    if not eligible:
        return []
    eligible.sort(key=lambda r: r.screen_cost)
    best = eligible[0].screen_cost
    # costs are ms (positive) for latency and -items/s (negative) for throughput
    keep = [r for r in eligible if (r.screen_cost <= best * within if best > 0 else r.screen_cost <= best / within)]
    return keep[:limit]
