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
