"""The one contract every backend meets: describe inputs/outputs, run named arrays.

A runner is built from an artifact (a PyTorch module, an ONNX file, a built engine),
activated lazily on first use, and called with ``{input name: numpy array}``; it returns
``{output name: numpy array}``. Inputs are checked against the runner's own description
*before* the engine sees them, so a wrong name, dtype, rank or dimension gets one clear
error naming the value and what was expected, whichever engine is behind it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.dtypes import PRECISION_NAMES, precision_name  # noqa: F401 (part of the runner vocabulary)
from deploylab.errors import DeployLabError
from deploylab.text import shape_text

Dim = int | str | None  # a fixed size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor a runner takes or gives: numpy dtype and shape (ints, names or None)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    # Optional (min, max) per symbolic dim name, e.g. from an optimization profile.
    bounds: tuple[tuple[str, int, int], ...] = ()

    def shape_text(self) -> str:
        return shape_text(self.shape)

    def describe(self) -> str:
        return f"{self.name}: {np.dtype(self.dtype).name}[{self.shape_text()}]"


def _shape_of(shape) -> str:
    return shape_text(shape)


def out_of_bounds_message(input_name: str, dim: str, value: int, low: int, high: int) -> str:
    """The one wording for a symbolic dim outside the range a model was built for.

    Used by :func:`check_feed` (a feed's dim) and :func:`deploylab.batching.check_batch_bounds`
    (a batch size, before any feed exists), so both say the same thing: which input and
    dim, the value, the bounds, and the two fixes.
    """
    return (f"input {input_name!r} has {dim} = {value}, outside the [{low}, {high}] this model was built for; "
            f"rebuild it with a wider range or use {dim} sizes {low} to {high}, not {value}")


def check_feed(specs: list[TensorSpec], feed: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Validate ``feed`` against ``specs`` and return it as C-contiguous numpy arrays.

    Checks, in order: every expected name present and no extra names; numpy arrays (not
    torch tensors or lists); exact dtype; rank; fixed dims; symbolic dims consistent
    across inputs (one value per name) and within their bounds when bounds are known.
    """
    if not isinstance(feed, Mapping):
        raise DeployLabError(
            f"inputs must be a dict of {{name: array}}, got {type(feed).__name__}; "
            f"expected names: {', '.join(s.name for s in specs)}"
        )
    expected = {s.name: s for s in specs}
    missing = [n for n in expected if n not in feed]
    extra = [n for n in feed if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown input(s) {', '.join(map(repr, extra))}")
        raise DeployLabError(
            f"{' and '.join(parts)}; the model takes: {', '.join(s.describe() for s in specs)}"
        )
    symbols: dict[str, tuple[int, str]] = {}
    checked = {}
    for name, spec in expected.items():
        value = feed[name]
        if not isinstance(value, np.ndarray):
            hint = " (call .numpy() on a CPU torch tensor)" if type(value).__module__.startswith("torch") else ""
            raise DeployLabError(
                f"input {name!r} is a {type(value).__name__}, not a numpy array{hint}; "
                f"expected {spec.describe()}"
            )
        if value.dtype != np.dtype(spec.dtype):
            raise DeployLabError(
                f"input {name!r} has dtype {value.dtype.name}, the model expects "
                f"{np.dtype(spec.dtype).name}; convert with x.astype(np.{np.dtype(spec.dtype).name})"
            )
        if value.ndim != len(spec.shape):
            raise DeployLabError(
                f"input {name!r} has shape {_shape_of(value.shape)} (rank {value.ndim}), the model "
                f"expects rank {len(spec.shape)}: {spec.describe()}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(want, int) and want >= 0 and want != got:
                raise DeployLabError(
                    f"input {name!r} has shape {_shape_of(value.shape)}, but dim {axis} must be {want}: "
                    f"{spec.describe()}"
                )
            if isinstance(want, str):
                seen = symbols.get(want)
                if seen and seen[0] != got:
                    raise DeployLabError(
                        f"symbolic dim {want!r} is {seen[0]} in input {seen[1]!r} but {got} in input "
                        f"{name!r}; inputs sharing a dim name must agree"
                    )
                symbols[want] = (got, name)
        for dim_name, low, high in spec.bounds:
            if dim_name in symbols and not (low <= symbols[dim_name][0] <= high):
                raise DeployLabError(out_of_bounds_message(name, dim_name, symbols[dim_name][0], low, high))
        checked[name] = np.ascontiguousarray(value)
    return checked


MAX_SEEDED_ELEMENTS = 2**28


def seeded_feed(
    specs: list[TensorSpec], dims: Mapping[str, int] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs for ``specs`` filled from a seeded generator: floats uniform in [0, 1), ints 0..9.

    Symbolic dims take their value from ``dims`` (default 1 for any name not given). An input of
    more than :data:`MAX_SEEDED_ELEMENTS` values (a model declaring a 2**40 dim) is refused.
    """
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    feed = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) and d >= 0 else dims.get(d, 1) for d in spec.shape)
        if math.prod(shape) > MAX_SEEDED_ELEMENTS:
            raise DeployLabError(f"input {spec.name!r} of shape {shape_text(shape)} would hold {math.prod(shape):,} "
                                 f"values, more than the {MAX_SEEDED_ELEMENTS:,} (1 GiB of float32) deploylab "
                                 "generates; give the input yourself, or export with smaller or symbolic dims")
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feed[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feed


@dataclass(frozen=True)
class RunnerSettings:
    """How a runner runs, in one vocabulary for every engine.

    ``threads``: the thread count asked for (None = the engine's default); ``precision``: of
    its float layers (fp32, bf16, fp16); ``spinning``: whether idle worker threads spin
    (ONNX Runtime's ``allow_spinning``; None where the engine does not say).
    """

    threads: int | None = None
    precision: str = "fp32"
    spinning: bool | None = None


class Runner(ABC):
    """Something that runs a model. Subclasses implement ``_activate``, ``_describe``, ``_infer``.

    ``runner.infer(feed)`` (or ``runner(feed)``) validates ``feed`` and returns a dict of
    named numpy arrays. Engines are created lazily on first use, so constructing a runner
    is cheap and a missing engine fails with an install hint only when it is really used.
    """

    #: Short backend name, e.g. "onnxruntime", "torch", "openvino".
    backend: str = "runner"
    #: True when one runner may serve several threads at once (its engine call is re-entrant).
    thread_safe: bool = False
    #: True when the runner keeps many requests in flight itself (:meth:`infer_queued`).
    queues_requests: bool = False

    def __init__(self, name: str | None = None):
        self.name = name or self.backend
        self._active = False
        self._inputs: list[TensorSpec] | None = None
        self._outputs: list[TensorSpec] | None = None

    # -- lifecycle
    def activate(self) -> Runner:
        if not self._active:
            self._activate()
            self._inputs, self._outputs = self._describe()
            self._active = True
        return self

    def deactivate(self) -> None:
        self._deactivate()
        self._active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- description
    @property
    def inputs(self) -> list[TensorSpec]:
        self.activate()
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        self.activate()
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def describe(self) -> str:
        lines = [f"{self.name} ({self.backend})", "  inputs:"]
        lines += [f"    {s.describe()}" for s in self.inputs]
        lines.append("  outputs:")
        lines += [f"    {s.describe()}" for s in self.outputs]
        return "\n".join(lines)

    # -- running
    def check(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Validate ``feed`` against :attr:`inputs` (see :func:`check_feed`)."""
        return check_feed(self.inputs, feed)

    def infer(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Run one inference on named numpy arrays; returns named numpy arrays."""
        return self._infer(self.check(feed))

    __call__ = infer

    def settings(self) -> RunnerSettings:
        """Threads, precision and spinning of this runner (the engine's defaults unless set)."""
        return RunnerSettings()

    # -- many requests
    def clone(self) -> Runner | None:
        """A new runner with the same settings on the same artifact (its own engine objects), or
        None when this runner cannot be re-made; callers then share it only if :attr:`thread_safe`."""
        return None

    def infer_queued(self, feeds: list[Mapping[str, object]], in_flight: int) -> list[dict[str, np.ndarray]]:
        """Run ``feeds`` with ``in_flight`` requests at a time, in the runner's own request queue
        (only where :attr:`queues_requests`); outputs in the order of ``feeds``."""
        raise DeployLabError(f"{self.name} has no request queue of its own; run the feeds through "
                             "deploylab.bench.RequestPool, which uses one thread per clone")

    # -- for subclasses
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _describe(self) -> tuple[list[TensorSpec], list[TensorSpec]]: ...

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _deactivate(self) -> None:
        """Release engine resources; the runner re-activates on next use."""


class OnnxFileRunner(Runner):
    """A runner whose artifact is an ONNX file: it can be re-made on another file.

    Layer-wise comparison needs this: it writes a copy of the model with every
    intermediate tensor marked as an output, and runs that copy with the same settings.
    """

    def __init__(self, model_path: str | Path, name: str | None = None):
        super().__init__(name)
        self.model_path = Path(model_path)

    @abstractmethod
    def with_model(self, model_path: str | Path) -> OnnxFileRunner:
        """The same runner settings on another ONNX file."""

    def clone(self) -> OnnxFileRunner:
        return self.with_model(self.model_path)
