"""OpenVINO: the TensorRT workflow's two phases, run for real on a CPU.

Build phase (TensorRT: parse + optimise + serialise a plan):
    ``convert_model`` reads the ONNX file, ``reshape`` bounds its dynamic dims with the
    same min/max settings a TensorRT optimization profile uses, ``save_model`` writes the
    IR (``.xml`` graph + ``.bin`` weights) with a JSON sidecar; a saved IR whose sidecar
    matches is reused instead of rebuilt.
Runtime phase (TensorRT: runtime, deserialize, context, execute):
    ``Core.read_model`` + ``compile_model`` for a device with an explicit inference
    precision and performance hint, then infer requests (synchronous, or an
    ``AsyncInferQueue`` for throughput).

Precision: OpenVINO's CPU plugin runs bf16 by default on CPUs with AMX (and may on
AVX-512 BF16), f32 elsewhere. deploylab asks for f32 unless told otherwise, and reports
the compiled model's resolved ``INFERENCE_PRECISION_HINT``: the precision of its float
layers, not of every layer (an int8 model reports f32 while its convolutions run u8/i8;
``deploylab.profiling.openvino_runtime_layers`` lists each layer's runtime precision).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deploylab.backends.base import OnnxFileRunner, RunnerSettings, TensorSpec, precision_name
from deploylab.backends.build_record import RECORD_FORMATS, BuildReport, read_record, record_path_for, write_record
from deploylab.backends.spec import BackendSpec
from deploylab.errors import DeployLabError, EngineError, require
from deploylab.log import info
from deploylab.paths import cannot_write, check_output_path, directory_lock, partial_name, sha256_file, signals_held
from deploylab.text import engine_error_summary, first_line, shape_text

PRECISIONS = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16"}
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}


def _ov():
    return require("openvino", "openvino", "the OpenVINO backend")


file_sha256 = sha256_file  # the name this module has always exported


def default_inference_precision(device: str = "CPU") -> dict:
    """What OpenVINO would pick on this machine: precision hint and the device's capabilities."""
    core = _ov().Core()
    return {
        "device": device,
        "default_precision": _precision_name(core.get_property(device, "INFERENCE_PRECISION_HINT")),
        "capabilities": list(core.get_property(device, "OPTIMIZATION_CAPABILITIES")),
        "device_name": str(core.get_property(device, "FULL_DEVICE_NAME")),
    }


# ---------------------------------------------------------------- build phase
IrBuildReport = BuildReport  # the name this module exported before one report served every backend


def _bounded_shapes(model, profile: Mapping[str, tuple] | None):
    """PartialShape per input: profile (min, opt, max) -> Dimension(min, max) where they differ."""
    ov = _ov()
    shapes = {}
    names = {port.get_any_name(): port for port in model.inputs}
    for name, (low, opt, high) in (profile or {}).items():
        if name not in names:
            raise DeployLabError(
                f"profile names input {name!r}, but the model's inputs are {', '.join(names)}"
            )
        current = names[name].get_partial_shape()
        for which, shape in zip(("min", "opt", "max"), (low, opt, high)):
            if len(shape) != current.rank.get_length():
                raise DeployLabError(
                    f"profile {which} shape for {name!r} has rank {len(shape)}, the model input has shape {current}"
                )
        dims = []
        for axis, (lo, mid, hi) in enumerate(zip(low, opt, high)):
            if not 1 <= lo <= mid <= hi:
                raise DeployLabError(
                    f"profile for {name!r} dim {axis}: min {lo}, opt {mid}, max {hi} must satisfy "
                    f"1 <= min <= opt <= max (model shape {current})"
                )
            model_dim = current[axis]
            if model_dim.is_static and not (lo == hi == model_dim.get_length()):
                raise DeployLabError(
                    f"profile for {name!r} sets dim {axis} to {lo}..{hi}, but the model fixes it at "
                    f"{model_dim.get_length()} (model shape {current})"
                )
            dims.append(ov.Dimension(lo) if lo == hi else ov.Dimension(lo, hi))
        shapes[name] = ov.PartialShape(dims)
    return shapes


def build_openvino_ir(
    onnx_path: str | Path,
    xml_path: str | Path,
    profile: Mapping[str, tuple] | None = None,
    reuse: bool = True,
) -> BuildReport:
    """Convert ``onnx_path`` to an OpenVINO IR at ``xml_path`` (``.bin`` beside it).

    ``profile`` maps input names to ``(min_shape, opt_shape, max_shape)`` like a TensorRT
    optimization profile; dims where min != max become bounded dynamic dims (OpenVINO
    has no "opt" shape: it plans for the range). Weights stay f32 (``save_model`` would
    compress them to f16 by default, which changes the numbers). With ``reuse`` an
    existing IR is kept when its sidecar records the same ONNX file and profile.
    """
    from deploylab.onnx_tools import load_onnx

    ov = _ov()
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    if xml_path.suffix != ".xml":
        raise DeployLabError(f"OpenVINO IR path {str(xml_path)!r} must end in .xml (the .bin is written beside it)")
    load_onnx(onnx_path, load_external_data=False)
    check_output_path(xml_path)
    check_output_path(record_path_for(xml_path))
    try:
        xml_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(xml_path, exc) from None
    # One build at a time per folder: a second build of the same IR waits, then reuses the first's.
    with directory_lock(xml_path.parent):
        return _build_ir_locked(ov, onnx_path, xml_path, profile, reuse)


def _build_ir_locked(ov, onnx_path: Path, xml_path: Path, profile, reuse: bool) -> BuildReport:
    sidecar_path = record_path_for(xml_path)
    wanted = {
        "onnx_sha256": sha256_file(onnx_path),
        "profile": {k: [list(map(int, s)) for s in v] for k, v in (profile or {}).items()},
    }
    start = time.perf_counter()
    if reuse and xml_path.is_file() and xml_path.with_suffix(".bin").is_file():
        try:
            recorded = read_record(sidecar_path, "openvino", "rebuild the IR") or {}
        except DeployLabError:
            recorded = {}  # unreadable, or an older deploylab's record: rebuild below
        same_build = all(recorded.get(k) == v for k, v in wanted.items()) and recorded.get("openvino") == ov.__version__
        if same_build and _ir_changed(recorded, xml_path):
            info(f"{xml_path.name} or its .bin changed since they were built (their sizes or sha256 differ from "
                 f"{sidecar_path.name}): rebuilding instead of reusing them")
            same_build = False
        if same_build:
            try:
                model = ov.Core().read_model(str(xml_path))
            except RuntimeError:
                model = None  # a damaged IR (e.g. an interrupted write): rebuild it below
            if model is not None:
                shapes = {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs}
                return BuildReport("openvino", xml_path, sidecar_path, time.perf_counter() - start, recorded,
                                   reused=True, facts={"input_shapes": shapes})
    model = read_model(onnx_path)
    shapes = _bounded_shapes(model, profile)
    if shapes:
        model.reshape(shapes)
    save_ir(model, xml_path)
    seconds = time.perf_counter() - start
    sidecar = {
        "format": RECORD_FORMATS["openvino"],
        **wanted,
        "openvino": ov.__version__,
        "onnx_file": onnx_path.name,
        "dim_names": _onnx_dim_names(onnx_path),
        "inputs": {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs},
        "weights": "f32",
        "ir_files": _ir_files(xml_path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_record(sidecar_path, "openvino", sidecar)
    return BuildReport("openvino", xml_path, sidecar_path, seconds, sidecar, facts={"input_shapes": sidecar["inputs"]})


def _ir_changed(record: dict, xml_path: Path) -> bool:
    """True when the IR's .xml/.bin are not the files ``record`` lists (sizes and sha256)."""
    return record.get("ir_files") != _ir_files(xml_path)


def _ir_files(xml_path: Path) -> dict:
    """Size and sha256 of an IR's .xml and .bin, so a record never vouches for files changed after it."""
    files = {}
    for kind, path in (("xml", xml_path), ("bin", xml_path.with_suffix(".bin"))):
        files[kind] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)} if path.is_file() else None
    return files


def read_model(path: str | Path):
    """An ``ov.Model`` from an ONNX file (``convert_model``) or an IR (``read_model``); what OpenVINO
    refuses (an unknown op, a missing initializer, a cycle...) is one EngineError naming the file."""
    ov = _ov()
    path = Path(path)
    try:
        return ov.convert_model(str(path)) if path.suffix != ".xml" else ov.Core().read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO's frontends raise their own exception types
        raise EngineError(f"OpenVINO cannot {'read' if path.suffix == '.xml' else 'convert'} {str(path)!r}: "
                          f"{engine_error_summary(str(exc))[:300]}; check the model with `deploylab check-support`",
                          engine_text=str(exc)) from exc


def _refuse_changed_ir(xml_path: Path) -> None:
    """An IR whose record lists other .xml/.bin sizes or hashes than the files now there (weights edited
    in place, another model's IR copied over) is refused, not run: its outputs would be some other model's.
    An IR without a deploylab record (converted elsewhere) runs as it is."""
    try:
        record = read_record(record_path_for(xml_path), "openvino", "rebuild the IR")
    except DeployLabError:
        return  # not a record deploylab can read: the IR is treated as unrecorded
    if record and record.get("ir_files") and _ir_changed(record, xml_path):
        raise DeployLabError(
            f"{str(xml_path)!r} or its .bin changed since they were built (sizes or sha256 differ from "
            f"{record_path_for(xml_path).name}): rebuild it with `deploylab build ONNX --backend openvino -o "
            f"{xml_path.name} --rebuild`, or delete the record to run the files as they are")


def save_ir(model, xml_path: str | Path) -> Path:
    """Save an ``ov.Model`` as an IR under temporary names beside ``xml_path``, then rename .bin and .xml
    into place: a failed or interrupted save leaves the previous IR as it was (no partial files), and
    concurrent savers never mix their files' names. The previous build record goes first, so no record
    ever describes the new files (a caller that builds writes its own after)."""
    ov = _ov()
    xml_path = check_output_path(xml_path)
    sidecar_path = record_path_for(xml_path)
    partial = partial_name(xml_path.with_suffix(""), ".xml")
    try:
        ov.save_model(model, str(partial), compress_to_fp16=False)
        with signals_held():  # Ctrl-C or SIGTERM before or after the three steps, never between them
            sidecar_path.unlink(missing_ok=True)
            if partial.with_suffix(".bin").is_file():
                os.replace(partial.with_suffix(".bin"), xml_path.with_suffix(".bin"))
            os.replace(partial, xml_path)
    except (OSError, RuntimeError) as exc:
        raise EngineError(f"cannot write the OpenVINO IR {str(xml_path)!r}: {first_line(exc)}; check that its folder "
                          "exists, is writable and has space", engine_text=str(exc)) from exc
    finally:
        partial.unlink(missing_ok=True)
        partial.with_suffix(".bin").unlink(missing_ok=True)
    return xml_path


def _onnx_dim_names(onnx_path: Path) -> dict[str, list]:
    from deploylab.onnx_tools import graph_inputs, graph_outputs, load_onnx

    model = load_onnx(onnx_path, load_external_data=False)
    return {t.name: list(t.shape) for t in graph_inputs(model) + graph_outputs(model)}


# ---------------------------------------------------------------- runtime phase
class OpenVinoRunner(OnnxFileRunner):
    """An ONNX file or OpenVINO IR compiled by OpenVINO for ``device``.

    ``precision``: ``fp32`` (default), ``bf16``, ``fp16`` or ``None`` for the device
    default; ``hint``: ``latency`` or ``throughput``; ``threads``: CPU inference threads;
    ``perf_count``: record per-layer times (``PERF_COUNT``, see :mod:`deploylab.profiling`).
    ``inference_precision`` is the compiled model's resolved precision hint (compiling if
    needed); per-layer precisions: :func:`deploylab.profiling.openvino_runtime_layers`.
    """

    backend = "openvino"
    queues_requests = True  # an AsyncInferQueue: infer_queued

    def __init__(self, model_path: str | Path, device: str = "CPU", precision: str | None = "fp32",
                 hint: str = "latency", threads: int | None = None, name: str | None = None,
                 perf_count: bool = False):
        super().__init__(model_path, name or f"openvino:{Path(model_path).name}")
        if precision is not None and precision not in PRECISIONS:
            raise DeployLabError(
                f"unknown OpenVINO precision {precision!r}; use fp32, bf16, fp16 or None for the device "
                "default (int8 comes from a quantized model, not from a precision setting)"
            )
        if hint not in HINTS:
            raise DeployLabError(f"unknown performance hint {hint!r}; use one of {', '.join(HINTS)}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise DeployLabError(f"threads must be a positive integer, got {threads!r}")
        self.device, self.precision, self.hint, self.threads = device, precision, hint, threads
        self.perf_count = bool(perf_count)
        self.compiled = None
        self.request = None
        self.model_bytes: bytes | None = None
        self._queues: dict[int, object] = {}
        self._inference_precision: str | None = None

    def settings(self) -> RunnerSettings:
        """The resolved inference precision (compiles the model when it is not yet compiled)."""
        return RunnerSettings(int(self.threads) if self.threads else None, precision_name(self.inference_precision))

    def with_model(self, model_path: str | Path) -> OpenVinoRunner:
        return OpenVinoRunner(model_path, self.device, self.precision, self.hint, self.threads,
                              perf_count=self.perf_count)

    def config(self) -> dict:
        config = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.precision is not None:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[self.precision]
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.perf_count:
            config["PERF_COUNT"] = True  # per-layer times in request.get_profiling_info()
        return config

    @classmethod
    def from_bytes(cls, model_bytes: bytes, name: str = "openvino:<bytes>", **settings) -> OpenVinoRunner:
        """A runner on a serialized ONNX model held in memory; same settings as the constructor."""
        runner = cls("<bytes>.onnx", name=name, **settings)
        runner.model_bytes = bytes(model_bytes)
        return runner

    def clone(self) -> OpenVinoRunner:
        if self.model_bytes is None:
            return self.with_model(self.model_path)
        return OpenVinoRunner.from_bytes(self.model_bytes, self.name, device=self.device, precision=self.precision,
                                         hint=self.hint, threads=self.threads, perf_count=self.perf_count)

    def _activate(self) -> None:
        ov = _ov()
        path = self.model_path
        if self.model_bytes is not None:
            source, label = io.BytesIO(self.model_bytes), self.name
        elif path.suffix == ".onnx":
            from deploylab.onnx_tools import load_onnx

            load_onnx(path, load_external_data=False)
            source, label = str(path), repr(str(path))
        elif not path.is_file():
            raise DeployLabError(f"model {str(path)!r} does not exist; build it with `deploylab build ... --backend openvino`")
        else:
            _refuse_changed_ir(path)
            source, label = str(path), repr(str(path))
        core = ov.Core()
        try:
            model = core.read_model(source)
            self.compiled = core.compile_model(model, self.device, self.config())
        except RuntimeError as exc:
            raise EngineError(f"OpenVINO cannot compile {label} for {self.device}: "
                              f"{engine_error_summary(str(exc))[:300]}", engine_text=str(exc)) from exc
        self.request = self.compiled.create_infer_request()
        self._inference_precision = _precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        asked = PRECISIONS.get(self.precision) if self.precision else None
        if asked and self._inference_precision != asked:
            info(f"OpenVINO on {self.device}: asked for {asked}, the compiled model runs "
                 f"{self._inference_precision} (this device does not support {asked})")
        self._dim_names = self._read_dim_names()

    def _read_dim_names(self) -> dict[str, list]:
        if self.model_bytes is not None:
            import onnx

            from deploylab.onnx_tools import graph_inputs, graph_outputs

            model = onnx.load_from_string(self.model_bytes)
            return {t.name: list(t.shape) for t in graph_inputs(model) + graph_outputs(model)}
        if self.model_path.suffix == ".xml":
            try:
                record = read_record(record_path_for(self.model_path), "openvino", "rebuild the IR")
            except DeployLabError:
                record = None  # the IR still runs; its dims are then named after their inputs
            return (record or {}).get("dim_names", {})
        if self.model_path.suffix == ".onnx":
            return _onnx_dim_names(self.model_path)
        return {}

    def _deactivate(self) -> None:
        self.compiled = self.request = None
        self._queues = {}

    def _spec(self, port, is_input: bool) -> TensorSpec:
        name = port.get_any_name()
        shape, bounds = [], []
        names = self._dim_names.get(name, [])
        for axis, dim in enumerate(port.get_partial_shape()):
            if dim.is_static:
                shape.append(dim.get_length())
                continue
            label = names[axis] if axis < len(names) and isinstance(names[axis], str) else f"{name}_dim{axis}"
            shape.append(label)
            if dim.get_max_length() >= 0:  # -1 = unbounded
                bounds.append((label, max(dim.get_min_length(), 0), dim.get_max_length()))
        return TensorSpec(name, np.dtype(port.get_element_type().to_dtype()), tuple(shape), tuple(bounds))

    def _describe(self):
        inputs = [self._spec(p, True) for p in self.compiled.inputs]
        outputs = [self._spec(p, False) for p in self.compiled.outputs]
        return inputs, outputs

    def _infer(self, feed):
        try:
            result = self.request.infer(feed)
        except RuntimeError as exc:  # compiled, but this input cannot be computed
            shapes = ", ".join(f"{n} {shape_text(a.shape)}" for n, a in feed.items())
            raise EngineError(f"OpenVINO failed running {self.name} on {shapes}: "
                              f"{engine_error_summary(str(exc))[:300]}; check the input shape against the model's "
                              "inputs (`deploylab inspect`)", engine_text=str(exc)) from exc
        return {port.get_any_name(): np.array(value, copy=True) for port, value in result.items()}

    def infer_queued(self, feeds: list[Mapping[str, object]], in_flight: int) -> list[dict[str, np.ndarray]]:
        return self.infer_async_queue(feeds, jobs=in_flight)

    def infer_async_queue(self, feeds: list[Mapping[str, object]], jobs: int = 0) -> list[dict[str, np.ndarray]]:
        """Run many feeds through an ``AsyncInferQueue`` of ``jobs`` requests (0 = device's optimal).

        With the throughput hint the CPU plugin splits its cores into streams and the
        queue keeps them all busy; results come back in the order of ``feeds``.
        """
        ov = _ov()
        self.activate()
        checked = [self.check(f) for f in feeds]
        results: list[dict | None] = [None] * len(checked)
        names = [p.get_any_name() for p in self.compiled.outputs]

        def done(request, index):
            results[index] = {n: request.get_output_tensor(i).data.copy() for i, n in enumerate(names)}

        queue = self._queues.get(jobs)
        if queue is None:  # creating requests costs time: keep one queue per size
            queue = self._queues[jobs] = ov.AsyncInferQueue(self.compiled, jobs)
        queue.set_callback(done)
        for index, feed in enumerate(checked):
            queue.start_async(feed, index)
        queue.wait_all()
        return results

    @property
    def inference_precision(self) -> str:
        """The compiled model's resolved ``INFERENCE_PRECISION_HINT`` (f32, bf16, f16).

        It is the precision of the float layers; layers of a quantized model run int8, and
        a few (reorders, the first or last layer) may stay f32: see
        :func:`deploylab.profiling.openvino_runtime_layers`.
        """
        self.activate()
        return self._inference_precision

    @property
    def optimal_requests(self) -> int:
        """How many parallel requests the compiled model wants (1 for latency, more for throughput)."""
        self.activate()
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))


def _precision_name(value) -> str:
    """An ``ov.Type`` (or its text) as OpenVINO's short name: f32, bf16, f16."""
    text = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text.lower(), text.lower())


def _engine_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


SPEC = BackendSpec(
    name="openvino",
    reads_onnx=True,
    artifacts=(".xml",),
    runner=OpenVinoRunner,
    available=_engine_available,
    builder=build_openvino_ir,
    thread_option="threads",
    conformance_runner=lambda model_bytes: OpenVinoRunner.from_bytes(model_bytes, "openvino", precision="fp32",
                                                                     hint="latency", threads=1),
)
