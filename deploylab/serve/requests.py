"""What a served model takes and answers, without Ray: a request body (image bytes, or a JSON array of
a preprocessed input) -> one sample; one output row -> the JSON answer; the batch sizes a runner
can be served at.

Bad requests raise :class:`BadRequest`, a :class:`DeployLabError` carrying the HTTP status to answer
with and a one-line reason, so a replica answers them and keeps running.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.backends.base import TensorSpec
from deploylab.errors import DeployLabError
from deploylab.text import shape_text

#: The largest request body a server accepts unless told otherwise (a 224x224 float32 input as JSON
#: text is about 1.5 MB; photos are rarely larger than a few MB).
DEFAULT_MAX_BODY_BYTES = 8 * 2**20


#: The largest decoded image a server accepts. OpenCV itself stops at 2**30 pixels
#: (``OPENCV_IO_MAX_IMAGE_PIXELS``), which a 3 MB PNG can reach (3 GB decoded): the replica sets that
#: variable to this value, so such a file fails to decode instead of exhausting memory.
MAX_IMAGE_PIXELS = 2**26


class BadRequest(DeployLabError):
    """A request the server refuses: ``status`` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def preprocessing_for_model(model_path: str | Path | None, spec: TensorSpec):
    """(ImagePreprocessing or None, a line saying which and why) for images fed to ``spec``.

    The model file's own metadata first (what ``deploylab export`` records); else, for a square
    3-channel input, the mmcls ImageNet pipeline scaled to its size; else None (the model takes
    only preprocessed arrays). The same rule as ``deploylab run``.
    """
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.onnx_tools import preprocessing_for_artifact

    prep, source = preprocessing_for_artifact(model_path) if model_path is not None else (None, "no model file")
    channels, height, width = spec.shape[1:] if len(spec.shape) == 4 else (None, None, None)
    if prep is not None:
        if isinstance(height, int) and (prep.crop_size != height or prep.crop_size != width):
            raise DeployLabError(f"{source} makes {prep.crop_size}x{prep.crop_size} inputs, but the model "
                                 f"input is {spec.describe()}; re-export the model")
        return prep, f"preprocessing: {source}"
    if channels != 3 or not isinstance(height, int) or height != width:
        return None, (f"no image preprocessing: the model input is {spec.describe()} and images are "
                      "preprocessed only for square 3-channel inputs; send preprocessed arrays")
    prep = ImagePreprocessing(resize_short=round(height * 256 / 224), crop_size=height)
    return prep, (f"preprocessing: {source}; using the default {prep.name} (resize {prep.resize_short}, crop "
                  f"{height}, ImageNet mean/std): re-export with deploylab export to record the model's own")


def class_names(model_path: str | Path | None, num_classes: int | None) -> list[str] | None:
    """The class names of a classifier's output: ImageNet-1k when the model's metadata says so, or
    when it has 1000 outputs and says nothing; else None (classes are then named "class N")."""
    from deploylab.onnx_tools import read_metadata

    labels = read_metadata(model_path).get("labels") if model_path is not None else None
    if labels == "imagenet-1k" or (labels is None and num_classes == 1000):
        from deploylab.data.images import load_imagenet_classes

        return load_imagenet_classes()
    return None


def sample_shape(spec: TensorSpec) -> tuple:
    """The shape of one sample of ``spec``: its shape without the batch dim."""
    return tuple(spec.shape[1:])


def _matches(shape: tuple, want: tuple) -> bool:
    return len(shape) == len(want) and all(
        not isinstance(w, int) or w < 0 or w == s for s, w in zip(shape, want))


@dataclass(frozen=True)
class RequestReader:
    """Turns request bodies into samples for one model input (``spec``), with ``prep`` for images
    (None: arrays only) and a body-size limit."""

    spec: TensorSpec
    prep: object | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def read(self, body: bytes, content_type: str = "") -> np.ndarray:
        """One sample (the input without its batch dim) from a request body, or BadRequest."""
        if len(body) > self.max_body_bytes:
            raise BadRequest(413, f"request body of {len(body):,} bytes is over the server's limit of "
                                  f"{self.max_body_bytes:,}; send a smaller image or start the server with a "
                                  "larger --max-body-mb")
        if not body:
            raise BadRequest(400, "empty request body; send image bytes (JPEG/PNG) or JSON "
                                  '{"array": [...], "shape": [...]}')
        if "json" in content_type.lower() or body[:1] in (b"{", b"["):
            return self._array(body)
        return self._image(body)

    def _image(self, body: bytes) -> np.ndarray:
        if self.prep is None:
            raise BadRequest(415, f"this model's input {self.spec.describe()} is not an image; send JSON "
                                  '{"array": [...], "shape": [...]} of a preprocessed input')
        from deploylab.data.preprocess import ImagePreprocessing

        try:
            image = ImagePreprocessing.decode(body, "request body")
        except DeployLabError as exc:
            raise BadRequest(415, f"{exc}; send JPEG/PNG bytes or JSON of a preprocessed array") from None
        height, width = image.shape[:2]
        if height * width > MAX_IMAGE_PIXELS:
            raise BadRequest(413, f"image of {width}x{height} pixels is over the server's limit of "
                                  f"{MAX_IMAGE_PIXELS:,} pixels; send a smaller image")
        return self.prep(image).astype(self.spec.dtype, copy=False)

    def _array(self, body: bytes) -> np.ndarray:
        try:
            data = json.loads(body)
        except RecursionError:
            raise BadRequest(400, "request body nests JSON too deeply; send "
                                  '{"array": [...], "shape": [...]} nested as deep as the input\'s rank') from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"request body is not valid JSON ({exc}); send "
                                  '{"array": [...], "shape": [...]}') from None
        if not isinstance(data, dict) or "array" not in data:
            raise BadRequest(400, 'JSON body must be an object {"array": [...], "shape": [...]} '
                                  f"(got {type(data).__name__}{' without an array' if isinstance(data, dict) else ''})")
        want_dtype = np.dtype(self.spec.dtype)
        if "dtype" in data and str(data["dtype"]) != want_dtype.name:
            raise BadRequest(422, f"dtype {data['dtype']!r} is not the model's {want_dtype.name}; send "
                                  f"{want_dtype.name} values")
        try:
            array = np.asarray(data["array"], dtype=np.float64)
        except (ValueError, TypeError, RecursionError):
            raise BadRequest(422, "array must be a (nested) list of numbers of one shape") from None
        if "shape" in data:
            shape = data["shape"]
            if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                    or math.prod(shape) != array.size):
                raise BadRequest(422, f"shape {shape!r} does not fit the {array.size} values sent; give a list "
                                      "of non-negative integers whose product is the number of values")
            array = array.reshape(shape)
        if not np.all(np.isfinite(array)):
            raise BadRequest(422, "array holds NaN or infinite values; send finite numbers")
        want = sample_shape(self.spec)
        if array.ndim == len(want) + 1 and array.shape[0] == 1:
            array = array[0]  # one sample sent with its batch dim
        if not _matches(array.shape, want):
            raise BadRequest(422, f"array of shape {shape_text(array.shape)} is not one sample of the model "
                                  f"input {self.spec.describe()}: send shape {shape_text(want)}")
        if want_dtype.kind in "iub" and not np.all(array == np.round(array)):
            raise BadRequest(422, f"the model takes {want_dtype.name}; the array holds fractions")
        return array.astype(want_dtype)


def answer(scores: np.ndarray, classes: list[str] | None, k: int, batch_size: int) -> dict:
    """The JSON answer for one output row: top ``k`` classes with probabilities, and the size of the
    batch the request ran in."""
    from deploylab.postprocess import top_k

    row = np.asarray(scores).reshape(1, -1)
    ranked = top_k(row, min(k, row.shape[1]), classes)[0]
    return {"top_k": [{"class": p.label, "index": p.index, "score": round(p.probability, 6)} for p in ranked],
            "batch_size": int(batch_size)}


def serving_batch(runner, max_batch: int) -> int:
    """The smallest batch ``runner`` takes (batches with fewer requests are padded up to it), after
    checking that it can take every batch from 1 to ``max_batch``; refused with the reason otherwise."""
    from deploylab.batching import batch_limits

    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise DeployLabError(f"max batch size must be a positive integer, got {max_batch!r}")
    low, high = batch_limits(runner)
    spec = runner.inputs[0]
    if low == high and max_batch > low:
        raise DeployLabError(
            f"{runner.name} takes a fixed batch of {low} ({spec.describe()}), so it cannot be served at "
            f"--max-batch {max_batch}: use --max-batch {low} or less, or re-export with --dynamic-batch")
    if high is not None and max_batch > high:
        raise DeployLabError(
            f"{runner.name} was built for batch sizes {low} to {high} ({spec.describe()}), so it cannot be served "
            f"at --max-batch {max_batch}: use --max-batch {high} or less, or rebuild it for a larger batch")
    return low


def stack_batch(samples: list[np.ndarray], smallest: int) -> np.ndarray:
    """Samples stacked into one batch, padded with copies of the last up to ``smallest`` rows."""
    batch = np.stack(samples)
    if len(samples) < smallest:
        batch = np.concatenate([batch, np.repeat(batch[-1:], smallest - len(samples), axis=0)])
    return batch
