"""Figures the notebooks show. Each returns a matplotlib Figure and optionally saves a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.paths import save_figure


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: str | Path | None):
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_training_curve(losses: list[float], path: str | Path | None = None):
    """Training loss per epoch."""
    fig = _figure(5, 3)
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("LeNet on sklearn digits")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_digit_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    count: int = 24,
    path: str | Path | None = None,
):
    """A grid of digits with predicted/true labels; mistakes are titled in red."""
    count = min(count, len(images))
    cols = min(12, count)
    rows = int(np.ceil(count / cols))
    fig = _figure(cols * 0.9, rows * 1.05)
    for i in range(count):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1)
        wrong = predictions[i] != labels[i]
        ax.set_title(f"{predictions[i]}" + (f" (is {labels[i]})" if wrong else ""),
                     fontsize=8, color="crimson" if wrong else "black")
        ax.axis("off")
    return _save(fig, path)


def plot_op_histogram(histograms: dict[str, dict[str, int]], path: str | Path | None = None):
    """Side-by-side operator counts for several ONNX files (name -> {op: count})."""
    ops = sorted({op for h in histograms.values() for op in h})
    fig = _figure(max(5, 0.55 * len(ops) + 2), 3.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(histograms))
    x = np.arange(len(ops))
    for i, (name, hist) in enumerate(histograms.items()):
        ax.bar(x + i * width, [hist.get(op, 0) for op in ops], width, label=name)
    ax.set_xticks(x + width * (len(histograms) - 1) / 2, ops, rotation=45, ha="right")
    ax.set_ylabel("nodes")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_topk_gallery(
    images_rgb: list[np.ndarray],
    topk: list[list[tuple[str, float]]],
    titles: list[str] | None = None,
    path: str | Path | None = None,
):
    """Photos in a row, each with its top-k (label, probability) list underneath."""
    count = len(images_rgb)
    fig = _figure(2.6 * count, 3.6)
    for i, (image, preds) in enumerate(zip(images_rgb, topk)):
        ax = fig.add_subplot(1, count, i + 1)
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[i], fontsize=9)
        text = "\n".join(f"{p:5.1%} {label[:22]}" for label, p in preds)
        ax.set_xlabel(text, fontsize=7.5, family="monospace", loc="left")
    return _save(fig, path)


def plot_timing_bars(stats: dict[str, object], path: str | Path | None = None, title: str = ""):
    """Median latency with interquartile whiskers for several :class:`deploylab.bench.TimingStats`."""
    names = list(stats)
    medians = [stats[n].median_ms for n in names]
    low = [max(0.0, stats[n].median_ms - stats[n].q1_ms) for n in names]
    high = [max(0.0, stats[n].q3_ms - stats[n].median_ms) for n in names]
    fig = _figure(1.4 * len(names) + 2.5, 3)
    ax = fig.add_subplot()
    ax.bar(names, medians, yerr=[low, high], capsize=4, color="#7aa6d6")
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(title or "median latency (whiskers: quartiles)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


TWO_PHASES = (
    # (phase, TensorRT step, OpenVINO twin)
    ("build", "OnnxParser\nparse the ONNX graph", "convert_model\nread the ONNX graph"),
    ("build", "BuilderConfig\nprofiles, workspace,\nprecision", "reshape\nbounded dims\n(min..max)"),
    ("build", "build_serialized_network\n-> .plan (+ sidecar)", "save_model\n-> .xml/.bin (+ sidecar)"),
    ("runtime", "Runtime\ndeserialize_cuda_engine", "Core.read_model\ncompile_model(CPU, hints)"),
    ("runtime", "create_execution_context\nset_input_shape", "create_infer_request\n(or AsyncInferQueue)"),
    ("runtime", "set_tensor_address\nexecute_async_v3", "infer / start_async\n-> outputs"),
)


def plot_two_phases(path: str | Path | None = None):
    """The TensorRT build and runtime phases (top row) with their OpenVINO twins (bottom row)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = _figure(15, 4.6)
    ax = fig.add_subplot()
    ax.set_xlim(0, len(TWO_PHASES) * 2.5)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    colours = {"build": "#c6dbef", "runtime": "#fdd0a2"}
    for row, (y, label) in enumerate(((2.6, "TensorRT (NVIDIA GPU)"), (0.4, "OpenVINO (this CPU)"))):
        ax.text(0.05, y + 1.55, label, fontsize=11, weight="bold", va="bottom")
        for i, (phase, trt_step, ov_step) in enumerate(TWO_PHASES):
            x = 0.1 + i * 2.5
            ax.add_patch(FancyBboxPatch((x, y), 2.1, 1.4, boxstyle="round,pad=0.03,rounding_size=0.12",
                                        facecolor=colours[phase], edgecolor="#444", linewidth=1))
            ax.text(x + 1.05, y + 0.7, trt_step if row == 0 else ov_step, ha="center", va="center", fontsize=8.5)
            if i:
                ax.add_patch(FancyArrowPatch((x - 0.38, y + 0.7), (x - 0.02, y + 0.7), arrowstyle="-|>",
                                             mutation_scale=12, color="#333"))
    split = 0.1 + 3 * 2.5 - 0.2
    ax.plot([split, split], [0.2, 4.4], ls="--", color="#888")
    ax.text(split - 0.15, 4.45, "build phase (once, offline)", ha="right", fontsize=9, color="#555")
    ax.text(split + 0.15, 4.45, "runtime phase (every inference)", ha="left", fontsize=9, color="#555")
    return _save(fig, path)


def plot_sweep(results, path: str | Path | None = None, title: str = ""):
    """Three panels over batch size (log2 axis) for a :class:`deploylab.bench.SweepResults`.

    Latency per call (median, whiskers at the quartiles), throughput (items/s) and time per
    item (ms); one line per runner. Concurrent (async) results appear as dashed lines in
    the throughput and per-item panels only: their timings are rounds, not latencies.
    """
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig = _figure(13, 3.9)
    axes = fig.subplots(1, 3)
    colors = {}
    palette = [f"C{i}" for i in range(10)]
    batches = sorted({r.batch_size for r in results.results})
    for name in results.runner_names:
        colors[name] = palette[len(colors) % len(palette)]
        sync = results.for_runner(name, "sync")
        if sync:
            x = [r.batch_size for r in sync]
            median = np.array([r.stats.median_ms for r in sync])
            low = np.clip(median - np.array([r.stats.q1_ms for r in sync]), 0, None)
            high = np.clip(np.array([r.stats.q3_ms for r in sync]) - median, 0, None)
            axes[0].errorbar(x, median, yerr=[low, high], marker="o", markersize=4,
                             capsize=3, color=colors[name], label=name)
            axes[1].plot(x, [r.throughput_per_s for r in sync], marker="o", markersize=4, color=colors[name],
                         label=name)
            axes[2].plot(x, [r.per_item_ms for r in sync], marker="o", markersize=4, color=colors[name],
                         label=name)
        concurrent = results.for_runner(name, "async")
        for level in sorted({r.concurrency for r in concurrent}):
            rows = [r for r in concurrent if r.concurrency == level]
            x = [r.batch_size for r in rows]
            label = f"{name} ({level} in flight)"
            axes[1].plot(x, [r.throughput_per_s for r in rows], "--", marker="s", markersize=4,
                         color=colors[name], label=label)
            axes[2].plot(x, [r.per_item_ms for r in rows], "--", marker="s", markersize=4,
                         color=colors[name], label=label)
    labels = (("latency per call (ms)", "latency: median, whiskers: quartiles"),
              ("throughput (items/s)", "throughput"),
              ("time per item (ms)", "time per item (= 1 / throughput)"))
    for ax, (ylabel, panel_title) in zip(axes, labels):
        ax.set_xscale("log", base=2)
        if batches:
            ax.xaxis.set_major_locator(FixedLocator(batches))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, names = axes[1].get_legend_handles_labels()
    if handles:
        axes[1].legend(handles, names, fontsize=8)
    env = results.environment or {}
    machine = f"{env.get('cpu_model', 'unknown cpu')}, {env.get('cpu_count', '?')} CPUs"
    fig.suptitle(title or f"batch-size sweep on {machine}", fontsize=11)
    return _save(fig, path)


def plot_precision_tradeoff(rows: list[dict], path: str | Path | None = None, quality_key: str = "top1_agreement",
                            quality_label: str = "top-1 agreement with fp32"):
    """Quality vs latency (one marker per model x backend) and model size per precision.

    ``rows``: dicts with ``label``, ``backend``, ``latency_ms``, ``size_mib`` and ``quality_key``.
    """
    fig = _figure(11, 3.8)
    ax_q, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    markers = {"onnxruntime": "o", "openvino": "s", "torch": "^"}
    for row in rows:
        ax_q.scatter(row["latency_ms"], row[quality_key], marker=markers.get(row["backend"], "D"), s=45)
        ax_q.annotate(f"{row['label']} ({row['backend']})", (row["latency_ms"], row[quality_key]),
                      fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax_q.set_xlabel("latency at batch 1 (ms, median)")
    ax_q.set_ylabel(quality_label)
    ax_q.grid(alpha=0.3)
    sizes: dict[str, float] = {}
    for row in rows:
        sizes.setdefault(row["label"], row["size_mib"])
    ax_s.bar(list(sizes), list(sizes.values()), color="#7aa6d6")
    ax_s.set_ylabel("model weights (MiB)")
    ax_s.tick_params(axis="x", rotation=30)
    ax_s.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_quality_speed(rows: list[dict], path: str | Path | None = None, quality_key: str = "top1_agreement",
                       quality_label: str = "top-1 agreement with fp32"):
    """Quality vs batch-1 latency (one marker per candidate, named in a legend) and weight size.

    ``rows``: dicts with ``label``, ``backend``, ``latency_ms``, ``size_mib`` and
    ``quality_key``. The quality axis spans the data with a margin (never a constant
    axis); sizes are horizontal bars, one per distinct label, so long names stay readable.
    """
    from matplotlib.figure import Figure

    if not rows:
        raise DeployLabError("no rows to plot")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_q, ax_s = fig.subplots(1, 2, width_ratios=(1.6, 1))
    markers = {"onnxruntime": "o", "openvino": "s"}
    colours = {}
    for row in rows:
        colour = colours.setdefault(row["label"], f"C{len(colours) % 10}")
        ax_q.scatter(row["latency_ms"], row[quality_key], marker=markers.get(row["backend"], "D"), s=55,
                     color=colour, edgecolor="black", linewidth=0.5, label=f"{row['label']} ({row['backend']})")
    quality = np.array([row[quality_key] for row in rows], dtype=float)
    low, high = float(quality.min()), float(quality.max())
    margin = max(0.05 * (high - low), 0.005)
    ax_q.set_ylim(low - margin, high + margin)
    ax_q.set_xlabel("latency at batch 1 (ms, median; lower is better)")
    ax_q.set_ylabel(quality_label)
    ax_q.grid(alpha=0.3)
    ax_q.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    sizes: dict[str, float] = {}
    for row in rows:
        sizes.setdefault(row["label"], row["size_mib"])
    names = list(sizes)[::-1]
    ax_s.barh(names, [sizes[n] for n in names], color=[colours[n] for n in names])
    for y, n in enumerate(names):
        ax_s.annotate(f"{sizes[n]:.1f}", (sizes[n], y), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=7)
    ax_s.set_xlabel("model weights (MiB)")
    ax_s.tick_params(axis="y", labelsize=8)
    ax_s.set_xlim(0, max(sizes.values()) * 1.15)
    ax_s.grid(axis="x", alpha=0.3)
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_profile(report, path: str | Path | None = None, top: int = 10, title: str = ""):
    """Where the time goes in one :class:`deploylab.profiling.ProfileReport`.

    Left: milliseconds per run summed by op type (slowest first, each bar labelled with
    its share of the total and the number of layers). Right: the ``top`` slowest single
    layers, labelled with their precision when the engine reports one. Times are the
    report's means per timed run, so they are only as steady as the machine was.
    """
    if top < 1:
        raise DeployLabError(f"top must be at least 1, got {top!r}")
    if not report.layers:
        raise DeployLabError(f"the {report.backend} profile of {report.model} holds no layers: nothing to plot")
    by_type = report.by_op_type()[:top][::-1]
    slowest = report.slowest(top)[::-1]
    height = max(2.6, 0.32 * max(len(by_type), len(slowest)) + 1.2)
    fig = _figure(12, height)
    ax_type, ax_layer = fig.subplots(1, 2, width_ratios=(1, 1.3))
    ms = [us / 1000 for _, _, us, _ in by_type]
    ax_type.barh([op for op, *_ in by_type], ms, color="#7aa6d6")
    for y, (_, count, us, share) in enumerate(by_type):
        ax_type.annotate(f"{share:.0%} ({count})", (us / 1000, y), xytext=(3, 0), textcoords="offset points",
                         va="center", fontsize=7)
    ax_type.set_xlim(0, max(ms) * 1.25 or 1.0)
    ax_type.set_xlabel("ms per run (share of the total, layers)")
    ax_type.set_title("time by op type", fontsize=10)
    ax_type.grid(axis="x", alpha=0.3)

    def layer_label(layer) -> str:
        name = layer.name if len(layer.name) <= 40 else "..." + layer.name[-37:]
        return f"{name} [{layer.precision}]" if layer.precision else name

    ax_layer.barh([layer_label(layer) for layer in slowest], [layer.time_us / 1000 for layer in slowest],
                  color="#fdae6b")
    ax_layer.tick_params(axis="y", labelsize=7)
    ax_layer.set_xlabel("ms per run")
    ax_layer.set_title(f"slowest {len(slowest)} layers", fontsize=10)
    ax_layer.grid(axis="x", alpha=0.3)
    fig.suptitle(title or f"{report.backend} profile of {report.model}, batch {report.batch_size}, "
                          f"mean of {report.runs} runs ({report.total_us / 1000:.2f} ms in layers)", fontsize=10)
    return _save(fig, path)
