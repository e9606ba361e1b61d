"""ONNX Runtime: `run` vs IO binding, and deploylab's runner overhead, measured in one process.

Prints ratios (not absolute times) so the figures mean the same on any machine:
  - ResNet-18 batch 1 and 8: session.run / run_with_iobinding (bound once, reused);
  - ResNet-18 batch 1: OnnxRuntimeRunner.infer / bare session.run (goal: within 5 %);
  - LeNet batch 1: the runner's per-call overhead in microseconds.
Run: .venv/bin/python benchmarks/bench_onnxruntime.py [--repeats N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.bench import time_interleaved
from deploylab.env import collect_environment, machine_line
from deploylab.export import export_bundle
from deploylab.models import resolve_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {"environment": collect_environment()}
    print(machine_line(results["environment"]))
    print("same-engine A/B pairs on one session: timed call by call, interleaved (they share one thread pool)")
    with tempfile.TemporaryDirectory() as tmp:
        resnet = export_bundle(resolve_model("resnet18"), Path(tmp) / "resnet18.onnx",
                               exporter="torchscript", opset=17, dynamic_batch=True).path
        lenet = export_bundle(resolve_model("lenet"), Path(tmp) / "lenet.onnx",
                              exporter="torchscript", opset=17).path
        rng = np.random.default_rng(0)

        runner = OnnxRuntimeRunner(resnet).activate()
        session = runner.session
        for batch in (1, 8):
            feed = {"input": rng.random((batch, 3, 224, 224), dtype=np.float32)}
            bound = runner.bind_cpu(feed)
            t = time_interleaved({"run": lambda: session.run(None, feed), "iobinding": bound.run},
                                 warmup=5, repeats=max(10, args.repeats // batch), items_per_call=batch)
            ratio = t["run"].median_ms / t["iobinding"].median_ms
            print(f"ResNet-18 batch {batch}: run {t['run'].median_ms:.2f} ms, IO binding "
                  f"{t['iobinding'].median_ms:.2f} ms -> run/iobinding = {ratio:.3f}")
            results[f"resnet18_b{batch}_run_over_iobinding"] = ratio
            results[f"resnet18_b{batch}"] = {k: v.to_dict() for k, v in t.items()}

        feed = {"input": rng.random((1, 3, 224, 224), dtype=np.float32)}
        t = time_interleaved({"session.run": lambda: session.run(None, feed),
                              "runner.infer": lambda: runner.infer(feed)}, warmup=5, repeats=args.repeats)
        ratio = t["runner.infer"].median_ms / t["session.run"].median_ms
        print(f"ResNet-18 batch 1: runner.infer / session.run = {ratio:.3f} (goal <= 1.05)")
        results["resnet18_b1_runner_over_session"] = ratio

        small = OnnxRuntimeRunner(lenet).activate()
        feed = {"input": rng.random((1, 1, 32, 32), dtype=np.float32)}
        t = time_interleaved({"session.run": lambda: small.session.run(None, feed),
                              "runner.infer": lambda: small.infer(feed)}, warmup=50, repeats=20 * args.repeats)
        overhead_us = (t["runner.infer"].median_ms - t["session.run"].median_ms) * 1000
        print(f"LeNet batch 1: session.run {t['session.run'].median_ms * 1000:.1f} us, runner.infer "
              f"{t['runner.infer'].median_ms * 1000:.1f} us -> runner overhead {overhead_us:.1f} us per call")
        results["lenet_runner_overhead_us"] = overhead_us
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
