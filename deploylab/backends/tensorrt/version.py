"""Which TensorRT is importable here, and which of its three runtimes.

TensorRT ships three runtime libraries, each with its own Python module:

- **full** (``tensorrt``): builder, ONNX parser, runtime, engine inspector.
- **lean** (``tensorrt_lean``; the PyPI bindings wheel installs ``tensorrt_lean_bindings``):
  a small runtime that only deserializes and runs *version-compatible* plans built by the
  same TensorRT release.
- **dispatch** (``tensorrt_dispatch`` / ``tensorrt_dispatch_bindings``): a shim that loads
  the lean runtime embedded in a version-compatible plan, so it runs version-compatible
  plans built by older releases too.

trtexec --help (10.x and 11.x): ``--useRuntime=full|lean|dispatch``, where lean and dispatch
"require loading VC engine". https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field

from deploylab.errors import DeployLabError, MissingDependencyError

INSTALL_HINT = (
    "pip install tensorrt (needs an NVIDIA GPU with a recent driver; the wheels download "
    "their libraries from NVIDIA's own package index, so a machine that cannot reach it "
    "cannot install them)"
)
RUNTIME_KINDS = ("full", "lean", "dispatch")
#: Module names tried, in order of preference, and the runtime each one is.
RUNTIME_MODULES: tuple[tuple[str, str], ...] = (
    ("tensorrt", "full"),
    ("tensorrt_lean", "lean"), ("tensorrt_lean_bindings", "lean"),
    ("tensorrt_dispatch", "dispatch"), ("tensorrt_dispatch_bindings", "dispatch"),
)


@dataclass(frozen=True, order=True)
class TensorRTVersion:
    """A TensorRT version: major.minor.patch[.build] (build ignored unless both sides have it)."""

    major: int
    minor: int = 0
    patch: int = 0
    build: int | None = field(default=None, compare=False)
    #: How many of major/minor/patch the text gave ("10.13" -> 2): a calibration cache needs 3.
    given: int = field(default=3, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str | TensorRTVersion) -> TensorRTVersion:
        """``"10.3.0.26"``, ``"11.4"``, ``"TensorRT 10.13.3"`` -> TensorRTVersion."""
        if isinstance(text, TensorRTVersion):
            return text
        match = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not match:
            raise DeployLabError(
                f"cannot read a TensorRT version from {text!r}; write it as major.minor.patch, e.g. '10.3.0'"
            )
        major, minor, patch, build = (int(g) if g is not None else None for g in match.groups())
        given = 1 + (minor is not None) + (patch is not None)
        return cls(major, minor or 0, patch or 0, build, given)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build is not None else "")

    def same_release(self, other: TensorRTVersion) -> bool:
        """Equal major.minor.patch, and build too when both know it (plans need an exact match)."""
        if (self.major, self.minor, self.patch) != (other.major, other.minor, other.patch):
            return False
        return self.build is None or other.build is None or self.build == other.build

    @property
    def number(self) -> int:
        """``NV_TENSORRT_VERSION``: major*10000+minor*100+patch from 10.x on (8.x: major*1000+...).

        This is the number in a calibration cache header (``TRT-100300-EntropyCalibration2``).
        """
        return self.major * (10000 if self.major >= 10 else 1000) + self.minor * 100 + self.patch

    @property
    def weakly_typed_builds(self) -> bool:
        """True where fp16/bf16/int8 builder flags and calibrators exist (TensorRT 10.x)."""
        return self.major < 11


@dataclass(frozen=True)
class TensorRTInstall:
    """One importable TensorRT runtime: its module, version and kind (full, lean or dispatch)."""

    module: object
    version: TensorRTVersion
    kind: str

    @property
    def can_build(self) -> bool:
        return self.kind == "full" and hasattr(self.module, "Builder")

    def describe(self) -> str:
        return f"{self.kind} runtime {getattr(self.module, '__name__', '?')} {self.version}"


def detect_runtimes() -> list[TensorRTInstall]:
    """Every importable TensorRT runtime, full first, then lean, then dispatch (one per kind)."""
    found: dict[str, TensorRTInstall] = {}
    for name, kind in RUNTIME_MODULES:
        if kind in found:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken install raises OSError/RuntimeError, not only ImportError
            continue
        # The PyPI sdist stub installs a 'tensorrt' package without bindings: not usable.
        if not hasattr(module, "Runtime"):
            continue
        found[kind] = TensorRTInstall(module, TensorRTVersion.parse(getattr(module, "__version__", "0")), kind)
    return [found[k] for k in RUNTIME_KINDS if k in found]


def detect_install() -> TensorRTInstall | None:
    """The preferred importable TensorRT runtime (full, else lean, else dispatch), or None."""
    runtimes = detect_runtimes()
    return runtimes[0] if runtimes else None


def detect_tensorrt():
    """``(module or None, TensorRTVersion or None, runtime_only)`` of the preferred runtime.

    ``runtime_only`` is True for the lean and dispatch runtimes, which cannot build, parse
    ONNX or inspect engines. :func:`detect_install` also says which of the two it is.
    """
    install = detect_install()
    if install is None:
        return None, None, False
    return install.module, install.version, install.kind != "full"


def require_tensorrt(phase: str) -> TensorRTInstall:
    """The TensorRT runtime for ``phase`` ("build" needs the full one), or an error saying what to install."""
    install = detect_install()
    if install is None:
        raise MissingDependencyError(
            f"the TensorRT {phase} phase needs the Python module 'tensorrt', which is not importable; "
            f"install it with: {INSTALL_HINT}"
        )
    if phase == "build" and not install.can_build:
        raise MissingDependencyError(
            f"building a TensorRT plan needs the full 'tensorrt' module (Builder, OnnxParser), but only the "
            f"{install.describe()} is installed; it can run version-compatible plans, not build them. "
            f"Install the builder with: {INSTALL_HINT}"
        )
    return install
