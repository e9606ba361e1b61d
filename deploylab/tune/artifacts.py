"""Each candidate's artifact built once, its runner made, and the commands that reproduce both.

Candidates that differ only in threads, hint or requests in flight share an artifact
(:attr:`~deploylab.tune.candidates.Candidate.build_key`): one ONNX file per ONNX Runtime
precision and int8 recipe, one OpenVINO IR for fp32/bf16/fp16 (the precision is a compile
hint) and one NNCF IR. The model's batch dim is fixed at the tuned batch size first: a
deployment at one batch size runs a static graph, which both engines plan better than a
dynamic one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.tune.candidates import Candidate

#: What ``calib_method`` deploylab's ONNX Runtime quantizer takes for each recipe's calibration.
_ORT_RECIPES = {"u8s8-per-channel": None, "s8s8-symmetric": "tensorrt"}


@dataclass
class Built:
    """An artifact on disk (``path``; an IR's .bin beside it), how long it took, and the
    commands (``steps``) that make it from the tuned ONNX file."""

    path: Path
    seconds: float
    steps: list[str]
    note: str = ""
    size_mib: float = 0.0  # the artifact's files (an IR's .xml and .bin), measured when it was built

    def __post_init__(self):
        files = [self.path] + ([self.path.with_suffix(".bin")] if self.path.suffix == ".xml" else [])
        self.size_mib = sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def fix_batch(onnx_in: Path, onnx_out: Path, batch: int) -> bool:
    """Write ``onnx_in`` with dim 0 of its input and outputs fixed at ``batch``; False (nothing
    written) when it is already fixed at ``batch``. A batch fixed at another size is refused."""
    import onnx

    from deploylab.onnx_tools import load_onnx
    from deploylab.paths import replace_when_done

    model = load_onnx(onnx_in)
    changed = False
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            continue
        first = dims[0]
        if first.HasField("dim_value") and first.dim_value > 0:
            if value in model.graph.input and first.dim_value != batch:
                raise DeployLabError(f"{str(onnx_in)!r} fixes the batch of {value.name!r} at {first.dim_value}; "
                                     f"tune it with --batch {first.dim_value}, or export with --dynamic-batch")
            continue
        first.Clear()
        first.dim_value = batch
        changed = True
    if changed:
        del model.graph.value_info[:]  # inferred shapes of the symbolic batch; the engines infer them again
        with replace_when_done(onnx_out, ".onnx") as partial:
            onnx.save(model, str(partial))
    return changed


def build_artifact(candidate: Candidate, onnx_path: Path, work: Path, calibration) -> Built:
    """Build ``candidate``'s artifact from the tuned ONNX file into ``work``. ``calibration`` is a
    callable returning (samples, source line), called only by int8 recipes (once, then cached by
    the caller). Engine refusals propagate as :class:`~deploylab.errors.DeployLabError`."""
    from deploylab.quantize import quantize_model

    t0 = time.perf_counter()
    backend, precision = candidate.backend, candidate.precision
    name = onnx_path.name
    if backend == "onnxruntime" and precision == "fp32":
        return Built(onnx_path, 0.0, [])
    if backend == "onnxruntime":
        stem = f"{onnx_path.stem}_{precision}" + (f"_{candidate.recipe}_{candidate.calibration}"
                                                  if candidate.recipe else "")
        out = work / f"{stem}.onnx"
        if precision == "fp16":
            quantize_model(onnx_path, out, "fp16")
            return Built(out, time.perf_counter() - t0, [f"deploylab quantize {name} --mode fp16 -o {out.name}"])
        from deploylab.quantize import int8, tensorrt_int8

        samples, source = calibration()
        if candidate.recipe == "s8s8-symmetric":
            tensorrt_int8.quantize_int8_for_tensorrt(onnx_path, out, samples, method=candidate.calibration,
                                                     progress=False)
            flags = "--for tensorrt"
        else:
            int8.quantize_int8_onnxruntime(onnx_path, out, samples, method=candidate.calibration, progress=False)
            flags = f"--calib-method {candidate.calibration}"
        return Built(out, time.perf_counter() - t0,
                     [f"deploylab quantize {name} --mode int8 {flags} -o {out.name}"], note=source)
    if backend == "openvino":
        if precision == "int8":
            from deploylab.quantize.openvino_int8 import quantize_int8_openvino

            samples, source = calibration()
            out = work / f"{onnx_path.stem}_int8_nncf.xml"
            quantize_int8_openvino(onnx_path, out, samples)
            return Built(out, time.perf_counter() - t0,
                         [f"deploylab quantize {name} --mode int8 --backend openvino -o {out.name}"], note=source)
        from deploylab.backends.openvino import build_openvino_ir

        out = work / f"{onnx_path.stem}.xml"
        build_openvino_ir(onnx_path, out, reuse=False)
        return Built(out, time.perf_counter() - t0, [f"deploylab build {name} --backend openvino -o {out.name}"])
    raise DeployLabError(f"tune cannot build {candidate.name} on this machine")


def make_candidate_runner(candidate: Candidate, built: Built | str | Path):
    """The runner of ``candidate`` on its artifact (a :class:`Built` or the file's path), with its
    threads, precision and hint."""
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.backends.openvino import OpenVinoRunner

    path = built.path if isinstance(built, Built) else Path(built)
    if candidate.backend == "onnxruntime":
        return OnnxRuntimeRunner(path, intra_op_threads=candidate.threads, name=candidate.name)
    precision = None if candidate.precision == "int8" else candidate.precision  # int8: float layers at the default
    return OpenVinoRunner(path, precision=precision, hint=candidate.hint, threads=candidate.threads,
                          name=candidate.name)


def runner_call(candidate: Candidate, built: Built, batch: int, in_flight: int = 1) -> str:
    """The Python call that makes ``candidate``'s runner (what the report prints to reproduce it);
    with ``in_flight`` > 1, the :class:`~deploylab.bench.RequestPool` that keeps that many requests running."""
    path = built.path.name
    if candidate.backend == "onnxruntime":
        call = f"OnnxRuntimeRunner({path!r}, intra_op_threads={candidate.threads})"
    else:
        precision = None if candidate.precision == "int8" else candidate.precision
        call = (f"OpenVinoRunner({path!r}, precision={precision!r}, hint={candidate.hint!r}, "
                f"threads={candidate.threads})")
    if in_flight != 1:
        call = f"RequestPool({call}, in_flight={in_flight})"
    return call + f"  # batch {batch}"


def refusal_after_compile(candidate: Candidate, runner) -> str | None:
    """Why a compiled candidate does not run what it asked for (OpenVINO compiles an fp16 or bf16
    hint as f32 on a CPU without it), or None."""
    if candidate.backend != "openvino" or candidate.precision not in ("fp16", "bf16"):
        return None
    wanted = {"fp16": "f16", "bf16": "bf16"}[candidate.precision]
    got = runner.inference_precision
    if got != wanted:
        return f"OpenVINO compiles a {candidate.precision} hint as {got} on this CPU (it has no native {wanted})"
    return None
