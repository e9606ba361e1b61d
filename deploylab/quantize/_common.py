"""What every quantization step shares: the report, sizes, the model's input, quiet tools."""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.text import first_line

# Bits per element of each ONNX tensor type (int4/uint4 pack two per byte).
_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
                 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4}


@dataclass
class QuantizationReport:
    """What a conversion produced: sizes in bytes, settings, time in seconds, notes.

    ``weight_bytes_*`` counts the constant tensors (initializers and Constant nodes) of
    an ONNX model, or the ``.bin`` file of an OpenVINO IR; for a tiny model such as
    LeNet it shows the compression that the file size (protobuf overhead, names) hides.
    ``ranges`` maps each calibrated tensor to the (min, max) used to quantize it.
    """

    mode: str
    tool: str
    source: str
    output: str
    seconds: float
    file_bytes_before: int
    file_bytes_after: int
    weight_bytes_before: int | None = None
    weight_bytes_after: int | None = None
    settings: dict = field(default_factory=dict)
    method: str | None = None
    num_samples: int | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    op_histogram: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.output)

    @property
    def compression(self) -> float:
        """Weight bytes before / after (file bytes when weights are not counted)."""
        if self.weight_bytes_before and self.weight_bytes_after:
            return self.weight_bytes_before / self.weight_bytes_after
        return self.file_bytes_before / max(self.file_bytes_after, 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        return data

    def format(self) -> str:
        lines = [f"{self.mode} via {self.tool} in {self.seconds:.2f} s: {self.output}"]
        lines.append(f"  file size:   {_kib(self.file_bytes_before)} -> {_kib(self.file_bytes_after)}")
        if self.weight_bytes_before is not None and self.weight_bytes_after is not None:
            lines.append(f"  weights:     {_kib(self.weight_bytes_before)} -> {_kib(self.weight_bytes_after)} "
                         f"({self.compression:.2f}x smaller)")
        if self.method:
            ranges = f", {len(self.ranges)} tensor ranges" if self.ranges else ""
            lines.append(f"  calibration: {self.method} on {self.num_samples} samples{ranges}")
        if self.settings:
            lines.append("  settings:    " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        quantized = {k: v for k, v in self.op_histogram.items()
                     if k in ("QuantizeLinear", "DequantizeLinear", "FakeQuantize", "Cast")
                     or "NBits" in k}
        if quantized:
            lines.append("  nodes:       " + ", ".join(f"{k} x{v}" for k, v in quantized.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def file_bytes(path: str | Path, model=None) -> int:
    """Size on disk of a model: the .onnx plus its external data files, or an IR's .xml + .bin.

    ``model``: the .onnx file as saved or loaded without its external data (its tensors still name
    their data files), so that the file is not read again.
    """
    path = Path(path)
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        return total + path.with_suffix(".bin").stat().st_size
    if path.suffix == ".onnx":
        import onnx

        model = model if model is not None else onnx.load(str(path), load_external_data=False)
        locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
        total += sum((path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file())
    return total


def _tensor_bytes(tensor) -> int:
    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return -(-count * _ELEMENT_BITS.get(tensor.data_type, 32) // 8)


def weight_bytes(model_or_path) -> int:
    """Bytes of all constant tensors (initializers and Constant node values), sub-byte types packed."""
    model = load_onnx_model(model_or_path, load_external_data=False)
    total = sum(_tensor_bytes(t) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += sum(_tensor_bytes(a.t) for a in node.attribute if a.name == "value")
    return total


def op_histogram(model_or_path) -> dict[str, int]:
    model = load_onnx_model(model_or_path, load_external_data=False)
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                     for n in model.graph.node)
    return dict(counts.most_common())


def onnx_report(mode: str, tool: str, onnx_in: str | Path, onnx_out: str | Path, seconds: float, source_model,
                output_model=None, **fields) -> QuantizationReport:
    """The :class:`QuantizationReport` of an ONNX-to-ONNX step, sizes and op counts filled in.

    ``source_model``: the loaded input model (its weights are counted without reading the file
    again); ``output_model``: the output as saved (or loaded without external data), else
    ``onnx_out`` is read. ``fields``: the
    report's other fields (settings, method, notes, ...); an explicit ``weight_bytes_before`` or
    ``op_histogram`` wins over the computed one.
    """
    written = output_model if output_model is not None else load_onnx_model(onnx_out, load_external_data=False)
    computed = {"weight_bytes_before": weight_bytes(source_model), "weight_bytes_after": weight_bytes(written),
                "op_histogram": op_histogram(written)}
    return QuantizationReport(mode=mode, tool=tool, source=str(onnx_in), output=str(onnx_out), seconds=seconds,
                              file_bytes_before=file_bytes(onnx_in), file_bytes_after=file_bytes(onnx_out, written),
                              **{**computed, **fields})


def load_onnx_model(model_or_path, load_external_data: bool = True):
    """A loaded ``onnx.ModelProto``: ``model_or_path`` itself, or the file it names."""
    if isinstance(model_or_path, (str, Path)):
        from deploylab.onnx_tools import load_onnx

        return load_onnx(model_or_path, load_external_data=load_external_data)
    return model_or_path


def single_input(model_or_path):
    """The one graph input of a model (as :class:`deploylab.onnx_tools.TensorInfo`)."""
    from deploylab.onnx_tools import graph_inputs

    model = load_onnx_model(model_or_path, load_external_data=False)
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(f"{t.name}: {t.dtype}[{t.shape_text()}]" for t in inputs) or "none"
        raise DeployLabError(
            f"calibration feeds models with exactly one input; this one has {len(inputs)} ({names}); "
            "quantize it with onnxruntime.quantization directly and a CalibrationDataReader for all inputs"
        )
    if inputs[0].dtype != "float32":
        raise DeployLabError(f"input {inputs[0].name!r} is {inputs[0].dtype}; calibration feeds float32 inputs")
    return inputs[0]


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs.

    Kahn's algorithm, taking ready nodes in their original order so an already sorted
    graph is unchanged. ONNX Runtime's float16 converter appends the input Casts at the
    end of the node list, which ``onnx.checker`` rejects.
    """
    import heapq

    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    users: dict[int, list[int]] = {}
    pending = []
    for i, node in enumerate(nodes):
        deps = {producer[x] for x in node.input if x in producer and producer[x] != i}
        pending.append(len(deps))
        for d in deps:
            users.setdefault(d, []).append(i)
    ready = [i for i, n in enumerate(pending) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, []):
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise DeployLabError("the graph has a cycle; it is not a valid ONNX model")
    graph.ClearField("node")
    graph.node.extend(nodes[i] for i in order)


class _Collector(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if text and text not in self.messages:
            self.messages.append(text)


@contextlib.contextmanager
def quiet_tools(*logger_names: str):
    """Keep ORT/NNCF chatter (root-logger warnings, prints, INFO loggers) off the screen.

    Yields a list that receives the distinct warning messages, for a report's notes.
    """
    root = logging.getLogger()
    collector = _Collector()
    saved_root = (root.handlers[:], root.level)
    root.handlers, root.level = [collector], logging.WARNING
    saved = []
    for name in logger_names:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.level, lg.propagate))
        lg.handlers, lg.propagate = [collector], False
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield collector.messages
    finally:
        root.handlers, root.level = saved_root
        for lg, handlers, level, propagate in saved:
            lg.handlers, lg.level, lg.propagate = handlers, level, propagate


def check_onnx_valid(path: str | Path, output: str | Path | None = None) -> None:
    """Refuse a written model that ``onnx.checker`` (full check) rejects, before it reaches ``output``
    (the path the user asked for; ``path`` is where it was staged): a DeployLabError naming both."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DeployLabError(f"the model made for {str(output or path)!r} fails onnx.checker ({first_line(exc, limit=200)}), "
                             "so it was not written; check the input with `deploylab inspect`") from None
