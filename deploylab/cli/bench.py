"""deploylab bench: arguments and handlers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deploylab.cli._base import EXIT_OK, MAX_CONCURRENCY, check_threads, parse_sizes
from deploylab.errors import DeployLabError
from deploylab.paths import check_output_path, refuse_overwriting_inputs


def _cmd_bench(args) -> int:
    from deploylab.backends.onnxruntime import parse_providers
    from deploylab.backends.registry import backend_for_artifact, make_runner, parse_backends, spec_for
    from deploylab.bench import plan_sweep, run_sweep
    from deploylab.bench.results import results_paths

    backends = parse_backends(args.backends or backend_for_artifact(args.model))
    batches = parse_sizes(args.batch, "--batch")
    levels = parse_sizes(args.concurrency, "--concurrency", high=MAX_CONCURRENCY) if args.concurrency else ()
    for value, flag in ((args.threads, "--threads"), (args.repeats, "--repeats")):
        if value is not None and value < 1:
            raise DeployLabError(f"{flag} must be at least 1, got {value}")
    check_threads(args.threads)
    if args.repeats is not None and args.repeats > 100_000:
        raise DeployLabError(f"--repeats must be at most 100000, got {args.repeats}; use --seconds for a time budget")
    if args.seconds is not None and not 0 < args.seconds <= 3600:
        raise DeployLabError(f"--seconds must be a number of seconds from 0 to 3600, got {args.seconds}")
    if args.out is not None:
        refuse_overwriting_inputs(args.out, args.model, flag="--out")
        json_path, csv_path = results_paths(args.out)
        for path, flag in ((json_path, "--out"), (csv_path, "--out (its CSV)")):
            refuse_overwriting_inputs(path, args.model, flag=flag)
            check_output_path(path)
    if args.plot is not None:
        refuse_overwriting_inputs(args.plot, args.model, flag="--plot")
        check_output_path(args.plot)
        if args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise DeployLabError(f"--plot {str(args.plot)!r} must end in .png, .svg or .pdf")
        if args.out is not None and Path(args.plot).resolve() in (json_path.resolve(), csv_path.resolve()):
            raise DeployLabError(f"--plot {str(args.plot)!r} is one of the --out files; give it its own name")
    if not args.model.is_file():
        raise DeployLabError(f"model file {str(args.model)!r} does not exist")
    # Equal, explicit threads for every engine: a comparison on engines' defaults is not like for like.
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)
    providers = parse_providers(args.providers) if args.providers else None
    specs = [spec_for(backend) for backend in backends]
    if providers and not any(spec.providers_option for spec in specs):
        specs[0].runner_options(providers=providers)  # refuses, naming the backend
    runners = {}
    for spec in specs:
        options = spec.runner_options(threads=threads if spec.thread_option else None,
                                      providers=providers if spec.providers_option else None)
        runners[spec.name] = make_runner(spec.name, args.model, **options).activate()
    # Each (backend, batch) pair is checked once, in the plan; refuse up front when none can run.
    plan = plan_sweep(runners, batches)
    if not plan.point_count:
        refusals = {}
        for skipped in plan.skipped:
            refusals.setdefault(skipped.runner, skipped.reason)  # the first reason per backend is enough
        raise DeployLabError(f"no backend accepts batch size(s) {args.batch}: " + " | ".join(refusals.values()))
    results = run_sweep(plan, repeats=args.repeats, seconds=args.seconds, concurrency=levels,
                        progress=sys.stderr.isatty())
    print(results.table())
    for name in results.runner_names:
        if len(results.for_runner(name)) > 1:
            print(results.batching_conclusion(name))
    if args.out is not None:
        print(f"writing {json_path} and {csv_path}")
        results.to_json(json_path)
        results.to_csv(csv_path)
        print(f"results written to {json_path} and {csv_path}")
    if args.plot is not None:
        from deploylab.plots import plot_sweep

        plot_sweep(results, args.plot)
        print(f"plot written to {args.plot}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency and throughput over batch sizes, per backend")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan")
    p.add_argument("--backends", default=None, help="comma-separated backends, e.g. onnxruntime,openvino "
                   "(default: from the file type)")
    p.add_argument("--batch", default="1,2,4,8,16,32", help="batch sizes, e.g. 1,8,32 (default: 1,2,4,8,16,32)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per runner, the same for every engine (ONNX Runtime intra-op, OpenVINO "
                   "inference threads; default: all logical CPUs)")
    p.add_argument("--providers", default=None, metavar="P[:K=V;...],...",
                   help="ONNX Runtime execution providers for the onnxruntime runner, with options as ORT takes "
                        "them, e.g. cuda:device_id=0,cpu (default: cpu)")
    p.add_argument("--seconds", type=float, default=None, help="time budget per point (at least 3 calls; p90 is shown from 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per point (default 20)")
    p.add_argument("--concurrency", default=None, metavar="N[,N...]",
                   help="also measure throughput with this many requests in flight, e.g. 2,4")
    p.add_argument("--out", type=Path, default=None, metavar="JSON",
                   help="results JSON to write; a CSV with the same stem goes beside it")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="plot latency/throughput vs batch")
    p.set_defaults(func=_cmd_bench)
