"""The inputs ``tune`` judges fidelity on: held out from calibration, labelled where labels exist.

Calibration (:func:`deploylab.quantize.dispatch.calibration_for_model`) draws from the digits
train split and from the *calibration* augmentations of the shipped photos; fidelity is
measured here on the digits test split and on the *evaluation* augmentations (every view
rotated, which calibration never does; see :mod:`deploylab.data.calibration`), so no judged
input is one the quantizer fitted its ranges on. Any other input gets seeded random inputs,
with a warning: random inputs say whether two models compute the same function, not whether
it still recognises anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploylab.errors import DeployLabError

#: Held-out views of the labelled photos: 320 resolve one view in 320 (0.3 points of agreement).
DEFAULT_VIEWS = 320


@dataclass
class HeldOut:
    """Inputs (N, ...) float32, the accepted classes per row (None without labels), where they
    come from, and a warning when they cannot judge much."""

    inputs: np.ndarray
    accepted: list[tuple[int, ...]] | None
    source: str
    warning: str | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def _multiple_of(count: int, batch: int) -> int:
    return max(batch, -(-count // batch) * batch)


def _single_float_input(onnx_path):
    from deploylab.onnx_tools import graph_inputs, graph_outputs, load_onnx

    model = load_onnx(onnx_path, load_external_data=False)
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    if len(inputs) != 1 or inputs[0].dtype != "float32" or not outputs:
        names = ", ".join(f"{t.name}: {t.dtype}[{t.shape_text()}]" for t in inputs) or "none"
        raise DeployLabError(f"tune judges models with one float32 input and at least one output; {str(onnx_path)!r} "
                             f"has inputs {names} and {len(outputs)} output(s)")
    return inputs[0], outputs


def held_out_inputs(onnx_path, batch: int, count: int | None = None, seed: int = 0) -> HeldOut:
    """The held-out inputs for the single-input model at ``onnx_path``, fed ``batch`` at a time
    (the count is rounded up to a multiple of ``batch``).

    1x32x32 inputs: the digits test split (labels). Image inputs: ``count`` evaluation views
    (default 320) of the photos, preprocessed as the file's metadata says (else, for 3x224x224,
    with the mmcls ImageNet pipeline, as calibration does), of the labelled photos when the
    outputs are ImageNet-1k classes (the metadata says so, or the first output has 1000 values).
    Anything else: ``count`` (default 64) seeded normal inputs, with a warning. Only the first
    output is judged; ``source`` names it.
    """
    from deploylab.data.calibration import (
        DIGITS_INPUT,
        IMAGENET_INPUT,
        image_evaluation_set,
        labelled_evaluation_views,
    )
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.onnx_tools import preprocessing_for_artifact, read_metadata

    spec, outputs = _single_float_input(onnx_path)
    judged = f"; judged on output {outputs[0].name!r}" + (f" (of {len(outputs)})" if len(outputs) > 1 else "")
    sample = tuple(spec.shape[1:])
    if sample == DIGITS_INPUT:
        from deploylab.data.digits import load_digits_split

        test = load_digits_split("test")
        n = (len(test) // batch) * batch
        if n == 0:
            raise DeployLabError(f"batch {batch} is larger than the digits test split ({len(test)} images)")
        return HeldOut(np.ascontiguousarray(test.images[:n], dtype=np.float32),
                       [(int(label),) for label in test.labels[:n]],
                       f"{n} digits of the test split (calibration uses the train split){judged}")
    prep, _ = preprocessing_for_artifact(onnx_path)
    if prep is None and sample == IMAGENET_INPUT:
        prep = ImagePreprocessing()  # what calibration uses for such a file too
    if prep is not None and sample == tuple(prep.input_shape):
        n = _multiple_of(count or DEFAULT_VIEWS, batch)
        classes = outputs[0].shape[-1] if outputs[0].shape else None
        if read_metadata(onnx_path).get("labels") == "imagenet-1k" or classes == 1000:
            views = labelled_evaluation_views(n, seed=seed, preprocessing=prep)
            return HeldOut(views.images, list(views.accepted),
                           f"{n} evaluation views of the labelled photos ({prep.name}; rotated, which the "
                           f"calibration views never are){judged}")
        return HeldOut(image_evaluation_set(n, seed=seed, preprocessing=prep), None,
                       f"{n} evaluation views of the shipped photos ({prep.name}){judged}")
    if any(not isinstance(d, int) or d < 1 for d in sample):
        raise DeployLabError(f"input {spec.name!r} has a symbolic dim beyond the batch ({sample}); tune needs "
                             "fixed sample dims: export with a fixed --input-shape")
    n = _multiple_of(count or 64, batch)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    return HeldOut(rng.standard_normal((n, *sample), dtype=np.float32), None,
                   f"{n} seeded normal inputs (seed {seed}){judged}",
                   warning="seeded random inputs judge little: they show whether a candidate computes the same "
                           "function, not whether it still recognises real inputs; export with deploylab "
                           "(image preprocessing in the metadata) or give a model with a built-in data set")


def accuracy(outputs: np.ndarray, accepted) -> float:
    """Top-1 accuracy (0..1) of (N, C) ``outputs`` against the accepted classes per row."""
    best = np.asarray(outputs).reshape(len(outputs), -1).argmax(axis=1)
    return float(np.mean([int(b) in set(a) for b, a in zip(best, accepted)]))
