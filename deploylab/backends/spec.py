"""What deploylab knows about a backend, declared once in the backend's own module.

Each backend module ends with one :class:`BackendSpec`; :mod:`deploylab.backends.registry`
holds the tuple of them, and everything that picks, lists or configures engines by name (the
command line's choices, ``make_runner``, ``backend_for_artifact``, the benchmark's equal
thread counts, the support matrix's conformance runners) iterates over that tuple. Adding a
backend (TensorRT-RTX, another ONNX Runtime execution provider) is one module and one line
in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deploylab.backends.base import Runner
from deploylab.errors import DeployLabError


@dataclass(frozen=True)
class BackendSpec:
    """One backend.

    ``reads_onnx``: the runner takes an ONNX file as it is; ``artifacts``: suffixes of the files
    its own build phase writes (which only it runs); ``runner``: the runner class, called as
    ``runner(artifact, **options)``; ``builder``: the build phase, returning a
    :class:`deploylab.backends.build_record.BuildReport` (None: no build phase);
    ``thread_option``/``providers_option``: the runner keyword that takes a CPU thread count /
    an execution-provider list (None: the backend has no such setting); ``conformance_runner``:
    a runner on a serialized ONNX model with the settings the support matrix measures (None:
    the backend cannot run on this kind of machine); ``available``: whether its engine imports.
    """

    name: str
    reads_onnx: bool
    artifacts: tuple[str, ...]
    runner: type[Runner]
    available: Callable[[], bool]
    builder: Callable | None = None
    thread_option: str | None = None
    providers_option: str | None = None
    conformance_runner: Callable[[bytes], Runner] | None = None

    @property
    def loads(self) -> tuple[str, ...]:
        """Every suffix the runner takes."""
        return ((".onnx",) if self.reads_onnx else ()) + self.artifacts

    def runner_options(self, threads: int | None = None, providers: list | None = None) -> dict:
        """Runner keywords for the settings every backend is asked for in the same words (the
        command line's ``--threads``, ``--providers``); refuses a setting this backend lacks."""
        options = {}
        if threads is not None:
            if self.thread_option is None:
                raise DeployLabError(f"the {self.name} backend has no CPU thread setting; drop --threads for it")
            options[self.thread_option] = threads
        if providers:
            if self.providers_option is None:
                raise DeployLabError(f"--providers are ONNX Runtime execution providers; the {self.name} "
                                     "backend has none: drop --providers or run --backends onnxruntime")
            options[self.providers_option] = providers
        return options
