"""ResNet-18 batch 1: PyTorch eager vs ONNX Runtime vs OpenVINO (f32 and the CPU's default
precision), as ratios to PyTorch eager measured in one run; and OpenVINO IR reuse vs rebuild.

Run: .venv/bin/python benchmarks/bench_build_runtime.py [--repeats N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import OpenVinoRunner, build_openvino_ir, default_inference_precision
from deploylab.backends.torch_eager import TorchEagerRunner
from deploylab.bench import time_blocks
from deploylab.env import collect_environment, machine_line
from deploylab.export import export_bundle
from deploylab.models import resolve_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every engine (equal across engines; default: all cores)")
    args = parser.parse_args(argv)
    threads = args.threads
    results = {"environment": collect_environment(), "openvino_default": default_inference_precision()}
    print(machine_line(results["environment"]))
    bundle = resolve_model("resnet18")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_bundle(bundle, Path(tmp) / "resnet18.onnx", exporter="torchscript", opset=17,
                                  dynamic_batch=True).path
        profile = {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
        rebuild = build_openvino_ir(onnx_path, Path(tmp) / "resnet18.xml", profile, reuse=False)
        reuse = build_openvino_ir(onnx_path, Path(tmp) / "resnet18.xml", profile, reuse=True)
        assert reuse.reused and not rebuild.reused
        print(f"OpenVINO IR: build {rebuild.seconds:.3f} s, reuse {reuse.seconds:.3f} s "
              f"-> rebuild/reuse = {rebuild.seconds / reuse.seconds:.1f}x")
        results["ir_build_s"], results["ir_reuse_s"] = rebuild.seconds, reuse.seconds

        runners = {
            "torch eager": TorchEagerRunner(bundle, threads=threads),
            "onnxruntime": OnnxRuntimeRunner(onnx_path, intra_op_threads=threads),
            "openvino f32": OpenVinoRunner(rebuild.xml_path, precision="fp32", threads=threads),
            "openvino default": OpenVinoRunner(rebuild.xml_path, precision=None, threads=threads),
        }
        feed = {"input": np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)}
        for runner in runners.values():
            runner.activate()
        # engine by engine in blocks with pauses: no engine's spinning threads slow the next one
        timings = time_blocks({k: (lambda r=r: r.infer(feed)) for k, r in runners.items()},
                              rounds=5, block=max(1, args.repeats // 5))
        print(f"engines timed in blocks (5 rounds, rotating order, pauses between blocks), {threads} threads each")
        base = timings["torch eager"].median_ms
        default_precision = runners["openvino default"].inference_precision
        for key, stats in timings.items():
            label = key + (f" ({default_precision})" if key == "openvino default" else "")
            print(f"{label:<24} median {stats.median_ms:7.2f} ms ({stats.spread_text()})  "
                  f"speed-up vs torch eager {base / stats.median_ms:5.2f}x")
            results[key] = {**stats.to_dict(), "speedup_vs_torch": base / stats.median_ms}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
