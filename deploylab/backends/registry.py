"""Backend names -> runners, so the CLI and notebooks pick engines by name."""

from __future__ import annotations

from pathlib import Path

from deploylab.backends.base import Runner
from deploylab.errors import DeployLabError

BACKENDS = ("onnxruntime",)


def parse_backends(text: str) -> list[str]:
    """``"onnxruntime,openvino"`` -> ``["onnxruntime", "openvino"]``, each one known."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise DeployLabError(
            f"unknown backend(s) {', '.join(map(repr, unknown or [text]))}; available: {', '.join(BACKENDS)}"
        )
    return names


def make_runner(backend: str, artifact: str | Path, **options) -> Runner:
    """A runner of ``backend`` on ``artifact`` (an ONNX file), with backend options."""
    backend = parse_backends(backend)[0]
    if backend == "onnxruntime":
        from deploylab.backends.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, **options)
    raise AssertionError(backend)  # parse_backends only returns known names
