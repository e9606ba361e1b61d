"""NVIDIA Triton Inference Server model repositories: one model file -> a model folder Triton serves.

:func:`write_triton_repo` writes ``<repo>/<name>/config.pbtxt`` and ``<repo>/<name>/1/model.<ext>``
for Triton's ONNX Runtime, OpenVINO and TensorRT backends. The config is derived from the model
(inputs, outputs, data types, dims with -1 where dynamic, the batch range), written by a small
formatter, parsed back with Triton's own protobuf (tritonclient's ``model_config_pb2``) and checked
by the rules Triton loads a model by, before anything is written.

What Triton expects, read in its sources (triton-inference-server, August 2026): server
``docs/user_guide/model_repository.md``: numbered version folders; default files ``model.onnx`` (a
folder ``model.onnx/`` holding ``model.onnx`` and the rest for a model with external data),
``model.xml`` + ``model.bin``, ``model.plan``. backend ``README.md``: the ``backend`` setting
selects the backend (``onnxruntime``, ``openvino``, ``tensorrt``), ``platform`` is the older field;
core ``src/model_config_utils.cc`` fills one from the other (``tensorrt`` <-> ``tensorrt_plan``,
``onnxruntime`` <-> ``onnxruntime_onnx``) and refuses a pair that disagrees. Plans get both
(model_repository.md's examples show ``tensorrt_plan``), the others ``backend`` only. server
``docs/user_guide/model_configuration.md``: with max_batch_size > 0 the full shape is ``[-1] + dims``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError, require
from deploylab.paths import WRITE_ERRNOS, cannot_write, partial_name, sha256_file

#: max_batch_size for a batch dim without upper bound (an ONNX file's symbolic batch dim). ONNX Runtime's
#: backend would pick 4 (``default-max-batch-size``, onnxruntime_backend README); 32 lets the dynamic
#: batcher form useful CPU batches. ``max_batch`` chooses another.
DEFAULT_MAX_BATCH = 32

#: The Triton container release the commands name. Server README (main, August 2026): "The current release
#: is version 2.71.0 and corresponds to the 26.07 container release on NVIDIA GPU Cloud (NGC)", run as
#: ``nvcr.io/nvidia/tritonserver:26.07-py3``, perf_analyzer from ``...:26.07-py3-sdk``. (tritonclient 2.73.0,
#: which validates configs here, is the 26.09 train, commit e1db8a6; the fields written are older than both.)
TRITON_RELEASE = "26.07"

#: deploylab's dtype names (numpy's, :mod:`deploylab.dtypes`) -> Triton's ``DataType`` enum names
#: (``model_config.proto``). Types Triton has no name for (float8, int4) are refused.
TRITON_DATA_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}

# Triton refuses an empty name, ".." and a "/" (core ModelRepositoryManager's ValidateModelName); the
# name is also the model's folder and its URL path (/v2/models/NAME), so deploylab keeps to these.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def triton_data_type(dtype) -> str:
    """Triton's name (``TYPE_FP32``) for a numpy dtype or a deploylab dtype name (``bfloat16``)."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in TRITON_DATA_TYPES:
        raise DeployLabError(f"Triton has no data type for {name!r}; it takes "
                             f"{', '.join(sorted(TRITON_DATA_TYPES))}: convert the model's inputs and outputs")
    return TRITON_DATA_TYPES[name]


# ---------------------------------------------------------------- what the model says
@dataclass(frozen=True)
class ModelTensor:
    """An input or output as the model declares it: ``dims`` are the full dims (-1 where dynamic);
    ``example`` a size per dim where the model names one (a profile's opt shape, a bound), else None."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    example: tuple[int | None, ...]


@dataclass(frozen=True)
class ModelDescription:
    """Inputs, outputs and the bounds ``(low, high)`` of a dynamic dim 0 (``high`` None: unbounded)."""

    inputs: tuple[ModelTensor, ...]
    outputs: tuple[ModelTensor, ...]
    batch_bounds: tuple[int, int | None] = (1, None)

    def batch_kind(self) -> tuple[str, str]:
        """("dynamic" | "fixed" | "none", why): whether Triton can batch along dim 0."""
        scalars = [t.name for t in self.inputs + self.outputs if not t.dims]
        fixed = [t for t in self.inputs if t.dims and t.dims[0] != -1]
        unbatched = [t for t in self.outputs if t.dims and t.dims[0] != -1]
        if scalars:
            return "none", f"{scalars[0]!r} is a scalar, so there is no batch dim"
        if fixed:
            return "fixed", f"fixed batch of {fixed[0].dims[0]} (input {fixed[0].name!r})"
        if unbatched:
            return "none", f"output {unbatched[0].name!r} has a fixed first dim of {unbatched[0].dims[0]}, no batch dim"
        return "dynamic", ""


def _tensor(name: str, dtype_name: str, dims: Sequence, example: Sequence | None = None) -> ModelTensor:
    sizes = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, (int, np.integer)) and dim == 0:
            raise DeployLabError(f"{name!r} has a dim of size 0 (axis {axis}); Triton refuses empty dims")
        sizes.append(int(dim) if isinstance(dim, (int, np.integer)) and dim > 0 else -1)
    example = tuple(example) if example is not None else tuple(d if d > 0 else None for d in sizes)
    return ModelTensor(name, triton_data_type(dtype_name), tuple(sizes), example)


def _onnx_external_files(model) -> list[str]:
    """The external-data locations of every tensor in ``model`` (initializers, attribute tensors,
    subgraphs), in first-seen order."""
    from onnx.external_data_helper import ExternalDataInfo

    locations: dict[str, None] = {}
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop(0)
        tensors = list(graph.initializer)
        for attribute in (a for node in graph.node for a in node.attribute):
            tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
            graphs += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
        for tensor in tensors:
            if tensor.data_location == tensor.EXTERNAL:
                locations.setdefault(ExternalDataInfo(tensor).location)
    return list(locations)


def describe_onnx(path: Path) -> ModelDescription:
    """An ONNX file's inputs and outputs (the graph only; external weights are not read)."""
    from deploylab.onnx_tools import graph_inputs, graph_outputs, load_onnx

    model = load_onnx(path, load_external_data=False)
    inputs = tuple(_tensor(t.name, t.dtype, t.shape) for t in graph_inputs(model))
    outputs = tuple(_tensor(t.name, t.dtype, t.shape) for t in graph_outputs(model))
    return ModelDescription(inputs, outputs)


def describe_openvino(path: Path) -> ModelDescription:
    """An OpenVINO IR's inputs and outputs as ``Core().read_model`` reads them, bounds included."""
    from deploylab.backends.openvino import read_model
    from deploylab.dtypes import element_type

    model = read_model(path)
    lows, highs = [], []

    def tensor(port, is_input: bool) -> ModelTensor:
        row = element_type(port.get_element_type().get_type_name(), "openvino")
        dims, example = [], []
        for axis, dim in enumerate(port.get_partial_shape()):
            dims.append(dim.get_length() if dim.is_static else -1)
            example.append(dim.get_length() if dim.is_static else max(dim.get_min_length(), 1))
            if is_input and axis == 0 and not dim.is_static:
                lows.append(max(dim.get_min_length(), 1))
                highs.extend([dim.get_max_length()] if dim.get_max_length() >= 0 else [])  # -1: unbounded
        return _tensor(port.get_any_name(), row.name if row else str(port.get_element_type()), dims, example)

    inputs, outputs = tuple(tensor(p, True) for p in model.inputs), tuple(tensor(p, False) for p in model.outputs)
    return ModelDescription(inputs, outputs, (max(lows, default=1), min(highs, default=None)))


def _plan_onnx_dtypes(plan: Path, record: dict) -> dict[str, str]:
    """name -> dtype of the plan's inputs and outputs, read from the ONNX model its record names (the
    record keeps dims, not types; deploylab builds keep the ONNX model's I/O types)."""
    from deploylab.onnx_tools import graph_inputs, graph_outputs, load_onnx

    source = record.get("onnx") or {}
    recorded = Path(str(source.get("path", "")))
    for candidate in (recorded, plan.parent / recorded.name):
        if recorded.name and candidate.is_file() and sha256_file(candidate) == source.get("sha256"):
            model = load_onnx(candidate, load_external_data=False)
            dtypes = {t.name: t.dtype for t in graph_inputs(model) + graph_outputs(model)}
            for name in {**(record.get("inputs") or {}), **(record.get("outputs") or {})}:
                if name not in dtypes:
                    raise DeployLabError(f"{plan.name}'s build record names tensor {name!r}, which {candidate.name} "
                                         "does not have; rebuild the plan")
            return dtypes
    raise DeployLabError(
        f"{plan.name}'s build record gives its inputs' dims but not their data types, which come from the ONNX "
        f"model it was built from, {str(recorded)!r}: that file is missing or changed (sha256 differs); put it "
        f"back, or rebuild the plan with `deploylab build MODEL.onnx --backend tensorrt -o {plan.name}`")


def describe_tensorrt(path: Path) -> ModelDescription:
    """A TensorRT plan's inputs, outputs and batch range from the build record deploylab writes beside it
    (reading the plan needs TensorRT and a GPU). Profile 0: model_config.proto, ModelInstanceGroup.profile,
    "If not specified, the server will select the first optimization profile by default"."""
    from deploylab.backends.tensorrt.record import read_sidecar, sidecar_path

    record = read_sidecar(path)
    where = sidecar_path(path)
    if record is None:
        why = ("describes another plan (its size or sha256 differ)" if where.exists()
               else f"is missing: {path.name} has no deploylab build record")
        raise DeployLabError(
            f"{where.name} {why}. Triton's config.pbtxt needs the plan's inputs, outputs and batch range, and "
            "reading them from the plan itself needs TensorRT and a GPU; build the plan with `deploylab build "
            f"MODEL.onnx --backend tensorrt -o {path.name}` (it writes the record beside the plan), or write "
            "config.pbtxt by hand")
    dtypes = _plan_onnx_dtypes(path, record)
    profile = (record.get("profiles") or [{}])[0]
    lows, highs, inputs = [], [], []
    for name, dims in (record.get("inputs") or {}).items():
        example = [d if isinstance(d, int) and d > 0 else None for d in dims]
        if None in example:
            if name not in profile:
                raise DeployLabError(f"{where.name} gives input {name!r} dynamic dims {dims} but no profile for it; "
                                     f"rebuild the plan with `deploylab build ... --min/--opt/--max`")
            example = list(profile[name]["opt"])
            if example and not (isinstance(dims[0], int) and dims[0] > 0):
                lows.append(int(profile[name]["min"][0]))
                highs.append(int(profile[name]["max"][0]))
        inputs.append(_tensor(name, dtypes[name], dims, example))
    outputs = [_tensor(n, dtypes[n], d) for n, d in (record.get("outputs") or {}).items()]
    return ModelDescription(tuple(inputs), tuple(outputs), (max(lows, default=1), min(highs, default=None)))


# ---------------------------------------------------------------- copying the model's files
def _copy_onnx(source: Path, version_dir: Path) -> list[Path]:
    from deploylab.onnx_tools import load_onnx

    external = _onnx_external_files(load_onnx(source, load_external_data=False))
    if not external:
        shutil.copyfile(source, version_dir / "model.onnx")
        return [version_dir / "model.onnx"]
    # A model in several files is a folder named model.onnx holding model.onnx and the others
    # (server docs/user_guide/model_repository.md, "ONNX Models").
    folder = version_dir / "model.onnx"
    folder.mkdir()
    written = [folder / "model.onnx"]
    shutil.copyfile(source, written[0])
    for location in external:
        relative = Path(location)
        origin = source.parent / relative
        if relative.is_absolute() or ".." in relative.parts or not origin.is_file():
            raise DeployLabError(
                f"{source.name} keeps weights in external data {location!r}, which is "
                f"{'missing' if not origin.is_file() else 'outside its folder'}; keep the data files beside the "
                "model under relative names (re-export it), or fold them in with onnx.load + onnx.save")
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, folder / relative)
        written.append(folder / relative)
    return written


def _copy_openvino(source: Path, version_dir: Path) -> list[Path]:
    weights = source.with_suffix(".bin")
    if not weights.is_file():
        raise DeployLabError(f"the OpenVINO IR {str(source)!r} has no {weights.name} beside it; keep the .xml and "
                             "its .bin together (rebuild with `deploylab build MODEL.onnx --backend openvino`)")
    # OpenVINO reads model.bin beside model.xml; model.xml is the backend's default file name
    # (core src/constants.h kOpenVINORuntimeOpenVINOFilename).
    for origin, target in ((source, version_dir / "model.xml"), (weights, version_dir / "model.bin")):
        shutil.copyfile(origin, target)
    return [version_dir / "model.xml", version_dir / "model.bin"]


def _copy_plan(source: Path, version_dir: Path) -> list[Path]:
    shutil.copyfile(source, version_dir / "model.plan")
    return [version_dir / "model.plan"]


@dataclass(frozen=True)
class TritonBackend:
    """One Triton backend deploylab writes for: the config's ``backend`` (and ``platform``), the model
    suffixes it takes, the instance kind, how a model is described and copied; ``pads_batches``: the
    backend runs every batch at exactly max_batch_size (OpenVINO, see :func:`_model_config`)."""

    backend: str
    platform: str | None
    suffixes: tuple[str, ...]
    kind: str
    describe: Callable[[Path], ModelDescription]
    copy: Callable[[Path, Path], list[Path]]
    pads_batches: bool = False


TRITON_BACKENDS = (
    TritonBackend("onnxruntime", None, (".onnx",), "KIND_CPU", describe_onnx, _copy_onnx),
    TritonBackend("openvino", None, (".xml",), "KIND_CPU", describe_openvino, _copy_openvino, pads_batches=True),
    TritonBackend("tensorrt", "tensorrt_plan", (".plan", ".engine"), "KIND_GPU", describe_tensorrt, _copy_plan),
)


def triton_backend_for(path: Path) -> TritonBackend:
    """The backend that serves the model file ``path``, by its suffix."""
    for backend in TRITON_BACKENDS:
        if path.suffix.lower() in backend.suffixes:
            return backend
    known = ", ".join(s for b in TRITON_BACKENDS for s in b.suffixes)
    raise DeployLabError(f"cannot tell which Triton backend serves {str(path)!r}; give a model file ending in {known}")


# ---------------------------------------------------------------- the configuration text
class _Enum(str):
    """A protobuf enum value: written bare (KIND_CPU), not quoted."""


def _pbtxt_value(value, depth: int) -> str:
    from google.protobuf.text_encoding import CEscape

    pad = "  " * depth
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, str):
        return '"' + CEscape(value, as_utf8=True) + '"'
    if isinstance(value, dict):
        return "{\n" + format_pbtxt(value, depth + 1) + pad + "}"
    if value and all(isinstance(v, dict) for v in value):
        items = ",\n".join("  " * (depth + 1) + _pbtxt_value(v, depth + 1) for v in value)
        return "[\n" + items + "\n" + pad + "]"
    return "[ " + ", ".join(_pbtxt_value(v, depth) for v in value) + " ]"


def format_pbtxt(fields: dict, depth: int = 0) -> str:
    """Protobuf text for ``fields``: dicts are messages, lists repeated fields, :class:`_Enum` enum values."""
    lines = []
    for key, value in fields.items():
        message = isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict))
        lines.append("  " * depth + key + (" " if message else ": ") + _pbtxt_value(value, depth) + "\n")
    return "".join(lines)


def parse_triton_config(text: str):
    """``text`` parsed into Triton's ``ModelConfig`` (``tritonclient.grpc.model_config_pb2``); text
    Triton's parser refuses (a misspelled field, an unknown enum value, a bad number) raises a
    DeployLabError with the parser's line:column."""
    pb2 = require("tritonclient.grpc.model_config_pb2", "'tritonclient[grpc]'", "checking a Triton model config")
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise DeployLabError(f"Triton cannot parse this config.pbtxt: {exc}; fix that line") from None


def check_triton_config(config) -> None:
    """Raise a DeployLabError for a parsed ``ModelConfig`` Triton would refuse to load, by the checks of
    core ``src/model_config_utils.cc`` (ValidateModelConfig, ValidateIOShape) and ValidateModelName."""
    pb2 = require("tritonclient.grpc.model_config_pb2", "'tritonclient[grpc]'", "checking a Triton model config")
    problems = []
    if not config.name.strip() or config.name.strip() == ".." or "/" in config.name:
        problems.append(f"model name {config.name!r} is empty, '..' or holds a '/'")
    pairs = {"tensorrt": "tensorrt_plan", "onnxruntime": "onnxruntime_onnx"}
    if config.platform and pairs.get(config.backend, config.platform) != config.platform:
        problems.append(f"platform {config.platform!r} does not go with backend {config.backend!r}")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size is {config.max_batch_size}, below 0")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for io in tensors:
            label = f"{kind} {io.name!r}"
            if not io.name:
                problems.append(f"an {kind} has no name")
            if io.data_type == pb2.DataType.TYPE_INVALID:
                problems.append(f"{label} has no data_type")
            if not io.dims or any(d < 1 and d != -1 for d in io.dims):
                problems.append(f"{label} has dims {list(io.dims)}: it needs at least one, each -1 or at least 1")
            if io.HasField("reshape") and not io.reshape.shape and config.max_batch_size == 0:
                problems.append(f"{label} reshapes to a scalar in a model without batching")
    if config.HasField("dynamic_batching"):
        for size in config.dynamic_batching.preferred_batch_size:
            if not 0 < size <= config.max_batch_size:
                problems.append(f"preferred batch size {size} is not in 1..max_batch_size ({config.max_batch_size})")
    if problems:
        raise DeployLabError(f"Triton would refuse config {config.name!r}: {'; '.join(problems)}")


# ---------------------------------------------------------------- the repository
@dataclass
class TritonRepo:
    """A model folder written by :func:`write_triton_repo`.

    ``repository``: the model repository (``tritonserver --model-repository``); ``model_dir``:
    ``repository/name``; ``config_path``/``config_text``: its config.pbtxt; ``backend``: Triton's backend
    name; ``files``: the model files written under ``model_dir/1``; ``max_batch_size`` and
    ``instance_kind`` as written; ``perf_shapes``: perf_analyzer ``--shape`` arguments for inputs with
    variable dims; ``notes``: what the caller should know (an input perf_analyzer needs a shape for).
    """

    repository: Path
    model_dir: Path
    config_path: Path
    config_text: str
    backend: str
    files: tuple[Path, ...]
    name: str
    max_batch_size: int
    instance_kind: str
    perf_shapes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def commands(self, release: str = TRITON_RELEASE) -> list[str]:
        """The ``docker run`` serving the repository (HTTP 8000, gRPC 8001, metrics 8002) and perf_analyzer's
        concurrency 1..16 sweep from the SDK container. Flags from server docs/getting_started/quickstart.md
        (``--gpus=1`` only for GPU instances: a CPU-only host runs the same image without it) and
        perf_analyzer docs/cli.md (``--concurrency-range=<start:end:step>``, ``--shape=name:dims``)."""
        gpus = "--gpus=1 " if self.instance_kind == "KIND_GPU" else ""
        server = (f"docker run {gpus}--rm -p8000:8000 -p8001:8001 -p8002:8002 "
                  f"-v{shlex.quote(str(self.repository.resolve()))}:/models nvcr.io/nvidia/tritonserver:{release}-py3 "
                  "tritonserver --model-repository=/models")
        shapes = "".join(f" --shape={shlex.quote(s)}" for s in self.perf_shapes)
        perf = (f"docker run --rm --net=host nvcr.io/nvidia/tritonserver:{release}-py3-sdk "
                f"perf_analyzer -m {shlex.quote(self.name)} --concurrency-range=1:16{shapes}")
        return [server, perf]

    def format(self) -> str:
        batching = f"max_batch_size {self.max_batch_size}" if self.max_batch_size else "no batching (max_batch_size 0)"
        files = ", ".join(str(p.relative_to(self.model_dir)) for p in self.files)
        return f"Triton model {self.name!r} ({self.backend}, {batching}) written to {self.model_dir}: {files}"


def _model_name(model: Path, name: str | None) -> str:
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.stem).lstrip(".-") or "model"
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise DeployLabError(
            f"Triton model name {name!r} will not do: Triton refuses empty names, '..' and names with '/', and the "
            "name is the model's folder and its URL (/v2/models/NAME); use letters, digits, '_', '-' and '.' "
            "(not first), e.g. --name lenet")
    return name


def _count(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DeployLabError(f"{what} must be a whole number of at least {low}, got {value!r}")
    return int(value)


def _max_batch(description: ModelDescription, backend: TritonBackend, model: Path, max_batch) -> int:
    """The max_batch_size to write: ``max_batch`` checked against the model, or the model's own bound."""
    kind, why = description.batch_kind()
    low, high = description.batch_bounds
    if max_batch is None:
        if kind != "dynamic":
            return 0
        max_batch = high or DEFAULT_MAX_BATCH
    max_batch = _count(max_batch, "max_batch", 0)
    if max_batch == 0:
        return 0
    if kind == "fixed":
        raise DeployLabError(f"{model.name} takes a {why}: Triton cannot batch it, so max_batch {max_batch} is "
                             "refused; re-export with --dynamic-batch, or use max_batch 0")
    if kind == "none":
        raise DeployLabError(f"{model.name}: {why}; max_batch {max_batch} is refused, use max_batch 0")
    if high is not None and max_batch > high:
        raise DeployLabError(f"max_batch {max_batch} is above {high}, the largest batch {model.name} was built for; "
                             f"use max_batch {high} or less, or rebuild it for a larger batch")
    if backend.pads_batches and max_batch < low:
        raise DeployLabError(f"max_batch {max_batch} is below {low}, the smallest batch {model.name} was built for; "
                             f"use max_batch {low} or more")
    if not backend.pads_batches and low > 1:
        raise DeployLabError(f"{model.name} takes batches of {low} to {high}, but Triton's dynamic batcher sends any "
                             f"batch from 1 to max_batch; rebuild it with a min batch of 1 (--min 1x...)")
    return max_batch


def _config_tensor(tensor: ModelTensor, batching: bool) -> dict:
    dims = list(tensor.dims[1:] if batching else tensor.dims)
    if not dims and not batching:
        raise DeployLabError(f"{tensor.name!r} is a scalar; Triton serves scalars only in batching models "
                             "(max_batch > 0)")
    entry = {"name": tensor.name, "data_type": _Enum(tensor.data_type), "dims": dims or [1]}
    if not dims:  # a [batch] tensor: Triton wants dims [1] reshaped to [] (model_configuration.md, Reshape)
        entry["reshape"] = {"shape": []}
    return entry


def _perf_shapes(description: ModelDescription, batching: bool, notes: list[str]) -> list[str]:
    shapes = []
    for tensor in description.inputs:
        dims, example = (tensor.dims[1:], tensor.example[1:]) if batching else (tensor.dims, tensor.example)
        if -1 not in dims:
            continue
        if not batching and tensor.dims and tensor.dims[0] == -1:
            example = (1, *example[1:])  # one sample per request
        if None in example:
            notes.append(f"input {tensor.name!r} has variable dims {list(dims)}: give perf_analyzer "
                         f"--shape={tensor.name}:<dims> for it")
            continue
        shapes.append(f"{tensor.name}:{','.join(str(d) for d in example)}")
    return shapes


def _model_config(name: str, backend: TritonBackend, description: ModelDescription, max_batch_size: int,
                  preferred: list[int], delay: int | None, instances: int) -> dict:
    batching = max_batch_size > 0
    config = {"name": name, "backend": backend.backend, **({"platform": backend.platform} if backend.platform else {}),
              "max_batch_size": max_batch_size}
    config["input"] = [_config_tensor(t, batching) for t in description.inputs]
    config["output"] = [_config_tensor(t, batching) for t in description.outputs]
    if batching:
        config["dynamic_batching"] = {**({"preferred_batch_size": preferred} if preferred else {}),
                                      **({"max_queue_delay_microseconds": delay} if delay is not None else {})}
    config["instance_group"] = [{"count": instances, "kind": _Enum(backend.kind)}]
    if batching and backend.pads_batches:
        # The OpenVINO backend sets the model's batch to max_batch_size (ov::set_batch) and refuses an
        # execution whose batch is smaller unless ENABLE_BATCH_PADDING is YES (openvino_backend
        # src/openvino.cc, ModelInstanceState::ProcessRequests): a lone request would fail without it.
        config["parameters"] = {"key": "ENABLE_BATCH_PADDING", "value": {"string_value": "YES"}}
    return config


def write_triton_repo(
    model: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    max_batch: int | None = None,
    preferred_batch: Sequence[int] = (),
    instances: int = 1,
    max_queue_delay_us: int | None = None,
) -> TritonRepo:
    """Write a Triton model folder for ``model`` into the model repository ``out_dir`` and return it.

    ``model``: an ONNX file (ONNX Runtime backend; its external-data files are copied too), an OpenVINO
    IR ``.xml`` with its ``.bin`` (OpenVINO backend), or a TensorRT ``.plan``/``.engine`` with the build
    record deploylab writes beside it (TensorRT backend). ``name``: the model's name and folder
    (default: the file's stem, with characters other than letters, digits, ``_ . -`` made ``_``).

    ``max_batch``: Triton's max_batch_size. Default: the model's largest batch (an OpenVINO IR's bound,
    a TensorRT profile's max), :data:`DEFAULT_MAX_BATCH` (32) for an unbounded dynamic ONNX batch dim,
    0 (no batching, full dims) for a model with a fixed batch. A max_batch above the model's bound, or
    above 0 for a fixed-batch model, is refused. With max_batch > 0 the batch dim is left out of the
    dims and ``dynamic_batching`` is on: ``preferred_batch`` sizes (each 1..max_batch) and
    ``max_queue_delay_us`` (microseconds a request may wait for others). ``instances``: how many
    instances Triton runs (KIND_CPU; KIND_GPU for plans).

    ``out_dir/name`` must not exist: an existing folder is never replaced. The folder is built under a
    temporary name beside it and renamed into place when complete; a failure leaves nothing behind.
    """
    model, out_dir = Path(model), Path(out_dir)
    if not model.is_file():
        raise DeployLabError(f"model file {str(model)!r} does not exist; give an .onnx, .xml or .plan file")
    backend = triton_backend_for(model)
    name = _model_name(model, name)
    instances, final = _count(instances, "instances", 1), out_dir / name
    if final.exists() or final.is_symlink():
        raise DeployLabError(f"{str(final)!r} already exists; deploylab does not replace a model folder: pick "
                             "another -o or --name, or remove it yourself")
    if out_dir.exists() and not out_dir.is_dir():
        raise DeployLabError(f"model repository {str(out_dir)!r} is a file, not a folder; pick another -o")

    description = backend.describe(model)
    max_batch_size = _max_batch(description, backend, model, max_batch)
    preferred = [_count(p, "each preferred batch size", 1) for p in preferred_batch]
    delay = None if max_queue_delay_us is None else _count(max_queue_delay_us, "max_queue_delay_us", 0)
    if max_batch_size == 0 and (preferred or delay is not None):
        raise DeployLabError("preferred batch sizes and a queue delay set Triton's dynamic batcher, which needs "
                             "max_batch > 0; this model is written with max_batch_size 0, so drop them")
    for size in preferred:
        if size > max_batch_size:
            raise DeployLabError(f"preferred batch size {size} is above max_batch {max_batch_size}; Triton refuses "
                                 f"it: use sizes 1 to {max_batch_size}")

    config_text = format_pbtxt(_model_config(name, backend, description, max_batch_size, preferred, delay, instances))
    check_triton_config(parse_triton_config(config_text))
    notes: list[str] = []
    perf_shapes = _perf_shapes(description, max_batch_size > 0, notes)

    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # removed again if this fails
    partial, written, appeared, done = partial_name(final), [], False, False
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (partial / "1").mkdir(parents=True)
        written = backend.copy(model, partial / "1")
        (partial / "config.pbtxt").write_text(config_text, encoding="utf-8")
        appeared = final.exists() or final.is_symlink()
        if not appeared:
            os.rename(partial, final)  # atomic; POSIX refuses to rename onto a non-empty folder
            done = True
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise cannot_write(final, exc) from None
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        appeared = True  # someone else's folder took the name: rename refused to replace it
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in created if not done else ():  # innermost first; rmdir keeps a folder filled meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
    if appeared:
        raise DeployLabError(f"{str(final)!r} appeared while the model was being copied and was left as it is; "
                             "pick another -o or --name")
    files = tuple(final / p.relative_to(partial) for p in written)
    return TritonRepo(out_dir, final, final / "config.pbtxt", config_text, backend.backend, files, name,
                      max_batch_size, backend.kind, tuple(perf_shapes), tuple(notes))
