"""The backends deploylab runs, each declared once (its module's ``SPEC``), picked by name.

The command line, notebooks, the benchmark and the support matrix choose engines through
this tuple; nothing else lists backends.
"""

from __future__ import annotations

from pathlib import Path

from deploylab.backends import onnxruntime, openvino, tensorrt
from deploylab.backends.base import Runner
from deploylab.backends.spec import BackendSpec
from deploylab.errors import DeployLabError

#: Every backend, the default (the one that runs a plain ONNX file) first.
SPECS: tuple[BackendSpec, ...] = (onnxruntime.SPEC, openvino.SPEC, tensorrt.SPEC)
BACKENDS = tuple(spec.name for spec in SPECS)
#: What each backend can load: an ONNX file, or the artifact its own build phase wrote.
ARTIFACT_SUFFIXES = {spec.name: spec.loads for spec in SPECS}


def spec_for(name: str) -> BackendSpec:
    """The spec of backend ``name`` (checked: see :func:`parse_backends`)."""
    wanted = parse_backends(name)[0]
    return next(spec for spec in SPECS if spec.name == wanted)


def builders() -> tuple[str, ...]:
    """Backends with a build phase (ONNX -> their own artifact)."""
    return tuple(spec.name for spec in SPECS if spec.builder is not None)


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
    """The backend that runs a file: the one whose build phase writes its suffix (.xml -> openvino,
    .plan/.engine -> tensorrt), else the default backend (an ONNX file -> onnxruntime)."""
    suffix = Path(path).suffix.lower()
    owner = next((spec for spec in SPECS if suffix in spec.artifacts), SPECS[0])
    return owner.name


def make_runner(backend: str, artifact: str | Path, **options) -> Runner:
    """A runner of ``backend`` on ``artifact`` (an ONNX file or that backend's built file)."""
    spec = spec_for(backend)
    suffix = Path(artifact).suffix.lower()
    if suffix not in spec.loads:
        raise DeployLabError(
            f"the {spec.name} backend cannot load {str(artifact)!r}: it takes "
            f"{' or '.join(spec.loads)} files (a {suffix or 'suffix-less'} file is run by "
            f"{backend_for_artifact(artifact)})"
        )
    return spec.runner(artifact, **options)
