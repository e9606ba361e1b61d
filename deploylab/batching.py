"""Cutting N samples into batches a runner accepts, and stitching the outputs back into N rows.

A deployed model is often built for a range of batch sizes (an ONNX file with a
symbolic batch dim, an OpenVINO IR or a TensorRT engine with bounds) or for exactly
one. :func:`make_batches` cuts a dataset into batches of one size and says, per batch,
how many rows are real; :func:`unbatch` drops the padding again; and
:func:`check_batch_bounds` refuses a batch size the runner was not built for, with the
runner's range in the message, before any engine sees the batch; :func:`batch_feed`
builds a seeded feed of one batch size for a runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deploylab.backends.base import out_of_bounds_message, seeded_feed
from deploylab.errors import DeployLabError
from deploylab.text import shape_text

LAST_BATCH_MODES = ("ragged", "pad", "drop")


@dataclass(frozen=True)
class Batch:
    """One batch: ``array`` of ``size`` rows, the first ``valid`` of them real samples.

    ``indices`` are the positions of the real rows in the original samples (length
    ``valid``); padding rows, if any, follow them and are copies of the last real sample.
    """

    array: np.ndarray
    valid: int
    indices: np.ndarray

    @property
    def size(self) -> int:
        """Rows in :attr:`array`, padding included: the batch size the runner sees."""
        return int(self.array.shape[0])

    @property
    def padding(self) -> int:
        """Padding rows at the end of :attr:`array`."""
        return self.size - self.valid

    def __repr__(self) -> str:
        shape = shape_text(self.array.shape)
        first, last = (int(self.indices[0]), int(self.indices[-1])) if self.valid else (None, None)
        return f"Batch({self.array.dtype.name}[{shape}], valid={self.valid}, samples {first}..{last})"


def _as_sample_array(samples) -> np.ndarray:
    """``samples`` as one (N, ...) array; a list must hold arrays of one shape and dtype."""
    if isinstance(samples, np.ndarray):
        if samples.ndim == 0:
            raise DeployLabError("samples must be an array of shape (N, ...) or a list of arrays, got a 0-d array")
        if samples.shape[0] == 0:
            raise DeployLabError(f"samples is empty (shape {samples.shape}); there is nothing to batch")
        return samples
    if not isinstance(samples, Sequence) or isinstance(samples, (str, bytes)):
        raise DeployLabError(
            f"samples must be a numpy array (N, ...) or a list of numpy arrays, got {type(samples).__name__}"
        )
    if len(samples) == 0:
        raise DeployLabError("samples is an empty list; there is nothing to batch")
    for index, item in enumerate(samples):
        if not isinstance(item, np.ndarray):
            hint = " (call .numpy() on a CPU torch tensor)" if type(item).__module__.startswith("torch") else ""
            raise DeployLabError(f"sample {index} is a {type(item).__name__}, not a numpy array{hint}")
    first = samples[0]
    for index, item in enumerate(samples):
        if item.shape != first.shape:
            raise DeployLabError(
                f"sample {index} has shape {item.shape}, but sample 0 has shape {first.shape}; all samples "
                "must have the same shape to be batched (resize or crop them first)"
            )
        if item.dtype != first.dtype:
            raise DeployLabError(
                f"sample {index} has dtype {item.dtype.name}, but sample 0 has dtype {first.dtype.name}; "
                f"convert them to one dtype first (e.g. x.astype(np.{first.dtype.name}))"
            )
    return np.stack(samples)


def make_batches(samples, batch_size: int, last: str = "ragged") -> list[Batch]:
    """Cut ``samples`` (an (N, ...) array or a list of equal-shape arrays) into batches.

    Every batch has ``batch_size`` rows except possibly the last one, which depends on
    ``last``:

    - ``"ragged"``: the last batch keeps the N % batch_size samples that are left.
    - ``"pad"``: the last batch is filled up to ``batch_size`` rows with **copies of the
      last real sample**, not zeros: a real sample keeps every value in the range the
      model was trained on (zeros can be far outside it after normalisation, and a
      model with data-dependent control flow or a quantized model with calibrated
      ranges should see nothing unusual). ``valid`` says how many rows are real.
    - ``"drop"``: the samples that do not fill a whole batch are left out.

    Batches of an array input are views of it (no copy) except a padded last batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DeployLabError(f"batch_size must be a positive integer, got {batch_size!r}")
    if last not in LAST_BATCH_MODES:
        raise DeployLabError(f"unknown last-batch mode {last!r}; use one of {', '.join(LAST_BATCH_MODES)}")
    array = _as_sample_array(samples)
    count, batch_size = int(array.shape[0]), int(batch_size)
    if last == "drop" and count < batch_size:
        raise DeployLabError(
            f"{count} samples do not fill one batch of {batch_size}, so last='drop' leaves nothing; "
            "use last='pad' or last='ragged', or a smaller batch_size"
        )
    batches = []
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        valid = stop - start
        if valid < batch_size and last == "drop":
            break
        rows = array[start:stop]
        if valid < batch_size and last == "pad":
            filler = np.repeat(rows[-1:], batch_size - valid, axis=0)
            rows = np.concatenate([rows, filler], axis=0)
        batches.append(Batch(rows, valid, np.arange(start, stop)))
    return batches


def _stitch(parts: list[np.ndarray], batches: list[Batch], what: str) -> np.ndarray:
    kept = []
    for number, (part, batch) in enumerate(zip(parts, batches)):
        part = np.asarray(part)
        if part.ndim == 0 or part.shape[0] != batch.size:
            shape = shape_text(part.shape)
            raise DeployLabError(
                f"output {what}of batch {number} has shape {shape}, but the batch had {batch.size} rows; "
                "unbatch needs one output row per input row"
            )
        kept.append(part[: batch.valid])
    return np.concatenate(kept, axis=0)


def unbatch(outputs: list, batches: list[Batch]):
    """Stitch per-batch outputs back into one array (or dict of arrays), padding dropped.

    ``outputs[i]`` is what a runner returned for ``batches[i]``: an array with one row
    per batch row, or a runner's ``{name: array}`` dict. Row j of the result belongs to
    sample j (with ``last="drop"`` only the samples that made it into a batch).
    """
    if len(outputs) != len(batches):
        raise DeployLabError(f"{len(outputs)} outputs for {len(batches)} batches; pass one output per batch")
    if not batches:
        raise DeployLabError("no batches to unbatch")
    if all(isinstance(o, Mapping) for o in outputs):
        names = list(outputs[0])
        for number, out in enumerate(outputs):
            if list(out) != names:
                raise DeployLabError(
                    f"output of batch {number} has names {list(out)}, batch 0 had {names}; "
                    "all batches must come from the same runner"
                )
        return {name: _stitch([o[name] for o in outputs], batches, f"{name!r} ") for name in names}
    if any(isinstance(o, Mapping) for o in outputs):
        raise DeployLabError("outputs mix dicts and arrays; pass all runner dicts or all arrays")
    return _stitch(list(outputs), batches, "")


# ---------------------------------------------------------------- what a runner accepts
def batch_limits(runner) -> tuple[int, int | None]:
    """(smallest, largest) batch size ``runner`` accepts, from its first input's dim 0.

    A fixed dim n gives (n, n); a symbolic dim with bounds (an OpenVINO IR or TensorRT
    engine built for a range) gives those bounds; an unbounded or unknown dim gives
    (1, None).
    """
    specs = runner.inputs
    if not specs or len(specs[0].shape) == 0:
        raise DeployLabError(
            f"runner {runner.name!r} has no batch dimension: its first input is "
            f"{specs[0].describe() if specs else 'missing'}"
        )
    dim = specs[0].shape[0]
    if isinstance(dim, int) and dim >= 0:
        return dim, dim
    if isinstance(dim, str):
        for spec in specs:  # inputs sharing the batch dim may carry its bounds
            for name, low, high in spec.bounds:
                if name == dim:
                    return max(int(low), 1), int(high)
    return 1, None


def check_batch_bounds(runner, batch: Batch | int) -> None:
    """Raise a DeployLabError if ``runner`` cannot take a batch of this size.

    ``batch`` is a :class:`Batch` or a batch size. Checked against the runner's own input
    description (a fixed batch dim, or the bounds of a symbolic one), so the message names
    the range and the fix instead of an engine's shape error.
    """
    size = batch.size if isinstance(batch, Batch) else batch
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DeployLabError(f"batch size must be a positive integer, got {size!r}")
    low, high = batch_limits(runner)
    spec = runner.inputs[0]
    if low == high and size != low:
        raise DeployLabError(
            f"{runner.name} takes a fixed batch of {low} ({spec.describe()}), not {size}; re-export with "
            f"a dynamic batch dim (export_bundle(..., dynamic_batch=True)) or use batch size {low}"
        )
    if high is not None and not (low <= size <= high):
        raise DeployLabError(f"{runner.name}: {out_of_bounds_message(spec.name, spec.shape[0], size, low, high)}")


def batch_feed(runner, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``runner`` with ``batch_size`` rows (see :func:`deploylab.backends.base.seeded_feed`).

    The batch dim is dim 0 of the runner's first input; every input that shares its
    symbolic name gets the same size. Other symbolic dims are 1. The size is not checked
    against the runner's bounds here: call :func:`check_batch_bounds` first.
    """
    specs = runner.inputs
    dim = specs[0].shape[0] if specs and specs[0].shape else None
    if isinstance(dim, str):
        return seeded_feed(specs, {dim: batch_size}, seed)
    if isinstance(dim, int) and dim >= 0:
        return seeded_feed(specs, {}, seed)
    # An unnamed dynamic dim: give it a name only this feed uses.
    specs = [replace(specs[0], shape=("__batch__",) + tuple(specs[0].shape[1:]))] + specs[1:]
    return seeded_feed(specs, {"__batch__": batch_size}, seed)


# ---------------------------------------------------------------- whole datasets
def _as_runner(runner_or_path):
    if isinstance(runner_or_path, (str, Path)):
        from deploylab.backends.registry import backend_for_artifact, make_runner

        return make_runner(backend_for_artifact(runner_or_path), runner_or_path)
    if not hasattr(runner_or_path, "infer") or not hasattr(runner_or_path, "inputs"):
        raise DeployLabError(f"expected a model path or a deploylab runner, got {type(runner_or_path).__name__}")
    return runner_or_path


def predict(runner_or_path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The first output of a single-input model over ``images``, stacked (N, ...).

    ``runner_or_path``: a runner, or an .onnx (ONNX Runtime) / .xml (OpenVINO) path. A
    model with a fixed batch dim is fed that many images per call (the image count must
    be a multiple of it); one with a symbolic batch dim, ``batch_size`` per call.
    """
    runner = _as_runner(runner_or_path)
    spec = runner.inputs[0]
    step = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else batch_size
    if len(images) == 0:
        raise DeployLabError("no images to predict")
    if len(images) % step and isinstance(spec.shape[0], int):
        raise DeployLabError(
            f"{len(images)} images cannot be fed in batches of exactly {step} (the model's fixed batch)"
        )
    name = runner.output_names[0]
    outputs = []
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start : start + step], dtype=spec.dtype)
        outputs.append(runner.infer({spec.name: chunk})[name])
    return np.concatenate(outputs)
