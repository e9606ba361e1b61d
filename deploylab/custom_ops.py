"""A custom operator end to end: PyTorch op -> ONNX node in its own domain -> engine kernel.

Engines lag behind new operators (problem 9d of the notes). When an operation has no
ONNX equivalent (or one an engine runs too slowly), it is exported as a *custom* node
and each engine gets its own implementation:

1. **PyTorch**: ``deploylab::soft_clip(x, bound) = bound * tanh(x / bound)`` is a
   ``torch.library.custom_op`` with a ``register_fake`` (shape/dtype only) so that
   ``torch.export`` can trace through it without running it. Neither exporter knows
   how to translate it: TorchScript fails with "unrecognized namespace", dynamo with
   "No ONNX function found".
2. **Export**: the node is ``SoftClip`` in domain :data:`CUSTOM_DOMAIN`
   (``ai.deploylab``), attribute ``bound`` (float).
   - TorchScript exporter: a symbolic ``g.op("ai.deploylab::SoftClip", x, bound_f=...)``,
     registered with ``torch.onnx.register_custom_op_symbolic`` only while exporting
     (a :class:`deploylab.rewrite.RewriteRegistry` symbolic rewrite).
   - dynamo exporter: ``custom_translation_table={torch.ops.deploylab.soft_clip.default:
     fn}`` where ``fn`` calls ``onnxscript.values.Opset("ai.deploylab", 1).SoftClip``.
     onnxscript needs the op's schema to know its outputs, so :func:`register_onnx_schema`
     registers an ``onnx.defs.OpSchema`` first (which also lets ``onnx.checker`` and shape
     inference accept the file).
3. **ONNX Runtime**: onnxruntime-extensions runs Python functions as kernels (``PyOp``,
   declared with ``@onnx_op``) from its library, registered with
   ``SessionOptions.register_custom_ops_library(get_library_path())``. PyOps live in the
   domain ``onnxruntime_extensions.default_opset_domain()`` = ``ai.onnx.contrib`` and
   cannot choose another, so :func:`retarget_domain` copies the model with the node
   (and its opset import) moved from ``ai.deploylab`` to ``ai.onnx.contrib``.
4. **TensorRT** (text only, see :data:`TENSORRT_PLUGIN_NOTES`): the same node becomes a
   plugin.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploylab.errors import DeployLabError, EngineError, require
from deploylab.rewrite import RewriteRegistry
from deploylab.paths import replace_when_done
from deploylab.text import first_line

CUSTOM_DOMAIN = "ai.deploylab"
CUSTOM_DOMAIN_VERSION = 1
ONNX_OP_TYPE = "SoftClip"
TORCH_OP_NAME = "deploylab::soft_clip"
PYOP_DOMAIN = "ai.onnx.contrib"  # what onnxruntime-extensions registers PyOps under (checked at use)

TENSORRT_PLUGIN_NOTES = """\
The same SoftClip node as a TensorRT plugin (TensorRT 10/11, C++):
- Implement the op as a class deriving from nvinfer1::IPluginV3 plus the capability
  interfaces IPluginV3OneCore (name "SoftClip", version "1", namespace), IPluginV3OneBuild
  (getOutputDataTypes, getOutputShapes: same as the input; supportsFormatCombination:
  linear FP32/FP16) and IPluginV3OneRuntime (enqueue: a CUDA kernel computing
  bound * tanh(x / bound); getFieldsToSerialize: the "bound" field).
- Implement a creator deriving from nvinfer1::IPluginCreatorV3One whose getPluginName /
  getPluginVersion / getPluginNamespace match, whose getFieldNames lists "bound"
  (kFLOAT32) and whose createPlugin builds the plugin from a PluginFieldCollection.
- Register the creator: REGISTER_TENSORRT_PLUGIN(SoftClipCreator) in a shared library
  (loaded with trtexec --staticPlugins=libsoftclip.so, or in Python with
  tensorrt.get_plugin_registry().load_library(path)), or call
  getPluginRegistry()->registerCreator(creator, "") at run time.
- The ONNX parser maps a node it has no importer for to a plugin creator with the same
  name as the node's op_type; it takes the version from a "plugin_version" attribute
  (default "1") and the namespace from "plugin_namespace" (default ""; since TensorRT 10.10
  also from the node's domain), and hands every node attribute ("bound") to the creator as
  a PluginField. So the exported SoftClip node needs no change - only the plugin library
  at build time (the plan then needs the same library at run time).
Sources: https://github.com/onnx/onnx-tensorrt (README, "Plugins" and docs/operators.md),
https://github.com/NVIDIA/TensorRT/blob/release/10.10/CHANGELOG.md,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Plugin/IPluginV3.html
"""


# ---------------------------------------------------------------- 1. the PyTorch op
@torch.library.custom_op(TORCH_OP_NAME, mutates_args=())
def soft_clip(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``bound * tanh(x / bound)``: clips smoothly to (-bound, bound); ``bound`` > 0."""
    return bound * torch.tanh(x / bound)


@soft_clip.register_fake
def _soft_clip_fake(x: torch.Tensor, bound: float) -> torch.Tensor:
    return torch.empty_like(x)


def soft_clip_reference(x: np.ndarray, bound: float) -> np.ndarray:
    """The op in numpy: what the ONNX Runtime PyOp kernel computes."""
    return (bound * np.tanh(np.asarray(x, dtype=np.float32) / np.float32(bound))).astype(np.float32)


class SoftClip(nn.Module):
    """The custom op as a layer."""

    def __init__(self, bound: float = 3.0):
        super().__init__()
        if not bound > 0:
            raise DeployLabError(f"bound must be positive, got {bound!r}")
        self.bound = float(bound)

    def forward(self, x):
        return torch.ops.deploylab.soft_clip(x, self.bound)


class SoftClipNet(nn.Module):
    """A small MLP whose activation is the custom op (seeded weights)."""

    def __init__(self, features: int = 8, hidden: int = 16, bound: float = 3.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(features, hidden)
        self.act = SoftClip(bound)
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x) * 4))


# ---------------------------------------------------------------- 2. exporting it
def register_onnx_schema() -> None:
    """Declare ``ai.deploylab::SoftClip`` (v1) to onnx, once per process."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(ONNX_OP_TYPE, CUSTOM_DOMAIN):
        return
    schema = OpSchema(
        ONNX_OP_TYPE, CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION,
        doc="Y = bound * tanh(X / bound): a smooth clip to (-bound, bound).",
        inputs=[OpSchema.FormalParameter("X", "T")],
        outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)"], "float32 tensors")],
        attributes=[OpSchema.Attribute("bound", OpSchema.AttrType.FLOAT, "the clip bound (> 0)")],
    )
    onnx.defs.register_schema(schema)


#: The TorchScript symbolic, active only inside ``rewriting(registry=CUSTOM_OP_SYMBOLICS)``.
CUSTOM_OP_SYMBOLICS = RewriteRegistry("custom op symbolics")


@CUSTOM_OP_SYMBOLICS.register_symbolic(TORCH_OP_NAME, opset=9)
def soft_clip_symbolic(ctx, g, x, bound):
    from torch.onnx import symbolic_helper

    value = symbolic_helper._maybe_get_const(bound, "f")
    return g.op(f"{CUSTOM_DOMAIN}::{ONNX_OP_TYPE}", x, bound_f=float(value)).setType(x.type())


@functools.lru_cache(maxsize=1)
def dynamo_translation_table() -> dict:
    """``custom_translation_table`` for the dynamo exporter: soft_clip -> ai.deploylab::SoftClip."""
    import onnxscript

    register_onnx_schema()
    opset = onnxscript.values.Opset(CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION)

    def soft_clip_onnx(x, bound: float):
        return opset.SoftClip(x, bound=bound)

    return {torch.ops.deploylab.soft_clip.default: soft_clip_onnx}


def custom_op_export_settings(exporter: str, with_translation: bool = True):
    """What an exporter needs to translate ``deploylab::soft_clip``: ``(options, context)``.

    ``options`` go to ``torch.onnx.export``; the export must run inside ``context`` (for
    TorchScript it registers :data:`CUSTOM_OP_SYMBOLICS` only while exporting).
    ``with_translation=False`` gives neither, to show the export failing without them;
    :func:`deploylab.problems.custom.export_with_custom_op` uses both.
    """
    from deploylab.rewrite import rewriting

    if not with_translation:
        return {}, contextlib.nullcontext()
    if exporter == "dynamo":
        return {"custom_translation_table": dynamo_translation_table()}, contextlib.nullcontext()
    return {"custom_opsets": {CUSTOM_DOMAIN: CUSTOM_DOMAIN_VERSION}}, rewriting(registry=CUSTOM_OP_SYMBOLICS)


# ---------------------------------------------------------------- 3. running it in ONNX Runtime
def retarget_domain(src: str | Path, dst: str | Path, from_domain: str = CUSTOM_DOMAIN,
                    to_domain: str = PYOP_DOMAIN) -> Path:
    """Copy an ONNX file with nodes (and the opset import) of ``from_domain`` moved to ``to_domain``."""
    import onnx

    from deploylab.onnx_tools import load_onnx

    model = load_onnx(src)
    moved = 0

    def walk(graph):
        nonlocal moved
        for node in graph.node:
            if node.domain == from_domain:
                node.domain = to_domain
                moved += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(model.graph)
    if not moved:
        raise DeployLabError(f"{str(src)!r} has no node in domain {from_domain!r}; nothing to retarget")
    imports = {o.domain: o for o in model.opset_import}
    if from_domain in imports:
        entry = imports.pop(from_domain)
        if to_domain in imports:
            model.opset_import.remove(entry)
        else:
            entry.domain = to_domain
    dst = Path(dst)
    with replace_when_done(dst, suffix=".onnx") as partial:
        onnx.save(model, str(partial))
    return dst


@functools.lru_cache(maxsize=1)
def register_pyop() -> str:
    """Declare the numpy SoftClip kernel to onnxruntime-extensions (once); returns its domain."""
    ext = require("onnxruntime_extensions", "onnxruntime-extensions", "running custom ops as Python kernels")
    domain = ext.default_opset_domain()
    if domain != PYOP_DOMAIN:
        raise DeployLabError(
            f"onnxruntime-extensions registers Python ops in {domain!r}, deploylab expects {PYOP_DOMAIN!r}; "
            f"retarget the model with retarget_domain(..., to_domain={domain!r})"
        )
    dt = ext.PyCustomOpDef

    @ext.onnx_op(op_type=ONNX_OP_TYPE, inputs=[dt.dt_float], outputs=[dt.dt_float], attrs={"bound": dt.dt_float})
    def soft_clip_kernel(x, bound):
        return soft_clip_reference(x, bound)

    return domain


def custom_op_session(path: str | Path):
    """An ONNX Runtime session with onnxruntime-extensions' library (and the SoftClip PyOp) registered."""
    import onnxruntime as ort

    from deploylab.backends.onnxruntime import new_session

    ext = require("onnxruntime_extensions", "onnxruntime-extensions", "running custom ops as Python kernels")
    register_pyop()
    options = ort.SessionOptions()
    options.register_custom_ops_library(ext.get_library_path())
    try:
        return new_session(path, options, providers=["CPUExecutionProvider"])
    except EngineError as exc:
        raise DeployLabError(
            f"ONNX Runtime cannot load {Path(path).name} even with onnxruntime-extensions: "
            f"{first_line(exc.engine_text, limit=300)}; PyOps live in domain {PYOP_DOMAIN!r} - "
            "run retarget_domain() on the exported file first"
        ) from exc


def run_custom_op_model(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run a (retargeted) model using SoftClip in ONNX Runtime; returns the first output."""
    session = custom_op_session(path)
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
