"""ResNet-18 batch 1 on this CPU: every precision/engine path against ONNX Runtime fp32 and
PyTorch eager fp32, measured engine by engine in blocks, in one run. Goals (issue 6): the best int8 path
>= 2.5x faster than ONNX Runtime fp32; the best deploylab path >= 8x faster than PyTorch eager.

Run: .venv/bin/python benchmarks/bench_quantization.py [--repeats N] [--json out.json]
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
from deploylab.backends.openvino import OpenVinoRunner
from deploylab.backends.torch_eager import TorchEagerRunner
from deploylab.bench import time_blocks, time_call
from deploylab.data.calibration import image_calibration
from deploylab.env import collect_environment, machine_line
from deploylab.export import export_bundle
from deploylab.models import resolve_model
from deploylab.quantize import convert_to_fp16, quantize_int8_onnxruntime, quantize_int8_openvino


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every engine (equal across engines; default: all cores)")
    args = parser.parse_args(argv)
    threads = args.threads
    env = collect_environment()
    print(machine_line(env), "\n")
    bundle = resolve_model("resnet18")
    calib = image_calibration(32, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_bundle(bundle, tmp / "fp32.onnx", exporter="torchscript", opset=17, dynamic_batch=True).path
        fp16 = convert_to_fp16(fp32, tmp / "fp16.onnx").path
        int8_u8 = quantize_int8_onnxruntime(fp32, tmp / "int8_u8.onnx", calib, progress=False).path
        int8_s8 = quantize_int8_onnxruntime(fp32, tmp / "int8_s8.onnx", calib, preprocess=False,
                                            activation_type="int8", progress=False).path
        nncf = quantize_int8_openvino(fp32, tmp / "nncf.xml", calib).path
        runners = {
            "torch eager fp32": TorchEagerRunner(bundle, threads=threads),
            "onnxruntime fp32": OnnxRuntimeRunner(fp32, intra_op_threads=threads),
            "onnxruntime fp16": OnnxRuntimeRunner(fp16, intra_op_threads=threads),
            "onnxruntime int8 (pre-processed, u8 act.)": OnnxRuntimeRunner(int8_u8, intra_op_threads=threads),
            "onnxruntime int8 (ORT defaults, s8 act.)": OnnxRuntimeRunner(int8_s8, intra_op_threads=threads),
            "openvino fp32": OpenVinoRunner(fp32, precision="fp32", threads=threads),
            "openvino default precision": OpenVinoRunner(fp32, precision=None, threads=threads),
            "openvino int8 (ORT Q/DQ u8)": OpenVinoRunner(int8_u8, precision="fp32", threads=threads),
            "openvino int8 (NNCF)": OpenVinoRunner(nncf, precision="fp32", threads=threads),
        }
        feed = {"input": np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)}
        usable = {}
        for name, runner in runners.items():
            try:
                runner.infer(feed)
                usable[name] = runner
            except Exception as exc:  # noqa: BLE001 - a refusing engine is a result to report, not a crash
                print(f"{name}: cannot run here ({str(exc).splitlines()[0][:120]})")
        eager_alone = time_call(lambda: usable["torch eager fp32"].infer(feed), warmup=3, repeats=args.repeats)
        # engine by engine in blocks with pauses: no engine's spinning threads slow the next one
        timings = time_blocks({k: (lambda r=r: r.infer(feed)) for k, r in usable.items()},
                              rounds=5, block=max(1, args.repeats // 5))
    print(f"engines timed in blocks (5 rounds, rotating order, pauses between blocks), {threads} threads each")
    ort32 = timings["onnxruntime fp32"].median_ms
    eager = timings["torch eager fp32"].median_ms
    for name, stats in timings.items():
        print(f"{name:<44} {stats.median_ms:7.2f} ms   vs ORT fp32 {ort32 / stats.median_ms:5.2f}x   "
              f"vs torch eager {eager / stats.median_ms:5.2f}x   ({stats.spread_text()})")
    int8 = min((k for k in timings if "int8" in k), key=lambda k: timings[k].median_ms)
    best = min((k for k in timings if not k.startswith("torch")), key=lambda k: timings[k].median_ms)
    print(f"\nPyTorch eager in the block comparison {eager:.2f} ms vs alone {eager_alone.median_ms:.2f} ms: "
          f"{eager / eager_alone.median_ms:.2f}x (goal: within 15 %)")
    print(f"best int8 path: {int8}: {ort32 / timings[int8].median_ms:.2f}x faster than ONNX Runtime fp32 (goal 2.5x)")
    print(f"best deploylab path: {best}: {eager / timings[best].median_ms:.2f}x faster than PyTorch eager (goal 8x)")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, **{k: v.to_dict() for k, v in timings.items()}},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
