"""ResNet-18 on this machine: throughput at the best batch size vs batch 1 for each backend,
the best deploylab path's images/s against PyTorch eager at batch 1, and the harness's own
overhead per timed call, all measured in one run.

Run: .venv/bin/python benchmarks/bench_batching.py [--repeats N] [--threads N] [--batch 1,2,4,8,16,32] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import OpenVinoRunner, build_openvino_ir
from deploylab.backends.torch_eager import TorchEagerRunner
from deploylab.bench import measure_harness_overhead, sweep
from deploylab.cli.bench import parse_sizes
from deploylab.export import export_bundle
from deploylab.models import resolve_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per point (p90 needs 20)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every engine (equal across engines; default: all cores)")
    parser.add_argument("--batch", default="1,2,4,8,16,32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.batch)
    bundle = resolve_model("resnet18")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_bundle(bundle, Path(tmp) / "r18.onnx", exporter="torchscript", opset=17,
                                  dynamic_batch=True).path
        profile = {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (max(sizes), 3, 224, 224))}
        xml = build_openvino_ir(onnx_path, Path(tmp) / "r18.xml", profile).xml_path
        runners = {"torch eager": TorchEagerRunner(bundle, threads=args.threads),
                   "onnxruntime": OnnxRuntimeRunner(onnx_path, intra_op_threads=args.threads),
                   "openvino": OpenVinoRunner(xml, precision="fp32", threads=args.threads)}
        results = sweep(runners, sizes, warmup=2, repeats=args.repeats, progress=False)
    print(results.table())  # its first line names the machine
    by = {name: {r.batch_size: r.throughput_per_s for r in results.for_runner(name)} for name in runners}
    print()
    for name, tput in by.items():
        best = results.best_batch(name)
        print(f"{name:<12} best batch {best:>2}: {tput[best]:.1f} img/s, batch 1: {tput[1]:.1f} img/s "
              f"-> best/batch1 = {tput[best] / tput[1]:.2f}x")
    for name in runners:
        print(results.batching_conclusion(name))  # with the noise check: a gain inside the spread is no gain
    best_name = max(("onnxruntime", "openvino"), key=lambda n: by[n][results.best_batch(n)])
    best_tput = by[best_name][results.best_batch(best_name)]
    print(f"best deploylab path ({best_name}, batch {results.best_batch(best_name)}) vs torch eager batch 1: "
          f"{best_tput / by['torch eager'][1]:.2f}x")
    overhead = measure_harness_overhead()
    print(f"harness overhead per timed call: {overhead.runner_layer_us:.1f} us on top of a bare call "
          f"({overhead.empty_runner_us:.1f} us empty runner, {overhead.noop_us:.2f} us no-op)")
    if args.json:
        results.to_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
