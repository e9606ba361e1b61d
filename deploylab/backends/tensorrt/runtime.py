"""The runtime phase: load a plan (check, deserialize) and run it behind the runner contract.

:func:`load_plan` checks the plan's record against this machine (TensorRT release, runtime
kind, GPU), sets the CUDA device, creates ``trt.Runtime`` and deserializes the engine.
:class:`TensorRTRunner` then owns only what running needs: an execution context, a CUDA
stream and the IO buffers, bound by address for ``execute_async_v3``. The same code runs on
the full, lean and dispatch runtimes (each member it touches is listed below and checked
against the real bindings by the tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.backends.base import Runner, RunnerSettings, TensorSpec, check_feed
from deploylab.text import shape_text
from deploylab.backends.tensorrt.record import check_plan_compatibility, gpu_info
from deploylab.backends.tensorrt.version import TensorRTVersion, require_tensorrt
from deploylab.dtypes import ELEMENT_TYPES
from deploylab.errors import DeployLabError

#: Every runtime-phase class member the runner touches; a test checks each one exists in
#: the lean and dispatch bindings and in the full bindings of each release, so the runtime phase works
#: on every runtime.
RUNTIME_API_CALLS: tuple[tuple[str, str], ...] = (
    ("Logger", "__init__"),
    ("Runtime", "__init__"),
    ("Runtime", "engine_host_code_allowed"),
    ("Runtime", "deserialize_cuda_engine"),
    ("ICudaEngine", "num_io_tensors"),
    ("ICudaEngine", "get_tensor_name"),
    ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_dtype"),
    ("ICudaEngine", "get_tensor_shape"),
    ("ICudaEngine", "get_tensor_location"),
    ("ICudaEngine", "num_optimization_profiles"),
    ("ICudaEngine", "get_tensor_profile_shape"),
    ("ICudaEngine", "create_execution_context"),
    ("IExecutionContext", "set_optimization_profile_async"),
    ("IExecutionContext", "set_input_shape"),
    ("IExecutionContext", "get_tensor_shape"),
    ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "execute_async_v3"),
)


#: Enum members the runtime phase reads.
RUNTIME_ENUMS: tuple[tuple[str, str], ...] = (
    ("Logger", "WARNING"), ("TensorIOMode", "INPUT"), ("TensorIOMode", "OUTPUT"),
    ("TensorLocation", "HOST"), ("LayerInformationFormat", "JSON"),
)


#: Used only when the module has them (the full tensorrt; the lean runtime binds no inspector
#: class). The Python class is bound as ``EngineInspector`` (not ``IEngineInspector``) in every
#: release 10.0-11.4: ``py::class_<IEngineInspector>(m, "EngineInspector", ...)`` in
#: python/src/infer/pyCore.cpp.
OPTIONAL_RUNTIME_API_CALLS: tuple[tuple[str, str], ...] = (
    ("ICudaEngine", "create_engine_inspector"),
    ("EngineInspector", "get_engine_information"),
)


# TensorRT DataType member name -> numpy dtype / torch dtype name, from deploylab's one type
# table. numpy has no bfloat16 or fp8, so those IO tensors are refused for numpy feeds (build
# with fp32 IO, e.g. AutoCast keep_io_types=True); torch buffers take them.
TRT_TO_NUMPY = {t.tensorrt: t.numpy for t in ELEMENT_TYPES if t.tensorrt and t.numpy is not None}
TRT_TO_TORCH = {t.tensorrt: t.torch.removeprefix("torch.") for t in ELEMENT_TYPES if t.tensorrt and t.torch}


def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy dtype of a TensorRT ``DataType`` (by member name, so any TensorRT module works)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_TO_NUMPY:
        raise DeployLabError(
            f"TensorRT IO dtype {name} has no numpy equivalent deploylab can feed; build the plan with "
            f"IO tensors in one of {', '.join(TRT_TO_NUMPY)} (e.g. keep fp32 IO in an fp16/bf16 model)"
        )
    return np.dtype(TRT_TO_NUMPY[name])


def torch_dtype(trt_dtype):
    """torch dtype of a TensorRT ``DataType``."""
    import torch

    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_TO_TORCH:
        raise DeployLabError(f"TensorRT dtype {name} has no torch equivalent deploylab handles")
    return getattr(torch, TRT_TO_TORCH[name])


def check_profile_bounds(name: str, shape: tuple, engine_shape: tuple, low: tuple, high: tuple,
                         profile_index: int = 0) -> None:
    """Raise if ``shape`` leaves the profile's [min, max] on a dynamic (-1) dim of the engine input."""
    for axis, (want, got) in enumerate(zip(engine_shape, shape)):
        if want < 0 and not low[axis] <= got <= high[axis]:
            raise DeployLabError(
                f"input {name!r} has shape {shape_text(shape)}, but optimization profile {profile_index} of this "
                f"plan accepts min {shape_text(low)} to max {shape_text(high)} (dim {axis} = {got} is outside "
                f"[{low[axis]}, {high[axis]}]); split the batch, or rebuild with a wider profile"
            )


@dataclass
class LoadedPlan:
    """A deserialized plan and what loaded it: module, release, runtime kind, Runtime, engine, record."""

    trt: object
    version: TensorRTVersion
    runtime_kind: str
    runtime: object
    engine: object
    record: dict | None


def _require_cuda():
    try:
        import torch

        if torch.cuda.is_available():
            return torch
    except ImportError:
        pass
    raise DeployLabError(
        "the TensorRT runner needs an NVIDIA GPU / TensorRT, and torch sees no CUDA device on this machine; "
        "run the plan on a machine with an NVIDIA GPU, or use the CPU twin (OpenVINO, ONNX Runtime) here"
    )


def load_plan(engine_path: str | Path, device: int = 0, allow_host_code: bool | None = None) -> LoadedPlan:
    """Check ``engine_path`` against this machine and deserialize it on CUDA device ``device``.

    The GPU is checked before TensorRT is touched (without a working driver, creating a
    ``trt.Runtime`` only logs errors and can crash the interpreter later); the device is set
    before the Runtime is created, so the engine lands on it. ``allow_host_code``: let
    TensorRT run the lean runtime embedded in a version-compatible plan (None = only when the
    plan's record says it is version-compatible). A plan is executable code: load only plans
    you built or received over a trusted channel.
    """
    torch = _require_cuda()
    install = require_tensorrt("runtime")
    trt, version = install.module, install.version
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise DeployLabError(
            f"TensorRT plan {str(engine_path)!r} does not exist; build one with build_engine_plan or "
            "trtexec --saveEngine"
        )
    if not 0 <= device < torch.cuda.device_count():
        raise DeployLabError(
            f"CUDA device {device} does not exist; this machine has {torch.cuda.device_count()} (0 to "
            f"{torch.cuda.device_count() - 1})"
        )
    gpu = gpu_info(device)
    record = check_plan_compatibility(engine_path, version, gpu and gpu["compute_capability"],
                                      runtime=install.kind, gpu_name=gpu and gpu["name"])
    torch.cuda.set_device(device)
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    allow = allow_host_code if allow_host_code is not None else bool((record or {}).get("version_compatible"))
    if allow:
        # Version-compatible plans embed the lean runtime, i.e. host code TensorRT runs only
        # when allowed (Runtime.engine_host_code_allowed, default False).
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise DeployLabError(
            f"TensorRT {version} ({install.kind} runtime) could not deserialize {engine_path.name}; it was most likely "
            "built with another TensorRT version or for another GPU (the log lines above say which): rebuild it here. "
            "A version-compatible plan without a build record also needs TensorRTRunner(..., allow_host_code=True)"
        )
    return LoadedPlan(trt, version, install.kind, runtime, engine, record)


class _EngineSession:
    """An engine + execution context behind the runner contract, with buffers on ``device``.

    Kept apart from :class:`TensorRTRunner` so the same code runs on a real engine (CUDA
    device, CUDA stream) and, in tests, on a stand-in engine on the CPU.
    """

    def __init__(self, trt, engine, context, device: str, stream_handle: int, synchronize,
                 profile_index: int = 0, record: dict | None = None):
        self.trt, self.engine, self.context = trt, engine, context
        self.device, self.stream_handle, self.synchronize = device, stream_handle, synchronize
        self.profile_index, self.record = profile_index, record or {}
        count = engine.num_optimization_profiles
        if not 0 <= profile_index < max(count, 1):
            raise DeployLabError(f"profile_index {profile_index} out of range: the plan has {count} profile(s)")
        if profile_index:
            context.set_optimization_profile_async(profile_index, stream_handle)
            synchronize()
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.shapes = {n: tuple(engine.get_tensor_shape(n)) for n in self.names}
        self.dtypes = {n: engine.get_tensor_dtype(n) for n in self.names}
        self.on_host = {n: engine.get_tensor_location(n) == trt.TensorLocation.HOST for n in self.names}
        self.bounds = {}
        for n in self.inputs:
            if any(d < 0 for d in self.shapes[n]):
                low, _, high = engine.get_tensor_profile_shape(n, profile_index)
                self.bounds[n] = (tuple(low), tuple(high))

    def describe(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        model_dims = {**self.record.get("inputs", {}), **self.record.get("outputs", {})}

        def spec(name, is_input):
            onnx_dims = model_dims.get(name, [])
            dims = []
            for axis, d in enumerate(self.shapes[name]):
                if d >= 0:
                    dims.append(d)
                elif axis < len(onnx_dims) and isinstance(onnx_dims[axis], str) and onnx_dims[axis] != "?":
                    dims.append(onnx_dims[axis])  # the ONNX dim name ties inputs and outputs together
                else:
                    dims.append(f"{name}:{axis}" if is_input else None)
            bounds = ()
            if is_input and name in self.bounds:
                low, high = self.bounds[name]
                bounds = tuple((dims[a], low[a], high[a]) for a, d in enumerate(self.shapes[name]) if d < 0)
            return TensorSpec(name, numpy_dtype(self.dtypes[name]), tuple(dims), bounds)

        return [spec(n, True) for n in self.inputs], [spec(n, False) for n in self.outputs]

    def check_bounds(self, feed: Mapping[str, object]) -> None:
        for name, (low, high) in self.bounds.items():
            value = feed.get(name) if isinstance(feed, Mapping) else None
            if isinstance(value, np.ndarray) and value.ndim == len(low):
                check_profile_bounds(name, value.shape, self.shapes[name], low, high, self.profile_index)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        keep_alive = []  # every bound buffer must outlive the synchronize below
        for name in self.inputs:
            array = feed[name]
            if not self.context.set_input_shape(name, array.shape):
                raise DeployLabError(f"TensorRT refused shape {shape_text(array.shape)} for input {name!r}")
            if self.on_host[name]:  # shape-tensor inputs are read by TensorRT from host memory
                host = np.ascontiguousarray(array)
                keep_alive.append(host)
                address = host.ctypes.data
            else:
                tensor = torch.from_numpy(array).to(self.device)
                keep_alive.append(tensor)
                address = tensor.data_ptr()
            self.context.set_tensor_address(name, address)
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise DeployLabError(
                    f"output {name!r} has data-dependent shape {shape_text(shape)}; deploylab's runner needs "
                    "output shapes known from the input shapes"
                )
            # An output TensorRT writes in host memory (a shape tensor) needs a host buffer.
            where = "cpu" if self.on_host[name] else self.device
            results[name] = torch.empty(shape, dtype=torch_dtype(self.dtypes[name]), device=where)
            self.context.set_tensor_address(name, results[name].data_ptr())
        # Input copies were queued on torch's current stream; wait so TensorRT's stream sees them.
        self.synchronize()
        if not self.context.execute_async_v3(self.stream_handle):
            raise DeployLabError("TensorRT execute_async_v3 failed; the TensorRT log lines above say why")
        self.synchronize()
        del keep_alive
        return {name: tensor.cpu().numpy() for name, tensor in results.items()}


class TensorRTRunner(Runner):
    """A TensorRT plan behind the runner contract (the runtime phase of the notes).

    Activation: :func:`load_plan` (record check, ``trt.Runtime``, ``deserialize_cuda_engine``),
    then ``create_execution_context`` and a torch CUDA stream. Each ``infer`` checks the inputs
    (profile bounds included) before TensorRT sees them, sets input shapes, allocates
    outputs from ``context.get_tensor_shape``, binds every IO tensor by address and runs
    ``execute_async_v3``. Needs an NVIDIA GPU, torch with CUDA and a TensorRT runtime (full, lean or dispatch).

    ``profile_index``: the optimization profile to run with; ``device``: CUDA device index;
    ``allow_host_code``: let TensorRT load host code embedded in a version-compatible plan
    (None = only when the plan's build record says it is version-compatible). A plan is
    executable code: load only plans you built or received over a trusted channel.
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, profile_index: int = 0, device: int = 0,
                 allow_host_code: bool | None = None, name: str | None = None):
        super().__init__(name or f"tensorrt:{Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self.profile_index, self.device, self.allow_host_code = profile_index, device, allow_host_code
        self.session: _EngineSession | None = None
        self.record: dict | None = None
        self.tensorrt_version: TensorRTVersion | None = None
        self.runtime_kind: str | None = None
        self._runtime = self._engine = self._stream = None

    def with_engine(self, engine_path: str | Path) -> TensorRTRunner:
        """The same runner settings on another plan."""
        return TensorRTRunner(engine_path, self.profile_index, self.device, self.allow_host_code)

    def settings(self) -> RunnerSettings:
        """The precision the plan was built for, from its record (fp32 when it has none)."""
        return RunnerSettings(precision=str((self.record or {}).get("precision", "fp32")))

    def clone(self) -> TensorRTRunner:
        """A runner with its own engine and execution context: a context serves one thread at a time."""
        return self.with_engine(self.engine_path)

    def _activate(self) -> None:
        loaded = load_plan(self.engine_path, self.device, self.allow_host_code)
        import torch

        context = loaded.engine.create_execution_context()
        if context is None:
            raise DeployLabError(
                f"TensorRT could not create an execution context for {self.engine_path.name} (usually: not enough "
                "GPU memory for its activations; the log lines above say why); free GPU memory or build the plan "
                "with a smaller max profile shape"
            )
        self._runtime, self._engine, self.record = loaded.runtime, loaded.engine, loaded.record
        self._stream = torch.cuda.Stream(device=self.device)
        stream = self._stream

        def synchronize():
            torch.cuda.current_stream(self.device).synchronize()
            stream.synchronize()

        self.session = _EngineSession(loaded.trt, loaded.engine, context, f"cuda:{self.device}", stream.cuda_stream,
                                      synchronize, self.profile_index, self.record)
        self.tensorrt_version, self.runtime_kind = loaded.version, loaded.runtime_kind

    def _deactivate(self) -> None:
        # The context (in the session) before the engine before the runtime: TensorRT's lifetimes.
        self.session = None
        self._engine = self._runtime = self._stream = None

    def _describe(self):
        return self.session.describe()

    def check(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Validate ``feed``: the profile bounds first (the clearest message), then the contract."""
        self.activate()
        self.session.check_bounds(feed)
        return check_feed(self.inputs, feed)

    def _infer(self, feed):
        return self.session.infer(feed)

    def inspect(self) -> dict:
        """IO tensors, profiles (min/opt/max per dynamic input) and layers of the plan.

        ``layers`` is the engine inspector's JSON (complete when built with DETAILED profiling
        verbosity, as build_engine_plan does); None with a note on the lean runtime, which has
        no inspector, or when the engine returns no layer information.
        """
        self.activate()
        session, trt, engine = self.session, self.session.trt, self.session.engine
        io = [{"name": n, "mode": "input" if n in session.inputs else "output",
               "dtype": getattr(session.dtypes[n], "name", str(session.dtypes[n])),
               "shape": list(session.shapes[n])} for n in session.names]
        dynamic = [n for n in session.inputs if any(d < 0 for d in session.shapes[n])]
        profiles = []
        for index in range(engine.num_optimization_profiles):
            entry = {}
            for n in dynamic:
                low, mid, high = engine.get_tensor_profile_shape(n, index)
                entry[n] = {"min": list(low), "opt": list(mid), "max": list(high)}
            profiles.append(entry)
        layers, note = None, None
        if hasattr(trt, "EngineInspector"):
            inspector = engine.create_engine_inspector()
            text = inspector.get_engine_information(trt.LayerInformationFormat.JSON) if inspector else ""
            if text and text.strip():
                layers = json.loads(text)
            else:
                note = ("the engine returned no layer information; build it with "
                        "profiling_verbosity=DETAILED (trtexec --profilingVerbosity=detailed) to list its layers")
        else:
            note = (f"{trt.__name__} is a {self.runtime_kind or 'lean'} runtime without EngineInspector; install the "
                    "full tensorrt to list the layers")
        return {"tensorrt_version": str(self.tensorrt_version), "runtime": self.runtime_kind, "io_tensors": io, "profiles": profiles,
                "layers": layers, "layers_note": note, "build_record": self.record}

