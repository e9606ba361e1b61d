"""deploylab's runners against the same engines called directly, ResNet-18, in one run.

For each path (PyTorch eager, ONNX Runtime fp32, OpenVINO fp32, OpenVINO at its default
precision) and each batch size, the deploylab runner and the plain engine call (``torch``
under ``inference_mode``, ``onnxruntime.InferenceSession.run``, ``openvino.Core().compile_model``
and an infer request) run on the same ONNX file, the same input and the same explicit
threads, timed engine by engine in blocks with pauses (``deploylab.bench.time_blocks``).
Printed: each path's latency and throughput, the ratio deploylab / direct (goal: within
5 % at batch 1), and each path's speed-up over PyTorch eager timed alone.

Run: .venv/bin/python benchmarks/bench_peers.py [--batch 1,32] [--threads N] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def direct_callables(onnx_path: Path, model, x: np.ndarray, threads: int) -> dict:
    """The engines as a user calls them without deploylab, configured like the deploylab runners."""
    import onnxruntime as ort
    import openvino as ov
    import torch

    tensor = torch.from_numpy(x)

    def torch_call():
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return model(tensor).numpy()
        finally:
            torch.set_num_threads(previous)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    core = ov.Core()
    compiled = {
        precision: core.compile_model(str(onnx_path), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
            **({"INFERENCE_PRECISION_HINT": "f32"} if precision == "fp32" else {})})
        for precision in ("fp32", "default")
    }
    requests = {precision: c.create_infer_request() for precision, c in compiled.items()}
    output = {precision: c.output(0) for precision, c in compiled.items()}
    return {
        "torch eager fp32": torch_call,
        "onnxruntime fp32": lambda: session.run(None, {input_name: x})[0],
        "openvino fp32": lambda: requests["fp32"].infer({0: x})[output["fp32"]],
        "openvino default precision": lambda: requests["default"].infer({0: x})[output["default"]],
    }


def main(argv=None) -> int:
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.backends.openvino import OpenVinoRunner
    from deploylab.backends.torch_eager import TorchEagerRunner
    from deploylab.bench import DEFAULT_BLOCK_PAUSE_S, compare_timings, time_blocks, time_call
    from deploylab.cli.bench import parse_sizes
    from deploylab.env import collect_environment, machine_line
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every engine, deploylab and direct alike (default: all cores)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-images", type=int, default=20,
                        help="images per timed block (at least 4 calls per block)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    env = collect_environment()
    print(machine_line(env))
    print(f"threads: {args.threads} for every engine; ONNX Runtime spinning on (its default) in both; "
          f"{args.rounds} rounds per batch size, {DEFAULT_BLOCK_PAUSE_S:g} s pause before every block\n")
    bundle = resolve_model("resnet18")
    model = bundle.model.eval()
    report: dict = {"environment": env, "threads": args.threads, "batches": {}}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_bundle(bundle, Path(tmp) / "resnet18.onnx", exporter="torchscript", opset=17,
                                  dynamic_batch=True).path
        runners = {
            "torch eager fp32": TorchEagerRunner(bundle, threads=args.threads),
            "onnxruntime fp32": OnnxRuntimeRunner(onnx_path, intra_op_threads=args.threads),
            "openvino fp32": OpenVinoRunner(onnx_path, precision="fp32", threads=args.threads),
            "openvino default precision": OpenVinoRunner(onnx_path, precision=None, threads=args.threads),
        }
        for batch in parse_sizes(args.batch):
            x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
            feed = {"input": x}
            direct = direct_callables(onnx_path, model, x, args.threads)
            for name, runner in runners.items():  # same answer, or the comparison means nothing
                np.testing.assert_allclose(runner.infer(feed)["output"], direct[name](), rtol=1e-3, atol=1e-3)
            fns = {}
            for name, runner in runners.items():
                fns[f"{name} | deploylab"] = lambda r=runner: r.infer(feed)
                fns[f"{name} | direct"] = direct[name]
            block = max(4, -(-args.block_images // batch))
            time.sleep(DEFAULT_BLOCK_PAUSE_S)
            eager_alone = time_call(direct["torch eager fp32"], label="torch eager alone", warmup=2,
                                    repeats=max(20, block), items_per_call=batch)
            timings = time_blocks(fns, rounds=args.rounds, block=block, warmup=2, items_per_call=batch)
            print(f"batch {batch}: {args.rounds} rounds x {block} calls per path; PyTorch eager alone "
                  f"{eager_alone.median_ms:.2f} ms ({eager_alone.spread_text()})")
            print(f"  {'path':<28} {'deploylab ms':>12} {'direct ms':>10} {'img/s':>8} {'deploylab/direct':>17} "
                  f"{'vs eager alone':>15}  verdict")
            rows = {}
            for name in runners:
                ours, theirs = timings[f"{name} | deploylab"], timings[f"{name} | direct"]
                ratio = ours.median_ms / theirs.median_ms
                speedup = eager_alone.median_ms / ours.median_ms
                verdict = compare_timings(ours, theirs)
                same = "no measurable difference" if not verdict.measurable else (
                    "deploylab slower" if ratio > 1 else "deploylab faster")
                print(f"  {name:<28} {ours.median_ms:12.2f} {theirs.median_ms:10.2f} {ours.throughput:8.1f} "
                      f"{ratio:17.3f} {speedup:14.2f}x  {same}")
                rows[name] = {"deploylab": ours.to_dict(), "direct": theirs.to_dict(), "ratio": ratio,
                              "speedup_over_eager_alone": speedup, "measurable": verdict.measurable}
            eager_in_blocks = timings["torch eager fp32 | direct"].median_ms
            print(f"  PyTorch eager (direct) in the block comparison vs alone: "
                  f"{eager_in_blocks / eager_alone.median_ms:.3f}x")
            worst = max(rows, key=lambda k: abs(rows[k]["ratio"] - 1))
            print(f"  largest deploylab/direct gap at batch {batch}: {worst} {rows[worst]['ratio']:.3f} "
                  f"({'within' if abs(rows[worst]['ratio'] - 1) <= 0.05 else 'outside'} the 5 % goal)\n")
            report["batches"][batch] = {"eager_alone": eager_alone.to_dict(), "paths": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
