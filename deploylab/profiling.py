"""Where the time goes, layer by layer, and what precision each layer really runs in.

- ONNX Runtime: the session's own profiler (``SessionOptions.enable_profiling``) records
  every node's kernel time per run in a JSON trace; :func:`profile_onnxruntime` runs the
  model, reads the trace and keeps the timed runs (warm-up runs dropped).
- OpenVINO: the compiled model's *runtime model* (``compiled.get_runtime_model()``) is the
  graph the CPU plugin executes after fusing and choosing kernels; each of its layers
  carries ``layerType``, ``runtimePrecision`` and the kernel (``primitiveType``, e.g.
  ``brgconv_avx512_amx_bf16``). With ``PERF_COUNT`` on, ``request.get_profiling_info()``
  adds each layer's time in the last inference. :func:`profile_openvino` collects both.

The precision a compiled model *reports* (``INFERENCE_PRECISION_HINT``) is the resolved
hint; the runtime model says what each layer does (an int8 model's convolutions run
``i8``, its first and last layers often stay ``f32``).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path


from deploylab.batching import batch_feed, check_batch_bounds
from deploylab.bench.checks import positive_int
from deploylab.errors import DeployLabError

PROFILE_BACKENDS = ("onnxruntime", "openvino")


@dataclass
class LayerProfile:
    """One executed layer (ORT: a graph node; OpenVINO: a layer of the runtime model).

    ``time_us``: mean time per timed run; ``precision``: what it computes in (OpenVINO's
    ``runtimePrecision``; ORT does not report one); ``kernel``: ORT's execution provider
    or OpenVINO's primitive type.
    """

    name: str
    op_type: str
    time_us: float
    precision: str | None = None
    kernel: str | None = None


@dataclass
class ProfileReport:
    """Per-layer times of one model on one engine, averaged over ``runs`` timed runs."""

    backend: str
    model: str
    runs: int
    batch_size: int
    layers: list[LayerProfile]
    settings: dict = field(default_factory=dict)

    @property
    def total_us(self) -> float:
        """Sum of the layers' times per run (engines overlap little on a CPU; it is close to the run time)."""
        return float(sum(layer.time_us for layer in self.layers))

    def by_op_type(self) -> list[tuple[str, int, float, float]]:
        """``(op type, layers, microseconds per run, share of the total)``, slowest first."""
        totals: dict[str, list] = {}
        for layer in self.layers:
            entry = totals.setdefault(layer.op_type, [0, 0.0])
            entry[0] += 1
            entry[1] += layer.time_us
        total = self.total_us or 1.0
        rows = [(op, count, us, us / total) for op, (count, us) in totals.items()]
        return sorted(rows, key=lambda row: -row[2])

    def precisions(self) -> dict[str, int]:
        """How many layers run in each precision (OpenVINO; empty for ONNX Runtime)."""
        return dict(Counter(layer.precision for layer in self.layers if layer.precision))

    def slowest(self, count: int = 10) -> list[LayerProfile]:
        return sorted(self.layers, key=lambda layer: -layer.time_us)[:count]

    def format(self, top: int = 10) -> str:
        from deploylab.env import machine_line

        lines = [machine_line(),
                 f"{self.backend} profile of {self.model}, batch {self.batch_size}, mean of {self.runs} timed runs "
                 f"({', '.join(f'{k}={v}' for k, v in self.settings.items())})",
                 f"{len(self.layers)} layers executed, {self.total_us / 1000:.2f} ms per run in layers",
                 "", f"{'op type':<28} {'layers':>6} {'ms/run':>8} {'share':>6}"]
        for op, count, us, share in self.by_op_type()[:top]:
            lines.append(f"{op:<28} {count:6d} {us / 1000:8.3f} {share:6.1%}")
        if self.precisions():
            lines.append("")
            lines.append("layers by runtime precision: " + ", ".join(
                f"{p}: {n}" for p, n in sorted(self.precisions().items(), key=lambda kv: -kv[1])))
        lines += ["", f"slowest {min(top, len(self.layers))} layers:"]
        for layer in self.slowest(top):
            extra = " ".join(x for x in (layer.precision, layer.kernel) if x)
            lines.append(f"  {layer.time_us / 1000:7.3f} ms  {layer.op_type:<20} {layer.name[:48]:<48} {extra}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "model": self.model, "runs": self.runs, "batch_size": self.batch_size,
                "settings": self.settings, "total_us": self.total_us,
                "by_op_type": [dict(zip(("op_type", "layers", "us", "share"), row)) for row in self.by_op_type()],
                "precisions": self.precisions(), "layers": [asdict(layer) for layer in self.layers]}


def _feed(runner, batch_size: int, feed):
    if feed is None:
        check_batch_bounds(runner, batch_size)
        feed = batch_feed(runner, batch_size)
    return runner.check(feed)


def profile_onnxruntime(model_path: str | Path, *, batch_size: int = 1, runs: int = 10, warmup: int = 2,
                        threads: int | None = None, optimization: str = "all", feed=None) -> ProfileReport:
    """Per-node kernel times from ONNX Runtime's profiler, warm-up runs left out.

    The trace is written to a temporary folder and deleted; the report keeps the mean
    per timed run of every node's ``*_kernel_time`` event.
    """
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner

    runs, batch_size = positive_int(runs, "runs"), positive_int(batch_size, "batch size")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise DeployLabError(f"warmup must be a non-negative integer, got {warmup!r}")
    with tempfile.TemporaryDirectory(prefix="deploylab-profile-") as tmp:
        runner = OnnxRuntimeRunner(model_path, intra_op_threads=threads, optimization=optimization,
                                   profile_prefix=Path(tmp) / "ort")
        runner.activate()
        checked = _feed(runner, batch_size, feed)
        for _ in range(warmup + runs):
            runner.infer(checked)  # an engine failure is one EngineError, not ORT's raw text
        trace = Path(runner.session.end_profiling())
        events = json.loads(trace.read_text())
    run_ends = sorted(e["ts"] + e["dur"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(run_ends) < warmup + runs:
        raise DeployLabError(f"ONNX Runtime's trace holds {len(run_ends)} runs, expected {warmup + runs}")
    start = run_ends[warmup - 1] if warmup else -1
    per_node: dict[str, list] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if event["ts"] <= start:
            continue
        args = event.get("args", {})
        name = event["name"][: -len("_kernel_time")]
        entry = per_node.setdefault(name, [args.get("op_name", "?"), 0.0, args.get("provider")])
        entry[1] += float(event["dur"])
    layers = [LayerProfile(name, op, total / runs, None, (provider or "").replace("ExecutionProvider", "") or None)
              for name, (op, total, provider) in per_node.items()]
    return ProfileReport("onnxruntime", Path(model_path).name, runs, batch_size, layers,
                         {"threads": threads or "default", "optimization": optimization})


def _rt(info, key: str):
    value = info.get(key) if hasattr(info, "get") else None
    if value is None:
        try:
            value = info[key]
        except (KeyError, IndexError, TypeError):
            return None
    for attr in ("astype",):
        if hasattr(value, attr):
            try:
                return value.astype(str)
            except Exception:  # noqa: BLE001 - OVAny of another type: fall back to str()
                break
    return str(value.value) if hasattr(value, "value") else str(value)


def openvino_runtime_layers(compiled) -> list[dict]:
    """The layers a compiled OpenVINO model executes: name, layerType, runtimePrecision, primitiveType,
    outputPrecisions and the original layers fused into each (from ``get_runtime_model()``)."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layers.append({
            "name": op.get_friendly_name(),
            "layer_type": _rt(info, "layerType"),
            "runtime_precision": _rt(info, "runtimePrecision"),
            "primitive": _rt(info, "primitiveType"),
            "output_precisions": _rt(info, "outputPrecisions"),
            "original": _rt(info, "originalLayersNames"),
        })
    return layers


_SKIP_OV_TYPES = {"Parameter", "Result", "Input", "Output", "Constant"}


def profile_openvino(model_path: str | Path, *, batch_size: int = 1, runs: int = 10, warmup: int = 2,
                     threads: int | None = None, precision: str | None = "fp32", feed=None) -> ProfileReport:
    """Per-layer times (``PERF_COUNT``) and runtime precisions of the model OpenVINO's CPU plugin runs.

    ``precision``: as for :class:`deploylab.backends.openvino.OpenVinoRunner` (None = the
    device default, e.g. bf16 on a CPU with AMX or AVX-512 BF16). The layer times are
    averaged over ``runs`` inferences (each read after its run).
    """
    from deploylab.backends.openvino import OpenVinoRunner

    runs, batch_size = positive_int(runs, "runs"), positive_int(batch_size, "batch size")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise DeployLabError(f"warmup must be a non-negative integer, got {warmup!r}")
    runner = OpenVinoRunner(model_path, precision=precision, threads=threads, perf_count=True)
    runner.activate()
    checked = _feed(runner, batch_size, feed)
    for _ in range(warmup):
        runner.request.infer(checked)
    totals: dict[str, list] = {}
    for _ in range(runs):
        runner.request.infer(checked)
        for item in runner.request.get_profiling_info():
            if str(item.status).endswith("NOT_RUN") or item.node_type in _SKIP_OV_TYPES:
                continue
            entry = totals.setdefault(item.node_name, [item.node_type, 0.0, item.exec_type])
            entry[1] += item.real_time.total_seconds() * 1e6
    runtime = {layer["name"]: layer for layer in openvino_runtime_layers(runner.compiled)}
    layers = []
    for name, (op, total, kernel) in totals.items():
        precision_here = (runtime.get(name) or {}).get("runtime_precision")
        layers.append(LayerProfile(name, op, total / runs, precision_here, kernel))
    return ProfileReport("openvino", Path(model_path).name, runs, batch_size, layers,
                         {"threads": threads or "default", "precision": precision or "device default",
                          "inference_precision": runner.inference_precision})


def profile_model(model_path: str | Path, backend: str, **kwargs) -> ProfileReport:
    """:func:`profile_onnxruntime` or :func:`profile_openvino` by name, with the file checked first."""
    path = Path(model_path)
    if backend not in PROFILE_BACKENDS:
        raise DeployLabError(f"cannot profile with backend {backend!r}; use one of {', '.join(PROFILE_BACKENDS)}")
    if not path.is_file():
        raise DeployLabError(f"model file {str(path)!r} does not exist")
    if backend == "onnxruntime":
        if path.suffix.lower() != ".onnx":
            raise DeployLabError(f"ONNX Runtime profiles .onnx files, not {path.name!r}; "
                                 "profile an OpenVINO IR with --backend openvino")
        kwargs.pop("precision", None)
        return profile_onnxruntime(path, **kwargs)
    if path.suffix.lower() not in (".onnx", ".xml"):
        raise DeployLabError(f"OpenVINO profiles .onnx or .xml files, not {path.name!r}")
    return profile_openvino(path, **kwargs)


def optimized_graph_changes(model_path: str | Path, optimization: str = "all") -> dict:
    """What ONNX Runtime's graph optimizer did to a model, from the graph it really runs.

    Saves the optimized graph (``optimized_model_filepath``) to a temporary file and
    compares it with the input: op histograms (fused ops appear as new types such as
    ``FusedConv``), ``inserted_casts`` (the ``InsertedPrecisionFreeCast_*`` nodes ORT adds
    where its CPU kernels lack a type, e.g. fp16 weights cast to fp32 for an fp32 Conv) and
    the initializers' dtypes before and after (casts of constants are folded into fp32
    weights at the higher levels). Returns ``{"before", "after", "added", "removed"}`` (op
    type -> count), ``"inserted_casts"`` and ``"initializers_before"/"initializers_after"``
    (dtype name -> count).
    """
    import onnx

    from deploylab.backends.onnxruntime import new_session, session_options
    from deploylab.onnx_tools import load_onnx

    def dtypes(model) -> dict[str, int]:
        return dict(Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer))

    path = Path(model_path)
    if not path.is_file():
        raise DeployLabError(f"model file {str(path)!r} does not exist")
    original = load_onnx(path, load_external_data=False)
    before = Counter(node.op_type for node in original.graph.node)
    with tempfile.TemporaryDirectory(prefix="deploylab-opt-") as tmp:
        # Only to look at: at "layout"/"all" the saved graph is tied to this CPU and ORT version.
        out = Path(tmp) / "optimized.onnx"
        options = session_options(optimization=optimization, optimized_model_path=out)
        options.log_severity_level = 3  # ORT warns that such a file is hardware specific: known, and temporary
        new_session(path, options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(out))
    after = Counter(node.op_type for node in optimized.graph.node)
    added = {op: after[op] - before.get(op, 0) for op in after if after[op] > before.get(op, 0)}
    removed = {op: before[op] - after.get(op, 0) for op in before if before[op] > after.get(op, 0)}
    # Only Cast nodes: at "layout"/"all" ORT also names NCHWc nodes after their (cast) inputs.
    inserted = sum(node.op_type == "Cast" and node.name.startswith("InsertedPrecisionFreeCast")
                   for node in optimized.graph.node)
    return {"before": dict(before), "after": dict(after), "added": added, "removed": removed,
            "inserted_casts": inserted, "initializers_before": dtypes(original),
            "initializers_after": dtypes(optimized)}
