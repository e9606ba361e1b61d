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

import contextlib

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deploylab.backends.base import OnnxFileRunner, RunnerSettings, TensorSpec
from deploylab.backends.spec import BackendSpec
from deploylab.dtypes import ELEMENT_TYPES, numpy_dtype, spelling_of
from deploylab.errors import DeployLabError, EngineError, require
from deploylab.log import info
from deploylab.onnx_tools import load_onnx
from deploylab.text import first_line, shape_text

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
#: Where each provider's kernels read their tensors: IO binding binds device buffers of that
#: memory type. The TensorRT provider runs on CUDA memory like the CUDA provider.
DEVICE_MEMORY = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "layout", "all")
def _ort():
    return require("onnxruntime", "onnxruntime", "running ONNX models")


ProviderSpec = str | tuple[str, Mapping[str, object]]


def _provider_name(item) -> tuple[str, dict | None]:
    """A provider entry as (full name, options or None); names may be aliases."""
    options = None
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], Mapping):
        item, options = item[0], {str(k): v for k, v in item[1].items()}
    name = PROVIDER_ALIASES.get(item.lower(), item) if isinstance(item, str) else item
    if not (isinstance(name, str) and name.endswith("ExecutionProvider")):
        raise DeployLabError(
            f"unknown ONNX Runtime provider {item!r}; use a provider name such as CPUExecutionProvider, "
            f"an alias ({', '.join(PROVIDER_ALIASES)}) or a (name, options) pair as ONNX Runtime takes it, "
            "e.g. ('tensorrt', {'trt_engine_cache_path': 'cache'})"
        )
    return name, options


def parse_providers(text: str) -> list[ProviderSpec]:
    """``cuda:device_id=0,cpu`` -> ``[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"]``.

    The command line's spelling: providers by comma, each optionally followed by ``:key=value``
    options joined by ``;`` (values stay text: ONNX Runtime parses provider options from strings).
    """
    specs: list[ProviderSpec] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise DeployLabError(f"--providers {text!r} has an empty entry; write e.g. cuda,cpu")
        name, _, rest = part.partition(":")
        if not rest:
            specs.append(_provider_name(name)[0])
            continue
        options = {}
        for pair in rest.split(";"):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise DeployLabError(f"provider option {pair!r} in {part!r} must be key=value, "
                                     "e.g. tensorrt:trt_engine_cache_path=cache;trt_fp16_enable=1")
            options[key.strip()] = value.strip()
        specs.append((_provider_name(name)[0], options))
    return specs


def resolve_providers(requested: list[ProviderSpec] | None) -> tuple[list[ProviderSpec], list[str]]:
    """Map aliases to provider names, drop those this build lacks, always end with CPU.

    Entries are names or ``(name, options)`` pairs, as ``InferenceSession(providers=...)``
    takes them; options pass through unchanged. Returns (providers to use, one note per
    dropped provider).
    """
    ort = _ort()
    available = ort.get_available_providers()
    entries = [_provider_name(item) for item in (requested or ["CPUExecutionProvider"])]
    names = [name for name, _ in entries]
    notes = []
    usable = [(n, o) for n, o in entries if n in available]
    usable_names = [n for n, _ in usable]
    for n in names:
        if n not in available:
            fallback = next((u for u in usable_names if names.index(u) > names.index(n)), "CPUExecutionProvider")
            notes.append(
                f"{n} requested but this onnxruntime build does not have it (available: "
                f"{', '.join(available)}); running on {fallback} instead"
                + (" - install onnxruntime-gpu for CUDA" if n == "CUDAExecutionProvider" else "")
            )
    if "CPUExecutionProvider" not in usable_names:
        usable.append(("CPUExecutionProvider", None))
    return [n if o is None else (n, o) for n, o in usable], notes


def provider_names(providers: list[ProviderSpec]) -> list[str]:
    """The names of provider entries, options dropped."""
    return [p if isinstance(p, str) else p[0] for p in providers]


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
        # A session that fails to load would also log "Could not write a profile" on its way out:
        # the load error says what matters, in one line.
        options.log_severity_level = 4
    return options


def new_session(model: str | Path | bytes, options=None, providers: list[ProviderSpec] | None = None,
                what: str | None = None):
    """The one place deploylab creates an ``onnxruntime.InferenceSession``.

    ``model`` is a file (checked with :func:`deploylab.onnx_tools.load_onnx` first, so a
    missing or corrupt file gets deploylab's message) or serialized bytes; ``providers`` are
    resolved by :func:`resolve_providers` (default CPU) and each dropped one is logged. An
    engine failure raises :class:`EngineError` whose ``engine_text`` is ORT's whole message.
    """
    ort = _ort()
    if not isinstance(model, (bytes, bytearray)):
        load_onnx(model, load_external_data=False)
    usable, notes = resolve_providers(providers)
    for note in notes:
        info(note)
    source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        return ort.InferenceSession(source, options if options is not None else session_options(),
                                    providers=usable)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        label = what or (f"{str(model)!r}" if isinstance(source, str) else "the model")
        raise EngineError(f"ONNX Runtime cannot load {label}: {first_line(exc)}. Check the model with "
                          "`deploylab inspect`, or re-export it", engine_text=str(exc)) from exc


@contextlib.contextmanager
def quiet_default_logger():
    """ORT's process-wide logger at "fatal only" for sessions deploylab cannot give options to (the
    int8 calibrator's): their failures raise with the same text, so the ``[E:onnxruntime ...]`` line is
    noise. Restored to ORT's default, 2 (warning), after."""
    ort = _ort()
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def quiet_run_options():
    """``RunOptions`` under which a failing ``session.run`` raises without also printing ORT's log line
    (``[E:onnxruntime ... ExecuteKernel]``) to stderr: the exception carries the same text."""
    options = _ort().RunOptions()
    options.log_severity_level = 4  # fatal only
    return options


def create_session(path: str | Path, providers: list[ProviderSpec] | None = None, threads: int | None = None):
    """A plain ``InferenceSession`` on ``path`` (validated first), CPU unless told otherwise."""
    return new_session(path, session_options(intra_op_threads=threads), providers)


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
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    new_session(model_path, session_options(optimization=optimization, optimized_model_path=output_path))
    return output_path


class OnnxRuntimeRunner(OnnxFileRunner):
    """An ONNX file run by ONNX Runtime.

    ``providers``: names or aliases (``cpu``, ``cuda``, ...) in order of preference, or
    ``(name, options)`` pairs as ONNX Runtime takes them (e.g. ``("tensorrt",
    {"trt_engine_cache_path": "cache"})``, ``("openvino", {"device_type": "CPU"})``);
    ``intra_op_threads``/``inter_op_threads``: thread pools (None = ORT's default);
    ``optimization``: ``disabled``, ``basic``, ``extended``, ``layout`` or ``all`` (default).
    ``fallbacks`` lists, after activation, each requested provider that is not in use.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        providers: list[ProviderSpec] | None = None,
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
        self.model_bytes: bytes | None = None
        self.fallbacks: list[str] = []
        # Validate the settings now: a bad option should fail where it is written.
        session_options(intra_op_threads, inter_op_threads, optimization)

    def settings(self) -> RunnerSettings:
        return RunnerSettings(int(self.intra_op_threads) if self.intra_op_threads else None, "fp32", self.spinning)

    def with_model(self, model_path: str | Path) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(model_path, self.requested_providers, self.intra_op_threads,
                                 self.inter_op_threads, self.optimization, spinning=self.spinning)

    def clone(self) -> OnnxRuntimeRunner:
        if self.model_bytes is None:
            return self.with_model(self.model_path)
        return OnnxRuntimeRunner.from_bytes(self.model_bytes, self.name, providers=self.requested_providers,
                                            intra_op_threads=self.intra_op_threads,
                                            inter_op_threads=self.inter_op_threads,
                                            optimization=self.optimization, spinning=self.spinning)

    # -- lifecycle
    @classmethod
    def from_bytes(cls, model_bytes: bytes, name: str = "onnxruntime:<bytes>", **settings) -> OnnxRuntimeRunner:
        """A runner on a serialized model held in memory (e.g. a generated test model); same
        settings as the constructor. ``with_model`` still takes files."""
        runner = cls("<bytes>", name=name, **settings)
        runner.model_bytes = bytes(model_bytes)
        return runner

    def _activate(self) -> None:
        usable, self.fallbacks = resolve_providers(self.requested_providers)  # new_session logs these
        options = session_options(self.intra_op_threads, self.inter_op_threads, self.optimization,
                                  spinning=self.spinning, profile_prefix=self.profile_prefix)
        model = self.model_bytes if self.model_bytes is not None else self.model_path
        self.session = new_session(model, options, self.requested_providers,
                                   what=None if self.model_bytes is None else self.name)
        active = self.session.get_providers()
        for name in provider_names(usable):
            if name not in active:
                note = f"{name} could not start on this machine; running on {active[0]} instead"
                self.fallbacks.append(note)
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
            dtype = numpy_dtype(meta.type, "ort")
            if dtype is None:
                raise DeployLabError(f"tensor {meta.name!r} has type {meta.type}, which deploylab does not feed")
            shape = tuple(d if isinstance(d, (int, str)) else None for d in meta.shape)
            return TensorSpec(meta.name, np.dtype(dtype), shape)

        return [spec(m) for m in self.session.get_inputs()], [spec(m) for m in self.session.get_outputs()]

    def _infer(self, feed):
        if getattr(self, "_run_options", None) is None:
            self._run_options = quiet_run_options()
        try:
            outputs = self.session.run(None, feed, self._run_options)
        except Exception as exc:  # a graph that loads can still fail on an input (e.g. an impossible Reshape)
            shapes = ", ".join(f"{n} {shape_text(a.shape)}" for n, a in feed.items())
            raise EngineError(f"ONNX Runtime failed running {self.name} on {shapes}: {first_line(exc)}. The model "
                              "loads but cannot compute this input: check the input shape against "
                              "`deploylab inspect`, or re-export the model", engine_text=str(exc)) from exc
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

        device = DEVICE_MEMORY.get(self.providers[0])
        if device != "cuda":
            raise DeployLabError(
                "CUDA IO binding needs a provider that runs on CUDA memory "
                f"({', '.join(p for p, d in DEVICE_MEMORY.items() if d == 'cuda')}), but this session runs on "
                f"{', '.join(self.providers)}; install onnxruntime-gpu on a machine with an NVIDIA GPU "
                "and create the runner with providers=['cuda', 'cpu'] (or ['tensorrt', 'cuda', 'cpu'])"
            )
        for n, t in inputs.items():
            if not (isinstance(t, torch.Tensor) and t.is_cuda):
                where = f"a {t.device} tensor" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
                raise DeployLabError(f"input {n!r} is {where}; CUDA IO binding takes torch CUDA tensors "
                                     "(x.to('cuda')); use infer() or run_with_iobinding() for host arrays")
            if numpy_dtype(str(t.dtype), "torch") is None:
                bindable = [e.torch for e in ELEMENT_TYPES if e.torch and e.numpy is not None]
                raise DeployLabError(f"input {n!r} has dtype {t.dtype}, which CUDA IO binding cannot bind; "
                                     f"use one of {', '.join(bindable)}")
        self.check({n: np.empty(tuple(t.shape), numpy_dtype(str(t.dtype), "torch")) for n, t in inputs.items()})
        io = self.session.io_binding()
        keep_alive = []  # every bound buffer must outlive run_with_iobinding
        for name, tensor in inputs.items():
            tensor = tensor.contiguous()
            keep_alive.append(tensor)
            io.bind_input(name=name, device_type=device, device_id=tensor.device.index or 0,
                          element_type=numpy_dtype(str(tensor.dtype), "torch"), shape=tuple(tensor.shape),
                          buffer_ptr=tensor.data_ptr())
        device_id = keep_alive[0].device.index or 0
        shapes = self._output_shapes({n: tuple(t.shape) for n, t in inputs.items()})
        results = {}
        for spec in self.outputs:
            shape = shapes[spec.name]
            if copy_to_cpu or shape is None:
                io.bind_output(spec.name, device, device_id)
            else:
                torch_dtype = spelling_of(spec.dtype, "torch")
                out = torch.empty(shape, dtype=getattr(torch, torch_dtype.split(".")[1]),
                                  device=f"cuda:{device_id}")
                keep_alive.append(out)
                io.bind_output(name=spec.name, device_type=device, device_id=device_id,
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


def _engine_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


SPEC = BackendSpec(
    name="onnxruntime",
    reads_onnx=True,
    artifacts=(),
    runner=OnnxRuntimeRunner,
    available=_engine_available,
    thread_option="intra_op_threads",
    providers_option="providers",
    conformance_runner=lambda model_bytes: OnnxRuntimeRunner.from_bytes(model_bytes, "onnxruntime",
                                                                        intra_op_threads=1),
)
