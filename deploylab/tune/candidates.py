"""Every deployment ``tune`` considers on this machine, and why some cannot run here.

A candidate is an engine, a precision, an int8 recipe (with its calibration method), a
thread count and, for OpenVINO, a performance hint. Candidates an engine or this CPU
cannot run are kept with the reason, not dropped: the report lists them. The plan is
ordered cheapest first (no calibration before calibration), so a time budget cuts the
expensive end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from deploylab.errors import DeployLabError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# ONNX Runtime int8 recipes deploylab makes (deploylab.quantize): U8S8 per-channel after
# quant_pre_process, and the symmetric signed recipe (the TensorRT-ready one) with MinMax.
ORT_INT8 = (("u8s8-per-channel", "minmax"), ("u8s8-per-channel", "entropy"),
            ("u8s8-per-channel", "percentile"), ("s8s8-symmetric", "minmax"))
OPENVINO_HINTS = ("latency", "throughput")
_COST = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}


@dataclass(frozen=True)
class Candidate:
    """One deployment to measure. ``status``: ``"run"`` (measurable here), ``"refused"`` (the
    engine or this CPU cannot run it; ``reason`` says why) or ``"not on this machine"``
    (TensorRT without a GPU; ``command`` builds it where one is)."""

    backend: str
    precision: str
    threads: int
    recipe: str | None = None
    calibration: str | None = None
    hint: str | None = None
    status: str = "run"
    reason: str = ""
    command: str = ""
    requests: int = 1  # requests in flight; 0 = as many as the engine says it wants (OpenVINO streams)

    @property
    def name(self) -> str:
        parts = [self.backend, self.precision]
        parts += [p for p in (self.recipe, self.calibration, self.hint) if p]
        name = " ".join(parts) + f" x{self.threads}"
        if self.requests != 1:
            name += f" {self.requests or 'auto'} in flight"
        return name

    @property
    def build_key(self) -> tuple:
        """Candidates with the same key run the same artifact (threads, hints and requests do not
        change the file)."""
        if self.backend == "openvino" and self.precision != "int8":
            return (self.backend, "ir")  # one IR; the precision is a compile-time hint
        return (self.backend, self.precision, self.recipe, self.calibration)

    @property
    def numerics_key(self) -> tuple:
        """Candidates with the same key compute with the same kernels and precision."""
        return (self.backend, self.precision, self.recipe, self.calibration)

    @property
    def cost(self) -> int:
        """Relative set-up cost: fp32 < a precision hint or conversion < calibration."""
        return _COST[self.precision] + (1 if self.calibration in ("entropy", "percentile") else 0)


def _check_names(values: Sequence[str], known: Sequence[str], flag: str) -> list[str]:
    values = [v.strip().lower() for v in values if v.strip()]
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        raise DeployLabError(f"{flag}: unknown {', '.join(map(repr, unknown or ['(none)']))}; "
                             f"use some of {', '.join(known)}")
    return list(dict.fromkeys(values))


OBJECTIVES = ("latency", "throughput")


def plan_candidates(backends: Sequence[str], precisions: Sequence[str], *, cpus: int, bf16_cpu: bool,
                    tensorrt_here: bool, model: str = "MODEL.onnx", objective: str = "latency") -> list[Candidate]:
    """The candidates for ``backends`` x ``precisions`` on a machine with ``cpus`` logical CPUs,
    native bf16 or not (:func:`deploylab.env.cpu_supports_bf16`) and a usable TensorRT or not,
    cheapest first. ``model`` goes into the build commands of candidates not runnable here.

    ``objective="throughput"`` adds what single calls leave unused: one single-threaded ONNX
    Runtime session per core with a request in flight on each (instead of one session's
    intra-op threads), and OpenVINO's throughput hint with as many requests in flight as its
    streams want (``requests=0``)."""
    if objective not in OBJECTIVES:
        raise DeployLabError(f"--objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    backends = _check_names(backends, ("onnxruntime", "openvino", "tensorrt"), "--backends")
    precisions = _check_names(precisions, PRECISIONS, "--precisions")
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise DeployLabError(f"cpus must be a positive integer, got {cpus!r}")
    threads = sorted({1, cpus})
    plan: list[Candidate] = []
    for backend in backends:
        for precision in precisions:
            plan += _for(backend, precision, threads, bf16_cpu, tensorrt_here, model)
    if objective == "throughput":
        plan = [_in_flight(c, cpus) for c in plan]
    return sorted(plan, key=lambda c: (c.status != "run", c.cost))  # stable: the given order within a cost


def _in_flight(candidate: Candidate, cpus: int) -> Candidate:
    if candidate.status != "run":
        return candidate
    if candidate.backend == "onnxruntime" and candidate.threads == 1 and cpus > 1:
        return replace(candidate, requests=cpus)  # one session per core
    if candidate.backend == "openvino" and candidate.hint == "throughput":
        return replace(candidate, requests=0)  # OPTIMAL_NUMBER_OF_INFER_REQUESTS
    return candidate


def _for(backend, precision, threads, bf16_cpu, tensorrt_here, model) -> list[Candidate]:
    if backend == "tensorrt":
        command = f"deploylab build {model} --backend tensorrt --precision {precision} -o model_{precision}.plan"
        if not tensorrt_here:
            return [Candidate(backend, precision, threads[-1], status="not on this machine",
                              reason="TensorRT needs an NVIDIA GPU and the full TensorRT", command=command)]
        # deploylab's TensorRT builder is checked against the real bindings without a GPU, but tune's
        # own timing of plans has never run on one: it lists them for a run by hand rather than guess.
        return [Candidate(backend, precision, threads[-1], status="refused", command=command + " && deploylab bench "
                          f"model_{precision}.plan --backends tensorrt",
                          reason="tune does not build and time TensorRT plans yet; build and time this one by hand")]
    if backend == "onnxruntime":
        if precision == "bf16":
            return [Candidate(backend, precision, t, status="refused",
                              reason="deploylab makes bf16 only through OpenVINO's inference precision hint")
                    for t in threads]
        if precision == "int8":
            return [Candidate(backend, precision, t, recipe=r, calibration=c) for r, c in ORT_INT8 for t in threads]
        return [Candidate(backend, precision, t) for t in threads]
    # openvino
    if precision == "bf16" and not bf16_cpu:
        return [Candidate(backend, precision, t, hint=h, status="refused",
                          reason="this CPU has no native bf16 (AVX-512 BF16 or AMX); OpenVINO would run fp32")
                for t in threads for h in OPENVINO_HINTS]
    recipe = "nncf" if precision == "int8" else None
    return [Candidate(backend, precision, t, recipe=recipe, hint=h) for t in threads for h in OPENVINO_HINTS]
