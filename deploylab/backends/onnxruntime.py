"""ONNX Runtime: sessions on the providers that exist here."""

from __future__ import annotations

from pathlib import Path

from deploylab.errors import require
from deploylab.onnx_tools import load_onnx


def create_session(path: str | Path, providers: list[str] | None = None, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for ``path`` (CPU provider unless told otherwise).

    The file is validated through :func:`deploylab.onnx_tools.load_onnx` first so a
    missing or corrupt file gives deploylab's clear error, not ONNX Runtime's.
    """
    ort = require("onnxruntime", "onnxruntime", "running ONNX models")
    load_onnx(path, load_external_data=False)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def predict_logits(path_or_session, images, batch_size: int = 64):
    """Run a single-input ONNX classifier over ``images`` and return the stacked outputs.

    A model exported with a fixed batch of 1 is fed one image at a time; one with a
    symbolic batch dim is fed ``batch_size`` images per call.
    """
    import numpy as np

    session = create_session(path_or_session) if not hasattr(path_or_session, "run") else path_or_session
    meta = session.get_inputs()[0]
    fixed = meta.shape[0] if isinstance(meta.shape[0], int) else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start : start + step], dtype=np.float32)
        outputs.append(session.run(None, {meta.name: chunk})[0])
    return np.concatenate(outputs)
