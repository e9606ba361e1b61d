"""Backend names -> runners, so the CLI and notebooks pick engines by name."""

from __future__ import annotations

from pathlib import Path

from deploylab.backends.base import Runner
from deploylab.errors import DeployLabError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")
# What each backend can load: an ONNX file, or the artifact its own build phase wrote.
ARTIFACT_SUFFIXES = {
    "onnxruntime": (".onnx",),
    "openvino": (".onnx", ".xml"),
    "tensorrt": (".plan", ".engine"),
}


def parse_backends(text: str) -> list[str]:
    """``"onnxruntime,openvino"`` -> ``["onnxruntime", "openvino"]``, each one known."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise DeployLabError(
            f"unknown backend(s) {', '.join(map(repr, unknown or [text]))}; available: {', '.join(BACKENDS)}"
        )
    return names


def backend_for_artifact(path: str | Path) -> str:
    """The backend that runs a built artifact: .xml -> openvino, .plan/.engine -> tensorrt, else onnxruntime."""
    suffix = Path(path).suffix.lower()
    for backend in ("openvino", "tensorrt"):
        if suffix in ARTIFACT_SUFFIXES[backend] and suffix != ".onnx":
            return backend
    return "onnxruntime"


def make_runner(backend: str, artifact: str | Path, **options) -> Runner:
    """A runner of ``backend`` on ``artifact`` (an ONNX file or that backend's built file)."""
    backend = parse_backends(backend)[0]
    suffix = Path(artifact).suffix.lower()
    if suffix not in ARTIFACT_SUFFIXES[backend]:
        raise DeployLabError(
            f"the {backend} backend cannot load {str(artifact)!r}: it takes "
            f"{' or '.join(ARTIFACT_SUFFIXES[backend])} files (a {suffix or 'suffix-less'} file is run by "
            f"{backend_for_artifact(artifact)})"
        )
    if backend == "onnxruntime":
        from deploylab.backends.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, **options)
    if backend == "openvino":
        from deploylab.backends.openvino import OpenVinoRunner

        return OpenVinoRunner(artifact, **options)
    from deploylab.backends.tensorrt import TensorRTRunner

    return TensorRTRunner(artifact, **options)
