"""Reading an ONNX file: what is in it, is it valid, what shapes flow through it.

An ONNX file is a description (a protobuf graph of operators from an opset), not a
program; these helpers read that description. ``load_onnx`` is the one place files are
opened, so a missing or corrupt file always gives the same clear error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploylab.dtypes import ELEMENT_TYPES, onnx_type_name
from deploylab.errors import DeployLabError
from deploylab.text import first_line, shape_text

#: ONNX type code -> deploylab's dtype name, read from :data:`deploylab.dtypes.ELEMENT_TYPES`.
ONNX_DTYPE_NAMES = {t.onnx: t.name for t in ELEMENT_TYPES}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, dtype name and shape (ints, or names for symbolic dims)."""

    name: str
    dtype: str
    shape: tuple

    def shape_text(self) -> str:
        return shape_text(self.shape)


@dataclass
class OnnxSummary:
    """What an ONNX file holds, as :func:`summarize_onnx` reads it."""

    path: str
    ir_version: int
    opset: int
    opsets: dict[str, int]
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_histogram: dict[str, int]
    node_count: int
    parameter_count: int
    file_size_bytes: int
    external_data_bytes: int = 0
    symbolic_dims: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A readable multi-line report."""
        size = (self.file_size_bytes + self.external_data_bytes) / 2**20
        lines = [
            f"file:        {self.path} ({size:.2f} MiB"
            + (", weights in external data)" if self.external_data_bytes else ")"),
            f"producer:    {self.producer}",
            f"IR version:  {self.ir_version}",
            f"opset:       {self.opset}"
            + "".join(f", {d}:{v}" for d, v in self.opsets.items() if d not in ("", "ai.onnx")),
            f"parameters:  {self.parameter_count:,}",
            f"nodes:       {self.node_count}",
        ]
        for title, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            lines.append(f"{title}:")
            lines += [f"  {t.name}: {t.dtype}[{t.shape_text()}]" for t in tensors]
        if self.symbolic_dims:
            lines.append(f"symbolic dims: {', '.join(self.symbolic_dims)}")
        lines.append("operators:")
        lines += [f"  {op:<24}{n:>5}" for op, n in self.op_histogram.items()]
        return "\n".join(lines)


def load_onnx(path: str | Path, load_external_data: bool = True):
    """Load an ONNX model, turning every way a file can be wrong into one clear error."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DeployLabError(
            f"ONNX file {str(path)!r} does not exist; export one first, e.g. "
            "`deploylab export lenet -o lenet.onnx`"
        )
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, OSError for missing external data, ...
        detail = first_line(exc, limit=200)
        raise DeployLabError(
            f"{str(path)!r} is not a readable ONNX model ({detail}); re-export it, and keep any "
            ".onnx.data file next to it"
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise DeployLabError(
            f"{str(path)!r} parsed as an empty ONNX model (no nodes, no outputs): the file is "
            "corrupt or not ONNX; re-export it"
        )
    return model


def _tensor_info(value_info) -> TensorInfo:
    ttype = value_info.type.tensor_type
    dims = tuple(
        d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
        for d in ttype.shape.dim
    )
    return TensorInfo(value_info.name, onnx_type_name(ttype.elem_type), dims)


def graph_inputs(model) -> list[TensorInfo]:
    """Real inputs of the graph (initializers listed as inputs by old exporters are skipped)."""
    initializers = {i.name for i in model.graph.initializer}
    return [_tensor_info(v) for v in model.graph.input if v.name not in initializers]


def graph_outputs(model) -> list[TensorInfo]:
    return [_tensor_info(v) for v in model.graph.output]


def default_opset(model) -> int:
    """Version of the default ("" or "ai.onnx") domain the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _count_parameters(model) -> int:
    total = 0
    for init in model.graph.initializer:
        total += int(np.prod(init.dims)) if len(init.dims) else 1
    for node in model.graph.node:  # constants folded into Constant nodes count too
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.dims:
                    total += int(np.prod(attr.t.dims))
    return total


def summarize_onnx(path: str | Path) -> OnnxSummary:
    """Read ``path`` and report opset, IR version, inputs/outputs, op histogram, size."""
    path = Path(path)
    model = load_onnx(path, load_external_data=False)
    external = sum(
        (path.parent / e.value).stat().st_size
        for e in {
            e.value: e for init in model.graph.initializer for e in init.external_data if e.key == "location"
        }.values()
        if (path.parent / e.value).is_file()
    )
    histogram = Counter(
        (n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}") for n in model.graph.node
    )
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    symbolic = sorted({d for t in inputs + outputs for d in t.shape if isinstance(d, str)})
    return OnnxSummary(
        path=str(path),
        ir_version=int(model.ir_version),
        opset=default_opset(model),
        opsets={e.domain or "ai.onnx": int(e.version) for e in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs,
        outputs=outputs,
        op_histogram=dict(histogram.most_common()),
        node_count=len(model.graph.node),
        parameter_count=_count_parameters(model),
        file_size_bytes=path.stat().st_size,
        external_data_bytes=external,
        symbolic_dims=symbolic,
    )


@dataclass
class CheckResult:
    """Outcome of :func:`check_onnx`: checker verdict and what shape inference found."""

    valid: bool
    error: str | None
    inferred_value_infos: int
    intermediate_tensors: int
    shapes: dict[str, tuple]

    @property
    def fully_inferred(self) -> bool:
        return self.inferred_value_infos >= self.intermediate_tensors


def check_onnx(path: str | Path) -> CheckResult:
    """Run ``onnx.checker`` (full check) and shape inference; never raises for an invalid model.

    ``shapes`` maps every tensor whose shape inference could determine it to that shape,
    which is how a reader sees the data flowing through the graph.
    """
    import onnx

    model = load_onnx(path)
    error = None
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        error = str(exc).strip().splitlines()[0]
    if error is None and not model.graph.output:  # the checker accepts it; no engine can run it
        error = "the graph has no outputs: nothing it computes can be read"
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except onnx.shape_inference.InferenceError as exc:
        error = error or str(exc).strip().splitlines()[0]
        inferred = model
    infos = list(inferred.graph.value_info)
    intermediate = {o for n in model.graph.node for o in n.output} - {o.name for o in model.graph.output}
    shapes = {v.name: _tensor_info(v).shape for v in infos}
    shapes.update({t.name: t.shape for t in graph_inputs(model) + graph_outputs(inferred)})
    typed = intermediate & {v.name for v in infos}  # a file may carry value_info for other tensors too
    return CheckResult(error is None, error, len(typed), len(intermediate), shapes)


# ---------------------------------------------------------------- deploylab metadata
METADATA_PREFIX = "deploylab."


def set_metadata(model, values: dict[str, str]) -> None:
    """Write ``values`` into ``model.metadata_props`` (in memory), replacing keys already there."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``deploylab.*`` metadata of an artifact, without the prefix ({} when there is none).

    An ONNX file carries it in ``metadata_props``. OpenVINO's ONNX frontend copies those into
    the model's ``rt_info["framework"]``, which ``save_model`` writes into the IR's ``.xml``
    (OpenVINO 2026.4; NNCF keeps it): an IR converted from a deploylab export carries it too.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        model = load_onnx(path, load_external_data=False)
        return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props
                if p.key.startswith(METADATA_PREFIX)}
    if path.suffix.lower() == ".xml" and path.is_file():
        import xml.etree.ElementTree as ElementTree

        try:
            framework = ElementTree.parse(path).getroot().find("./rt_info/framework")
        except (ElementTree.ParseError, OSError) as exc:
            raise DeployLabError(f"{str(path)!r} is not a readable OpenVINO IR ({exc}); rebuild it") from exc
        if framework is None:
            return {}
        return {e.tag[len(METADATA_PREFIX):]: e.get("value", "") for e in framework
                if e.tag.startswith(METADATA_PREFIX)}
    return {}


def preprocessing_for_artifact(path: str | Path):
    """(ImagePreprocessing or None, what it is and where it came from) for a model file."""
    import json

    from deploylab.data.preprocess import ImagePreprocessing

    metadata = read_metadata(path)
    text = metadata.get("preprocessing")
    if text is None:
        return None, f"{Path(path).name} carries no deploylab preprocessing metadata"
    try:
        prep = ImagePreprocessing.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError, KeyError, DeployLabError) as exc:
        raise DeployLabError(f"{str(path)!r} has malformed preprocessing metadata ({exc}); re-export it "
                             "with deploylab export, or remove the deploylab.preprocessing entry") from exc
    return prep, f"{prep.name} (from {Path(path).name}'s metadata)"
