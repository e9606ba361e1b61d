"""Why the winner wins on this machine, in sentences computed from the search and the engines.

- what the CPU has (VNNI, AMX, native bf16) and what OpenVINO picks by default here;
- what the thread count and the performance hint did, from the same screening run;
- what the engine made of the graph: OpenVINO's executed layers (fused originals, runtime
  precisions) read from the compiled model, or ONNX Runtime's optimized graph (fused ops);
- what would change elsewhere, stated as what the engines do on such hardware.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def _sibling(report, row, field: str):
    """The measured row with the same numerics as ``row`` that differs from it only in ``field``
    (threads or hint; requests in flight go with them)."""
    c = row.candidate
    same = ("numerics_key", "threads", "hint")
    for other in report.measured:
        o = other.candidate
        if other is not row and getattr(o, field) != getattr(c, field) and all(
                getattr(o, k) == getattr(c, k) for k in same if k != field):
            return other
    return None


def _faster(report, a, b) -> float:
    """How many times ``a`` beats ``b`` in the screening run (latency or throughput)."""
    if report.objective == "latency":
        return b.screen.median_ms / a.screen.median_ms
    return a.screen.throughput / b.screen.throughput


def hardware_lines(env: dict) -> list[str]:
    """What this CPU has for fast inference (``env``: :func:`deploylab.env.collect_environment`)."""
    from deploylab.env import cpu_has_vnni, cpu_supports_bf16, machine_line

    flags = env.get("cpu_flags", {})
    lines = [f"this machine: {machine_line(env)}"]
    if flags.get("amx_int8") or flags.get("amx_bf16"):
        lines.append("AMX tiles are present: OpenVINO runs bf16 and int8 matrix work on them")
    elif cpu_has_vnni(env):
        lines.append("int8 dot products are native here (VNNI, one instruction per 4 products summed into 32 bits); "
                     "no AMX tiles")
    else:
        lines.append("no VNNI and no AMX: int8 runs in AVX2 integer SIMD (VPMADDUBSW, which can saturate), so int8 "
                     "gains less here than on a CPU with VNNI")
    native = "native bf16 here (AVX-512 BF16 or AMX)" if cpu_supports_bf16(env) else "no native bf16 here"
    try:
        from deploylab.backends.openvino import default_inference_precision

        default = default_inference_precision()["default_precision"]
        lines.append(f"{native}; OpenVINO's CPU plugin compiles float layers as {default} by default on this machine "
                     "(its INFERENCE_PRECISION_HINT, read from the plugin)")
    except Exception as exc:  # noqa: BLE001 - OpenVINO missing or failing: say so, the rest still holds
        lines.append(f"{native}; OpenVINO's default precision could not be read ({type(exc).__name__})")
    return lines


def setting_lines(report) -> list[str]:
    """What threads and the hint changed for the winner's configuration, from the screening run."""
    w = report.winner
    if w is None:
        return []
    lines = []
    for field in ("threads", "hint"):
        other = _sibling(report, w, field)
        if other is not None:
            mine, theirs = getattr(w.candidate, field), getattr(other.candidate, field)
            what = (f"{mine} thread(s) instead of {theirs}" if field == "threads"
                    else f"the {mine} hint instead of {theirs}")
            lines.append(f"{what}: {_faster(report, w, other):.2f}x ({other.label}, same screening run)")
    return lines


def graph_lines(report, artifact: str | Path) -> list[str]:
    """What the winner's engine made of the graph at ``artifact`` (the winner's file)."""
    w = report.winner
    if w is None:
        return []
    artifact = Path(artifact)
    if w.candidate.backend == "openvino":
        from deploylab.profiling import openvino_runtime_layers
        from deploylab.tune.artifacts import make_candidate_runner

        runner = make_candidate_runner(w.candidate, artifact).activate()
        try:
            layers = [layer for layer in openvino_runtime_layers(runner.compiled)
                      if layer["layer_type"] not in ("Input", "Output", "Constant")]
        finally:
            runner.deactivate()
        fused = [layer for layer in layers if "," in str(layer["original"] or "")]
        precisions = Counter(str(layer["runtime_precision"]) for layer in layers)
        top = ", ".join(f"{name} {count}" for name, count in precisions.most_common(3))
        kinds = Counter(layer["layer_type"] for layer in fused).most_common(3)
        return [f"OpenVINO executes {len(layers)} layers; {len(fused)} of them fuse several original operations "
                f"(most: {', '.join(f'{k} {n}' for k, n in kinds) or 'none'}); runtime precisions: {top}"]
    from deploylab.profiling import optimized_graph_changes

    changes = optimized_graph_changes(artifact)
    before, after = sum(changes["before"].values()), sum(changes["after"].values())
    added = ", ".join(f"{op} {n}" for op, n in sorted(changes["added"].items(), key=lambda kv: -kv[1])[:4])
    return [f"ONNX Runtime's optimizer turned {before} nodes into {after}"
            + (f", adding {added}" if added else "")]


def elsewhere_lines(report) -> list[str]:
    """What the plan could not measure here, and where it would run."""
    lines = []
    trt = [r for r in report.rows if r.status == "not on this machine"]
    if trt:
        lines.append(f"{len(trt)} TensorRT candidates need an NVIDIA GPU; on one, build them with "
                     f"`{trt[0].candidate.command}` and tune again with --backends tensorrt,...")
    flags = report.environment.get("cpu_flags", {})
    if not flags.get("amx_tile"):
        lines.append("on a CPU with AMX (Intel Xeon 4th generation and later) OpenVINO runs bf16 and int8 matrix work "
                     "on the tile units, which this run could not measure: tune there rather than carry this "
                     "choice over")
    return lines


def explain(report, artifact: str | Path | None = None) -> list[str]:
    """All the sentences: hardware, settings, graph (with the winner's ``artifact``), elsewhere."""
    lines = hardware_lines(report.environment) + setting_lines(report)
    if artifact is not None:
        lines += graph_lines(report, artifact)
    return lines + elsewhere_lines(report)
