"""ONNX Runtime behind the runner contract: providers with fallback, session options, IO binding.

Providers are tried in the order given. One that this onnxruntime build lacks (CUDA on a
CPU-only wheel) is dropped with a logged line saying what runs instead; one that is in
the build but cannot start (CUDA without a GPU) is reported the same way after the
session is created, from ``session.get_providers()``.

IO binding hands ONNX Runtime ready-made buffers instead of letting ``run`` copy inputs
in and allocate outputs on every call. It pays off when the tensors live on a device
(CUDA): the input never travels through host memory. On CPU, ``run`` already works on
host arrays, so binding saves little beyond an output allocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deploylab.backends.base import OnnxFileRunner, RunnerSettings, TensorSpec
from deploylab.errors import DeployLabError, require
from deploylab.log import info
from deploylab.onnx_tools import load_onnx

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "layout", "all")
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, "tensor(int16)": np.int16,
}
_TORCH_TO_NUMPY = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.int64": np.int64,
                   "torch.int32": np.int32, "torch.uint8": np.uint8, "torch.int8": np.int8,
                   "torch.bool": np.bool_}


def _ort():
    return require("onnxruntime", "onnxruntime", "running ONNX models")


def resolve_providers(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """Map aliases to provider names, drop those this build lacks, always end with CPU.

    Returns (providers to use, one note per dropped provider).
    """
    ort = _ort()
    available = ort.get_available_providers()
    names = []
    for item in requested or ["CPUExecutionProvider"]:
        name = PROVIDER_ALIASES.get(item.lower(), item) if isinstance(item, str) else item
        if not (isinstance(name, str) and name.endswith("ExecutionProvider")):
            raise DeployLabError(
                f"unknown ONNX Runtime provider {item!r}; use a provider name such as "
                f"CPUExecutionProvider or an alias: {', '.join(PROVIDER_ALIASES)}"
            )
        names.append(name)
    notes = []
    usable = [n for n in names if n in available]
    for n in names:
        if n not in available:
            fallback = next((u for u in usable if names.index(u) > names.index(n)), "CPUExecutionProvider")
            notes.append(
                f"{n} requested but this onnxruntime build does not have it (available: "
                f"{', '.join(available)}); running on {fallback} instead"
                + (" - install onnxruntime-gpu for CUDA" if n == "CUDAExecutionProvider" else "")
            )
    if "CPUExecutionProvider" not in usable:
        usable.append("CPUExecutionProvider")
    return usable, notes


def session_options(
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    optimization: str = "all",
    optimized_model_path: str | Path | None = None,
    spinning: bool = True,
    profile_prefix: str | Path | None = None,
):
    """``onnxruntime.SessionOptions`` from plain arguments (threads, optimization level name).

    ``spinning=False`` sets ``session.intra_op.allow_spinning`` to ``"0"``: idle intra-op
    workers then sleep at once instead of spinning for the next call (less speed for
    back-to-back calls of one session, no cores stolen from another engine in between).
    ``profile_prefix`` turns on ORT's profiler (``enable_profiling``): every node's kernel
    time goes to a JSON file whose name starts with it, written by ``session.end_profiling()``.
    """
    ort = _ort()
    if optimization not in OPTIMIZATION_LEVELS:
        raise DeployLabError(
            f"unknown graph optimization level {optimization!r}; use one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT",
                          ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    for value, label in ((intra_op_threads, "intra_op_threads"), (inter_op_threads, "inter_op_threads")):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise DeployLabError(f"{label} must be a non-negative integer (0 = ONNX Runtime's default), got {value!r}")
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def create_session(path: str | Path, providers: list[str] | None = None, threads: int | None = None):
    """A plain ``InferenceSession`` on ``path`` (validated first), CPU unless told otherwise."""
    ort = _ort()
    load_onnx(path, load_external_data=False)
    usable, notes = resolve_providers(providers)
    for note in notes:
        info(note)
    return ort.InferenceSession(str(path), session_options(intra_op_threads=threads), providers=usable)


def save_optimized_model(model_path: str | Path, output_path: str | Path, optimization: str = "extended") -> Path:
    """Write the graph ONNX Runtime optimized offline, at ``basic`` or ``extended`` level.

    Not at ``layout``/``all``: those levels rewrite the graph for the CPU it was made on
    (NCHWc layouts chosen for this machine's vector width, fused contrib ops of this
    onnxruntime version), so the saved file is tied to this machine and version and may
    fail to load or run slower elsewhere. ``extended`` keeps the fusions that are
    portable across CPUs of the same onnxruntime version.
    """
    if optimization not in ("basic", "extended"):
        raise DeployLabError(
            f"saving an optimized model at level {optimization!r} is refused: the 'layout'/'all' "
            "levels apply hardware-specific layout transformations (e.g. NCHWc for this CPU's vector "
            "width), so the file would only be valid on this machine and onnxruntime version; "
            "save at 'extended' and let each machine apply the layout level online"
        )
    ort = _ort()
    load_onnx(model_path, load_external_data=False)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    options = session_options(optimization=optimization, optimized_model_path=output_path)
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return output_path


class OnnxRuntimeRunner(OnnxFileRunner):
    """An ONNX file run by ONNX Runtime.

    ``providers``: names or aliases (``cpu``, ``cuda``, ...) in order of preference;
    ``intra_op_threads``/``inter_op_threads``: thread pools (None = ORT's default);
    ``optimization``: ``disabled``, ``basic``, ``extended``, ``layout`` or ``all`` (default).
    ``fallbacks`` lists, after activation, each requested provider that is not in use.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        optimization: str = "all",
        name: str | None = None,
        spinning: bool = True,
        profile_prefix: str | Path | None = None,
    ):
        super().__init__(model_path, name or f"onnxruntime:{Path(model_path).name}")
        self.spinning = bool(spinning)
        self.profile_prefix = profile_prefix
        self.requested_providers = list(providers or ["CPUExecutionProvider"])
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.optimization = optimization
        self.session = None
        self.fallbacks: list[str] = []
        # Validate the settings now: a bad option should fail where it is written.
        session_options(intra_op_threads, inter_op_threads, optimization)

    def settings(self) -> RunnerSettings:
        return RunnerSettings(int(self.intra_op_threads) if self.intra_op_threads else None, "fp32", self.spinning)

    def with_model(self, model_path: str | Path) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(model_path, self.requested_providers, self.intra_op_threads,
                                 self.inter_op_threads, self.optimization, spinning=self.spinning)

    # -- lifecycle
    def _activate(self) -> None:
        ort = _ort()
        load_onnx(self.model_path, load_external_data=False)
        usable, self.fallbacks = resolve_providers(self.requested_providers)
        options = session_options(self.intra_op_threads, self.inter_op_threads, self.optimization,
                                  spinning=self.spinning, profile_prefix=self.profile_prefix)
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=usable)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise DeployLabError(
                f"ONNX Runtime cannot load {str(self.model_path)!r}: {first}. Check the model with "
                "`deploylab inspect`, or re-export it"
            ) from exc
        active = self.session.get_providers()
        for name in usable:
            if name not in active:
                self.fallbacks.append(f"{name} could not start on this machine; running on {active[0]} instead")
        for note in self.fallbacks:
            info(note)

    def _deactivate(self) -> None:
        self.session = None

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, in priority order."""
        self.activate()
        return list(self.session.get_providers())

    def _describe(self):
        def spec(meta):
            dtype = _ORT_TYPES.get(meta.type)
            if dtype is None:
                raise DeployLabError(f"tensor {meta.name!r} has type {meta.type}, which deploylab does not feed")
            shape = tuple(d if isinstance(d, (int, str)) else None for d in meta.shape)
            return TensorSpec(meta.name, np.dtype(dtype), shape)

        return [spec(m) for m in self.session.get_inputs()], [spec(m) for m in self.session.get_outputs()]

    def _infer(self, feed):
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names, outputs))

    # -- IO binding
    def _output_shapes(self, feed_shapes: Mapping[str, tuple]) -> dict[str, tuple | None]:
        """Output shapes when every dim is fixed or named like an input dim; else None."""
        symbols = {}
        for spec in self.inputs:
            for want, got in zip(spec.shape, feed_shapes[spec.name]):
                if isinstance(want, str):
                    symbols[want] = got
        shapes = {}
        for spec in self.outputs:
            dims = [d if isinstance(d, int) else symbols.get(d) for d in spec.shape]
            shapes[spec.name] = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        return shapes

    def bind_cpu(self, feed: Mapping[str, object]) -> CpuIoBinding:
        """Bind ``feed`` and preallocated outputs once; call ``.run()`` as often as needed."""
        return CpuIoBinding(self, self.check(feed))

    def run_with_iobinding(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """One run through CPU IO binding; the results equal :meth:`infer` bit for bit."""
        return self.bind_cpu(feed).run()

    def run_cuda_iobinding(self, inputs: Mapping[str, object], copy_to_cpu: bool = False):
        """The notes' pattern: bind CUDA tensors by pointer, run, read outputs.

        ``inputs`` maps names to torch CUDA tensors. Outputs are bound to torch CUDA
        tensors allocated here (returned as such), or with ``copy_to_cpu=True`` bound by
        name on the device and fetched with ``copy_outputs_to_cpu()`` as numpy arrays,
        exactly as the notes do. Needs onnxruntime-gpu and an NVIDIA GPU.
        """
        import torch

        if "CUDAExecutionProvider" not in self.providers:
            raise DeployLabError(
                "CUDA IO binding needs the CUDAExecutionProvider, but this session runs on "
                f"{', '.join(self.providers)}; install onnxruntime-gpu on a machine with an NVIDIA GPU "
                "and create the runner with providers=['cuda', 'cpu']"
            )
        for n, t in inputs.items():
            if not (isinstance(t, torch.Tensor) and t.is_cuda):
                where = f"a {t.device} tensor" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
                raise DeployLabError(f"input {n!r} is {where}; CUDA IO binding takes torch CUDA tensors "
                                     "(x.to('cuda')); use infer() or run_with_iobinding() for host arrays")
            if str(t.dtype) not in _TORCH_TO_NUMPY:
                raise DeployLabError(f"input {n!r} has dtype {t.dtype}, which CUDA IO binding cannot bind; "
                                     f"use one of {', '.join(_TORCH_TO_NUMPY)}")
        self.check({n: np.empty(tuple(t.shape), _TORCH_TO_NUMPY[str(t.dtype)]) for n, t in inputs.items()})
        io = self.session.io_binding()
        keep_alive = []  # every bound buffer must outlive run_with_iobinding
        for name, tensor in inputs.items():
            tensor = tensor.contiguous()
            keep_alive.append(tensor)
            io.bind_input(name=name, device_type="cuda", device_id=tensor.device.index or 0,
                          element_type=_TORCH_TO_NUMPY[str(tensor.dtype)], shape=tuple(tensor.shape),
                          buffer_ptr=tensor.data_ptr())
        device_id = keep_alive[0].device.index or 0
        shapes = self._output_shapes({n: tuple(t.shape) for n, t in inputs.items()})
        results = {}
        for spec in self.outputs:
            shape = shapes[spec.name]
            if copy_to_cpu or shape is None:
                io.bind_output(spec.name, "cuda", device_id)
            else:
                torch_dtype = {np.dtype(v): k for k, v in _TORCH_TO_NUMPY.items()}[np.dtype(spec.dtype)]
                out = torch.empty(shape, dtype=getattr(torch, torch_dtype.split(".")[1]),
                                  device=f"cuda:{device_id}")
                keep_alive.append(out)
                io.bind_output(name=spec.name, device_type="cuda", device_id=device_id,
                               element_type=spec.dtype, shape=shape, buffer_ptr=out.data_ptr())
                results[spec.name] = out
        # torch may still be writing the inputs on its stream; ORT runs on its own.
        torch.cuda.current_stream(device_id).synchronize()
        self.session.run_with_iobinding(io)
        io.synchronize_outputs()
        if copy_to_cpu or len(results) < len(self.outputs):
            return dict(zip(self.output_names, io.copy_outputs_to_cpu()))
        del keep_alive
        return results


class CpuIoBinding:
    """Inputs bound as OrtValues and outputs bound to preallocated numpy arrays.

    Created by :meth:`OnnxRuntimeRunner.bind_cpu`. ``run()`` reuses the same buffers on
    every call, which is how a serving loop would use binding; ``update(feed)`` copies
    new values into the bound inputs without re-binding.
    """

    def __init__(self, runner: OnnxRuntimeRunner, feed: dict[str, np.ndarray]):
        ort = _ort()
        self.runner = runner
        self.io = runner.session.io_binding()
        self.inputs = {}
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(array.copy(), "cpu", 0)
            self.io.bind_ortvalue_input(name, value)
            self.inputs[name] = value
        self.outputs: dict[str, np.ndarray | None] = {}
        for name, shape in runner._output_shapes({n: a.shape for n, a in feed.items()}).items():
            spec = next(s for s in runner.outputs if s.name == name)
            if shape is None:  # shape known only after running: let ORT allocate it
                self.io.bind_output(name, "cpu")
                self.outputs[name] = None
            else:
                buffer = np.empty(shape, dtype=spec.dtype)
                self.io.bind_output(name, "cpu", 0, spec.dtype, shape, buffer.ctypes.data)
                self.outputs[name] = buffer

    def update(self, feed: Mapping[str, object]) -> None:
        """Copy new input values (same shapes) into the bound buffers."""
        checked = self.runner.check(feed)
        for name, array in checked.items():
            if array.shape != tuple(self.inputs[name].shape()):
                raise DeployLabError(
                    f"input {name!r} has shape {array.shape}, but {tuple(self.inputs[name].shape())} is bound; "
                    "create a new binding for a new shape"
                )
            self.inputs[name].update_inplace(array)

    def run(self) -> dict[str, np.ndarray]:
        """Run on the bound buffers; returns copies of the outputs."""
        self.runner.session.run_with_iobinding(self.io)
        if any(v is None for v in self.outputs.values()):
            fetched = dict(zip(self.runner.output_names, self.io.copy_outputs_to_cpu()))
            return {n: (fetched[n] if b is None else b.copy()) for n, b in self.outputs.items()}
        return {n: b.copy() for n, b in self.outputs.items()}
