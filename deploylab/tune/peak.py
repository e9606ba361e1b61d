"""How many images per second this CPU could do at most in int8: an estimate to hold throughput against.

peak = cores x clock x int8 multiply-accumulates per cycle per core / MACs per image.

The MACs per image are counted on the converted graph (convolutions and MatMuls; the rest of
a CNN's work is small next to them). The MACs per cycle follow the widest int8
dot-product unit the CPU reports, with stated assumptions (two vector pipes; the real count
depends on the microarchitecture). The clock is what /proc/cpuinfo reports, which in a VM is
often the nominal rather than the boost clock. It is an estimate to compare with, not a
measurement: the text says how it was computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploylab.errors import DeployLabError

# (cpu flag, int8 MACs per cycle per core, why). First match wins.
_UNITS = (
    ("amx_int8", 1024, "AMX int8 tiles: 1024 int8 MACs per cycle per core (Intel's 2048 int8 ops/cycle)"),
    ("avx512_vnni", 128, "AVX-512 VNNI: 64 int8 MACs per VPDPBUSD, 2 per cycle assumed"),
    ("avx_vnni", 64, "AVX-VNNI: 32 int8 MACs per 256-bit VPDPBUSD, 2 per cycle assumed"),
    ("avx2", 32, "AVX2 without VNNI: 32 int8 MACs per VPMADDUBSW, which needs two more instructions to "
                 "accumulate (about half the VNNI rate at 2 pipes)"),
)


def model_macs(onnx_path: str | Path) -> int:
    """Multiply-accumulates of one inference of the model at its declared (fixed) shapes.

    Counted on OpenVINO's converted graph, whose shapes are propagated through computed pads
    and reshapes (ONNX's own shape inference leaves them unknown): Convolution,
    GroupConvolution and MatMul, the bulk of a CNN's or transformer's work.
    """
    import numpy as np

    from deploylab.backends.openvino import read_model

    total = 0
    for op in read_model(onnx_path).get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        out, a, b = (op.get_output_partial_shape(0), op.get_input_partial_shape(0), op.get_input_partial_shape(1))
        if not (out.is_static and a.is_static and b.is_static):
            continue
        out, a, b = out.to_shape(), a.to_shape(), b.to_shape()
        if kind == "Convolution":  # weights [Cout, Cin, k...]
            total += int(np.prod(out)) * int(np.prod(list(b)[1:]))
        elif kind == "GroupConvolution":  # weights [G, Cout/G, Cin/G, k...]
            total += int(np.prod(out)) * int(np.prod(list(b)[2:]))
        else:
            transposed = op.get_attributes().get("transpose_a", False)
            total += int(np.prod(out)) * int(a[-2] if transposed else a[-1])
    if total == 0:
        raise DeployLabError(f"{str(onnx_path)!r} has no convolution or MatMul with static shapes to count MACs of; "
                             "fix its input shape first")
    return total


@dataclass(frozen=True)
class PeakEstimate:
    cores: int
    mhz: float
    macs_per_cycle: int
    unit: str
    macs_per_image: int

    @property
    def images_per_s(self) -> float:
        return self.cores * self.mhz * 1e6 * self.macs_per_cycle / self.macs_per_image

    def format(self) -> str:
        return (f"estimated int8 peak {self.images_per_s:.0f} images/s = {self.cores} cores x {self.mhz:.0f} MHz "
                f"(/proc/cpuinfo) x {self.macs_per_cycle} int8 MACs/cycle ({self.unit}) / "
                f"{self.macs_per_image / 1e9:.2f} GMAC per image")


def estimate_int8_peak(onnx_path: str | Path, env: dict | None = None) -> PeakEstimate:
    """The int8 peak images/s of this machine for the model at ``onnx_path`` (one image per batch
    row of its fixed input shape); ``env`` is :func:`deploylab.env.collect_environment`'s dict."""
    from deploylab.env import collect_environment, cpu_mhz

    env = env or collect_environment()
    flags, cores = env.get("cpu_flags") or {}, int(env.get("cpu_count") or 1)
    mhz = cpu_mhz()
    if not mhz:
        raise DeployLabError("this machine's /proc/cpuinfo gives no 'cpu MHz'; the int8 peak cannot be estimated")
    _, per_cycle, unit = next(((f, n, u) for f, n, u in _UNITS if flags.get(f)),
                                 ("", 16, "no AVX2: 16 int8 MACs per cycle assumed"))
    from deploylab.quantize._common import single_input

    batch = single_input(onnx_path).shape[0]
    per_image = model_macs(onnx_path) // (batch if isinstance(batch, int) and batch > 0 else 1)
    return PeakEstimate(cores, mhz, per_cycle, unit, per_image)
