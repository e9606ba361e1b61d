"""int8 calibration for TensorRT 10.x: the calibration cache file and the entropy calibrator.

A cache is a text file: a header ``TRT-<NV_TENSORRT_VERSION>-<calibrator>`` and one line per
tensor, ``name: <8 hex digits of the float32 scale>`` (scale = amax / 127). TensorRT reads a
cache only when the header matches its own release and calibrator, so the header must name
the exact release (major.minor.patch: 10.13.2 and 10.13.3 both exist) that will read it.
TensorRT 11 removed calibration: int8 comes from Q/DQ nodes in the model.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.backends.tensorrt.settings import _ROUTE_11
from deploylab.backends.tensorrt.version import TensorRTVersion, detect_install, require_tensorrt
from deploylab.errors import DeployLabError
from deploylab.log import announce
from deploylab.paths import write_atomically

_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


@dataclass
class CalibrationCache:
    """A TensorRT int8 calibration cache: header line and per-tensor scales (amax / 127)."""

    header: str
    scales: dict[str, float]


def calibration_header(version: str | TensorRTVersion, algorithm: str = "EntropyCalibration2") -> str:
    """``TRT-<NV_TENSORRT_VERSION>-<algorithm>``, e.g. ``TRT-100300-EntropyCalibration2`` for 10.3.0.

    ``version`` must be a full release, major.minor.patch: "10.13" would give ``TRT-101300``,
    which TensorRT 10.13.2 and 10.13.3 both reject.
    """
    parsed = TensorRTVersion.parse(version)
    if parsed.given < 3:
        raise DeployLabError(
            f"a calibration cache header names one TensorRT release, and {str(version)!r} names several "
            f"({parsed.major}.{parsed.minor}.0, {parsed.major}.{parsed.minor}.1, ...); give major.minor.patch of the "
            "TensorRT that will read the cache, e.g. '10.13.3' (python -c \"import tensorrt; print(tensorrt.__version__)\")"
        )
    return f"TRT-{parsed.number}-{algorithm}"


def installed_calibration_version() -> TensorRTVersion:
    """The installed full TensorRT 10.x, for a cache header when none is given (with a warning)."""
    install = detect_install()
    if install is None or not install.can_build or not install.version.weakly_typed_builds:
        found = f"here only the {install.describe()}" if install else "no TensorRT is installed here"
        raise DeployLabError(
            f"a calibration cache header needs the TensorRT 10.x release that will read the cache, and {found}: "
            "pass tensorrt_version='10.x.y' (major.minor.patch) or version_tag='TRT-10xxyy-EntropyCalibration2'"
        )
    announce(f"calibration cache header written for the installed TensorRT {install.version}; pass "
             "tensorrt_version='10.x.y' if another release will read it")
    return install.version


def _float_to_hex(value: float) -> str:
    # The cache stores the float32 bit pattern as 8 hex digits, most significant first
    # (ONNX Runtime's TensorRT provider reads it back with strtoul(..., 16)).
    return struct.pack(">f", value).hex()


def _hex_to_float(text: str) -> float:
    return struct.unpack(">f", int(text, 16).to_bytes(4, "big"))[0]


def read_calibration_cache(path: str | Path) -> CalibrationCache:
    """Parse a TensorRT calibration cache file; a bad line raises naming its number."""
    path = Path(path)
    if not path.is_file():
        raise DeployLabError(f"calibration cache {str(path)!r} does not exist; calibrate first")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DeployLabError(f"{str(path)!r} is not a text calibration cache ({exc})") from exc
    if not lines or not _HEADER.match(lines[0].strip()):
        first = lines[0][:60] if lines else "(empty file)"
        raise DeployLabError(
            f"{path.name} line 1: {first!r} is not a calibration cache header like 'TRT-100300-EntropyCalibration2'"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")  # tensor names may hold colons ('input_1:0')
        value = value.strip()
        if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
            raise DeployLabError(
                f"{path.name} line {number}: {line[:80]!r} is not 'tensor_name: <8 hex digits of a float32>'"
            )
        if name in scales:
            raise DeployLabError(f"{path.name} line {number}: tensor {name!r} appears twice")
        scales[name] = _hex_to_float(value)
    return CalibrationCache(lines[0].strip(), scales)


def write_calibration_cache(
    path: str | Path,
    scales: Mapping[str, float],
    version_tag: str | None = None,
    tensorrt_version: str | TensorRTVersion | None = None,
) -> Path:
    """Write ``scales`` (tensor name -> scale = amax / 127) as a TensorRT calibration cache.

    ``version_tag`` is the header line; by default ``TRT-<version>-EntropyCalibration2`` for
    ``tensorrt_version`` (major.minor.patch) or, with a warning, the installed TensorRT 10.x.
    TensorRT compares the header with its own release and rejects the cache on a mismatch, so
    write it for the release that will read it.
    Scales are stored as float32 bit patterns: reading the file back gives them bit for bit.
    """
    if version_tag is None:
        version_tag = calibration_header(tensorrt_version or installed_calibration_version())
    if not _HEADER.match(version_tag):
        raise DeployLabError(f"version_tag {version_tag!r} is not like 'TRT-100300-EntropyCalibration2'")
    lines = [version_tag]
    for name, scale in scales.items():
        if "\n" in name or not name:
            raise DeployLabError(f"tensor name {name!r} cannot be written on one cache line")
        if not math.isfinite(scale) or scale <= 0 or not np.isfinite(np.float32(scale)):
            raise DeployLabError(f"scale {scale!r} of tensor {name!r} must be a positive finite float32")
        lines.append(f"{name}: {_float_to_hex(scale)}")
    path = Path(path)
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per-tensor symmetric int8 scales from observed (min, max): scale = max(|min|, |max|) / 127.

    Values are rounded to float32, exactly what a cache file stores.
    """
    scales = {}
    for name, (low, high) in ranges.items():
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise DeployLabError(f"range ({low}, {high}) of tensor {name!r} must be finite with min <= max")
        amax = max(abs(low), abs(high))
        if amax == 0:
            raise DeployLabError(
                f"tensor {name!r} has range ({low}, {high}): a zero amax gives scale 0, which cannot quantize; "
                "calibrate on data that reaches it or leave the tensor out"
            )
        scales[name] = float(np.float32(amax / 127.0))
    return scales


def make_entropy_calibrator(batches: Iterable[Mapping[str, np.ndarray]], cache_path: str | Path, trt=None):
    """An ``IInt8EntropyCalibrator2`` (TensorRT 10.x only) feeding ``batches`` from torch CUDA buffers.

    ``batches`` yields {input name: numpy array} with the calibration profile's opt shapes. If
    ``cache_path`` exists, TensorRT reads its scales and skips calibration (no GPU buffers are
    made); otherwise it calls ``get_batch`` until the batches run out and writes the cache
    there. The calibrator API is deprecated since 10.1 and removed in 11.x (use Q/DQ nodes).

    An exception raised inside ``get_batch`` does not reach the caller through TensorRT: its
    Python trampoline prints it and reads "no more batches", so the build would go on with
    what it has. The calibrator keeps it in ``error`` instead, and :meth:`raise_error` (called
    by :func:`build_engine_plan` after the build) raises it. ``trt``: the TensorRT module
    (default: the installed full tensorrt).
    """
    if trt is None:
        trt = require_tensorrt("build").module
    version = TensorRTVersion.parse(getattr(trt, "__version__", "0"))
    if not version.weakly_typed_builds or not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise DeployLabError(
            f"TensorRT {version} has no int8 calibrators (removed in 11.x): {_ROUTE_11['int8']}"
        )

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        # Per the IInt8Calibrator docstrings: explicitly initialise the base class, return device
        # pointers from get_batch (None when done), return bytes or None from read_calibration_cache.
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.batches = iter(batches)
            self.device_buffers = {}  # torch CUDA tensors, alive until the next get_batch
            self.count = 0
            self.error: BaseException | None = None

        def get_batch_size(self):
            # Batch size is part of each tensor's shape in explicit-batch networks (all of 10.x);
            # Polygraphy's calibrator returns 1 here too.
            return 1

        def get_batch(self, names):
            if self.error is not None:
                return None
            try:
                return self._next_batch(list(names))
            except BaseException as exc:  # noqa: BLE001 - kept for raise_error: TensorRT would swallow it
                self.error = exc
                return None

        def _next_batch(self, names):
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            missing = [n for n in names if n not in batch]
            if missing:
                raise DeployLabError(
                    f"calibration batch {self.count} lacks input(s) {', '.join(missing)}; it has {', '.join(batch)}"
                )
            import torch

            if not torch.cuda.is_available():
                raise DeployLabError("int8 calibration runs the model on the GPU, and torch sees no CUDA device here")
            self.device_buffers = {
                n: torch.from_numpy(np.ascontiguousarray(batch[n])).to("cuda") for n in names
            }
            torch.cuda.synchronize()  # the copies must land before TensorRT reads the buffers
            self.count += 1
            return [int(self.device_buffers[n].data_ptr()) for n in names]

        def raise_error(self) -> None:
            """Raise what ``get_batch`` raised, if anything (after the build returned)."""
            if self.error is None:
                return
            if isinstance(self.error, DeployLabError):
                raise self.error
            raise DeployLabError(
                f"int8 calibration stopped at batch {self.count}: get_batch raised "
                f"{type(self.error).__name__}: {self.error}"
            ) from self.error

        def read_calibration_cache(self):
            if self.cache_path.is_file() and self.cache_path.stat().st_size:
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            write_atomically(self.cache_path, memoryview(cache).tobytes())

    return EntropyCalibrator()
