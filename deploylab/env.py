"""The machine and software a result was measured on.

A latency or an accuracy drop means little without the CPU (does it have VNNI or AMX
for int8, bf16 units?), the core count, the engine versions and the execution
providers that were actually available. Nothing heavy is imported until
:func:`collect_environment` is called.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")
# package -> distribution names to try, first found wins (TensorRT's lean runtime ships
# under CUDA-specific names).
_PACKAGES = {
    "torch": ("torch",), "torchvision": ("torchvision",), "onnx": ("onnx",), "onnxscript": ("onnxscript",),
    "onnxruntime": ("onnxruntime",), "onnxruntime-gpu": ("onnxruntime-gpu",), "openvino": ("openvino",),
    "nncf": ("nncf",), "tensorrt": ("tensorrt",),
    "tensorrt_lean": ("tensorrt-lean-cu13-bindings", "tensorrt_lean"),
    "tensorrt_dispatch": ("tensorrt-dispatch-cu13-bindings", "tensorrt_dispatch"),
    "mmcv": ("mmcv",), "mmcls": ("mmcls",), "numpy": ("numpy",), "scikit-learn": ("scikit-learn",),
}


def _proc_field(path: str, key: str) -> str | None:
    """Value of the first ``key: value`` line of a /proc file, None if unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> dict[str, bool]:
    """The instruction-set flags deploylab cares about, from /proc/cpuinfo (all False elsewhere)."""
    present = set((_proc_field("/proc/cpuinfo", "flags") or "").split())
    return {flag: flag in present for flag in _CPU_FLAGS}


def _package_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpus_and_threads() -> tuple[list[dict], int | None]:
    try:
        import torch
    except ImportError:
        return [], None
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1)})
    return gpus, torch.get_num_threads()


def _onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _openvino_devices() -> list[str] | None:
    """OpenVINO's devices; [] if it is not installed, None if it failed to enumerate them."""
    try:
        import openvino
    except ImportError:
        return []
    try:
        return list(openvino.Core().available_devices)
    except RuntimeError:  # a broken plugin or driver surfaces as RuntimeError from the C++ core
        return None


def collect_environment() -> dict:
    """Describe this machine and its deployment software, as a JSON-serialisable dict.

    Keys: ``python``, ``platform``, ``machine``, ``cpu_model``, ``cpu_count`` (logical
    CPUs), ``cpu_flags`` (avx2, avx512f, avx512_vnni, avx_vnni, amx_tile, amx_bf16,
    amx_int8, avx512_bf16 -> bool), ``memory_gib`` (total RAM in GiB, None if unknown),
    ``packages`` (name -> installed version or None), ``onnxruntime_providers``,
    ``openvino_devices`` (None if OpenVINO failed to list them), ``gpu`` (list of
    {name, compute_capability, memory_gib} for CUDA devices) and ``torch_threads``
    (torch's intra-op thread count, None without torch). Imports torch, onnxruntime and
    openvino if installed, so the first call takes a few seconds.
    """
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    gpus, threads = _gpus_and_threads()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "memory_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "packages": {name: _package_version(dists) for name, dists in _PACKAGES.items()},
        "onnxruntime_providers": _onnxruntime_providers(),
        "openvino_devices": _openvino_devices(),
        "gpu": gpus,
        "torch_threads": threads,
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_environment(env: dict) -> str:
    """A readable multi-line report of :func:`collect_environment`'s dict, aligned ``key: value``."""
    flags = env.get("cpu_flags", {})
    amx_kinds = [kind for kind in ("bf16", "int8") if flags.get(f"amx_{kind}")]
    amx = f"yes ({', '.join(amx_kinds)})" if flags.get("amx_tile") and amx_kinds else _yes(flags.get("amx_tile"))
    cpu_flags = (f"AVX-512 VNNI: {_yes(flags.get('avx512_vnni'))}, AVX-VNNI: {_yes(flags.get('avx_vnni'))}, "
                 f"AMX: {amx}, AVX-512 BF16: {_yes(flags.get('avx512_bf16'))}, "
                 f"AVX-512F: {_yes(flags.get('avx512f'))}, AVX2: {_yes(flags.get('avx2'))}")
    gpus = "; ".join(f"{g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)"
                     for g in env.get("gpu") or []) or "none"
    memory = env.get("memory_gib")
    ov_devices = env.get("openvino_devices", [])
    rows = [
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("machine", env.get("machine")),
        ("cpu", env.get("cpu_model")),
        ("cpu count", f"{env['cpu_count']} logical" if env.get("cpu_count") else None),
        ("cpu flags", cpu_flags),
        ("int8 dot product (VNNI/AMX) / bf16", f"{_yes(cpu_has_vnni(env))} / {_yes(cpu_supports_bf16(env))}"),
        ("memory", f"{memory} GiB" if memory is not None else "unknown"),
        ("gpu", gpus),
        ("torch threads", env.get("torch_threads")),
        ("onnxruntime providers", ", ".join(env.get("onnxruntime_providers") or []) or "none"),
        ("openvino devices", "error listing devices" if ov_devices is None else ", ".join(ov_devices) or "none"),
    ]
    rows += [(f"  {name}", version or "not installed") for name, version in env.get("packages", {}).items()]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}} : {'unknown' if value is None else value}" for key, value in rows]
    lines.insert(len(rows) - len(env.get("packages", {})), "packages:")
    return "\n".join(lines)


def machine_line(env: dict | None = None) -> str:
    """One line naming the CPU and what it has for fast inference, to print above a table.

    ``"Intel(R) Xeon(R) Processor, 2 logical CPUs; VNNI: AVX-512, AMX: bf16+int8, BF16: AVX-512"``.
    ``env`` is :func:`collect_environment`'s dict; without it, /proc/cpuinfo is read now.
    """
    if env is None:
        env = {"cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
               "cpu_count": os.cpu_count(), "cpu_flags": _cpu_flags()}
    flags = env.get("cpu_flags", {})
    vnni = "+".join(kind for kind, flag in (("AVX-512", "avx512_vnni"), ("AVX", "avx_vnni")) if flags.get(flag))
    amx = "+".join(kind for kind in ("bf16", "int8") if flags.get(f"amx_{kind}")) if flags.get("amx_tile") else ""
    bf16 = "+".join(kind for kind, present in (("AVX-512", flags.get("avx512_bf16")),
                                                ("AMX", flags.get("amx_tile") and flags.get("amx_bf16"))) if present)
    simd = "AVX-512" if flags.get("avx512f") else "AVX2" if flags.get("avx2") else "no AVX2"
    return (f"{env.get('cpu_model') or 'unknown cpu'}, {env.get('cpu_count') or '?'} logical CPUs; "
            f"SIMD: {simd}, VNNI: {vnni or 'no'}, AMX: {amx or 'no'}, BF16: {bf16 or 'no'}")


def cpu_mhz() -> float | None:
    """The clock /proc/cpuinfo reports for the first CPU, in MHz (None where it reports none). In a
    VM this is often the nominal clock, not the boost clock."""
    text = _proc_field("/proc/cpuinfo", "cpu MHz")
    try:
        return float(text) if text else None
    except ValueError:
        return None


def cpu_has_vnni(env: dict | None = None) -> bool:
    """True if the CPU has an int8 dot-product instruction: AVX-512 VNNI, AVX-VNNI or AMX int8 tiles.

    What it means for int8 inference: every x86-64 CPU with AVX2 runs int8 kernels in
    integer SIMD (u8 x s8 products with ``VPMADDUBSW``, summed pairwise into int16, which
    can saturate: that is what ONNX Runtime's ``reduce_range`` avoids). VNNI fuses the
    multiply-add into 32-bit accumulators (no saturation, fewer instructions); AMX adds
    tile units on top. So int8 is usually faster than fp32 without VNNI too, and more so
    with it; measure it on the machine. ``env`` defaults to reading /proc/cpuinfo now.
    """
    flags = _cpu_flags() if env is None else env.get("cpu_flags", {})
    return bool(flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8"))


def cpu_supports_bf16(env: dict | None = None) -> bool:
    """True if the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX bf16).

    ``env`` defaults to reading /proc/cpuinfo now.
    """
    flags = _cpu_flags() if env is None else env.get("cpu_flags", {})
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
