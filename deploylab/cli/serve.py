"""deploylab serve, load-test, batch-infer, triton-repo: arguments and handlers."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from deploylab.cli._base import EXIT_CHECK_FAILED, EXIT_OK, MAX_BATCH, check_threads, int_in, parse_sizes
from deploylab.errors import DeployLabError


def _cmd_serve(args) -> int:
    from deploylab.serve.app import ServeConfig, Server

    check_threads(args.threads)
    if not (math.isfinite(args.max_body_mb) and 0 < args.max_body_mb <= 2048):
        raise DeployLabError(f"--max-body-mb must be a number above 0 and at most 2048, got {args.max_body_mb}")
    config = ServeConfig(str(args.model), backend=args.backend, max_batch=args.max_batch,
                         batch_wait_ms=args.batch_wait_ms, replicas=args.replicas, threads=args.threads,
                         host=args.host, port=args.port, max_ongoing=args.max_ongoing, max_queued=args.max_queued,
                         max_body_bytes=int(args.max_body_mb * 2**20), address=args.address)
    server = Server(config)
    print(f"starting {Path(args.model).name} on Ray Serve (max batch {config.max_batch}, batch wait "
          f"{config.batch_wait_ms:g} ms, {config.replicas} replica(s) x {server.config.engine_threads} threads) ...",
          flush=True)
    server.start()
    try:
        print(f"serving at {server.url} (started in {server.start_seconds:.0f} s)")
        print(f"  health:  curl {server.url}/health")
        print(f"  predict: curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' {server.predict_url}")
        print("Ctrl-C stops it (in-flight requests are finished first)", flush=True)
        while True:
            time.sleep(3600)
    finally:  # Ctrl-C and SIGTERM arrive here as exceptions: drain, stop, then let main() report them
        print("stopping: draining in-flight requests ...", file=sys.stderr, flush=True)
        server.stop()
        print("stopped", file=sys.stderr, flush=True)


def _cmd_load_test(args) -> int:
    from deploylab.serve.loadtest import load_test, parse_url

    parse_url(args.url)
    levels = parse_sizes(args.concurrency, "--concurrency", high=256)
    report = load_test(args.url, args.input, levels, seconds=args.seconds, max_requests=args.max_requests,
                       progress=sys.stderr.isatty())
    print(report.format())
    if args.json is not None:
        from deploylab.paths import replace_when_done

        with replace_when_done(args.json) as partial:
            partial.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"written to {args.json}")
    if all(level.ok == 0 for level in report.levels):
        print(f"deploylab load-test: no request to {args.url} was answered with 200; is the server running?",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _cmd_batch_infer(args) -> int:
    from deploylab.serve.batch_infer import batch_infer

    check_threads(args.threads)
    report = batch_infer(args.model, args.input, args.output, backend=args.backend, batch_size=args.batch_size,
                         concurrency=args.concurrency, threads=args.threads, top_k=args.topk, address=args.address)
    print(report.format())
    return EXIT_OK


def _cmd_triton_repo(args) -> int:
    from deploylab.serve.triton import write_triton_repo

    preferred = parse_sizes(args.preferred_batch, "--preferred-batch") if args.preferred_batch else ()
    repo = write_triton_repo(args.model, args.output, name=args.name, max_batch=args.max_batch,
                             preferred_batch=preferred, instances=args.instances,
                             max_queue_delay_us=args.max_queue_delay_us)
    print(repo.format())
    print(f"{repo.config_path} (parsed by Triton's own ModelConfig protobuf):")
    print(repo.config_text.rstrip())
    server, perf = repo.commands()
    print("serve it with Triton (a container; deploylab does not run it):")
    print(f"  {server}")
    print("measure it with perf_analyzer (from the SDK container):")
    print(f"  {perf}")
    for note in repo.notes:
        print(f"note: {note}")
    return EXIT_OK


def register(sub) -> None:
    from deploylab.backends.registry import BACKENDS

    p = sub.add_parser("serve", help="serve a model over HTTP on Ray Serve with dynamic batching (POST /predict)")
    p.add_argument("model", help="an .onnx, .xml (OpenVINO IR) or .plan (TensorRT) file")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="engine (default: the one the file is for)")
    p.add_argument("--port", type=int_in(1, 65535), default=8000, help="HTTP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, loopback only; 0.0.0.0 exposes it)")
    p.add_argument("--max-batch", type=int_in(1, MAX_BATCH), default=8,
                   help="most requests per batch (default 8; checked against the engine's batch bounds)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill, in ms (default 5; 0 runs whatever has arrived)")
    p.add_argument("--replicas", type=int_in(1, 64), default=1, help="replicas, each with its own engine (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="engine threads per replica (default: the cores shared between the replicas)")
    p.add_argument("--max-ongoing", type=int, default=None,
                   help="requests a replica holds at once (default 2 x --max-batch, at least 8)")
    p.add_argument("--max-queued", type=int, default=None,
                   help="requests queued beyond those; more are answered 503 + Retry-After "
                        "(default 4 x --max-batch x --replicas, at least 32)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default 8)")
    p.add_argument("--address", default=None,
                   help="a running Ray cluster to serve on (default: start Ray on this machine; RAY_ADDRESS works too)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("load-test", help="load-test a served model: throughput, p50/p90/p99, batch sizes, errors")
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8000 (POSTs to /predict unless a path is given)")
    p.add_argument("--input", type=Path, required=True, help="what every request sends: an image, .npy or .json")
    p.add_argument("--concurrency", default="1,4,16",
                   help="clients at a time, one level after another (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each level in seconds (default 10)")
    p.add_argument("--max-requests", type=int_in(1, 1_000_000), default=None,
                   help="most requests per level (default: as many as fit in --seconds)")
    p.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    p.set_defaults(func=_cmd_load_test)

    p = sub.add_parser("batch-infer", help="offline batch inference over image files on Ray Data, to parquet")
    p.add_argument("model", help="an .onnx, .xml or .plan file")
    p.add_argument("--input", required=True, help="a folder of images or a glob pattern ('photos/*.jpg')")
    p.add_argument("--output", type=Path, required=True, help="the parquet file to write (results.parquet)")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="engine (default: the one the file is for)")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=16, help="images per engine call (default 16)")
    p.add_argument("--concurrency", type=int_in(1, 64), default=1, help="actors, each with its own engine (default 1)")
    p.add_argument("--threads", type=int, default=None, help="engine threads per actor (default: cores / actors)")
    p.add_argument("--topk", type=int_in(1, 1000), default=5, help="classes kept per image (default 5)")
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start Ray on this machine)")
    p.set_defaults(func=_cmd_batch_infer)

    p = sub.add_parser("triton-repo", help="write an NVIDIA Triton model repository for an .onnx, .xml or .plan")
    p.add_argument("model", help="an .onnx (onnxruntime backend), .xml (openvino) or .plan (tensorrt) file")
    p.add_argument("-o", "--output", type=Path, required=True, help="the repository folder (repo/)")
    p.add_argument("--name", default=None, help="model name in the repository (default: the file's stem)")
    p.add_argument("--max-batch", type=int_in(0, MAX_BATCH), default=None,
                   help="max_batch_size (default: the model's batch bound; 0 turns batching off)")
    p.add_argument("--preferred-batch", default=None, help="preferred batch sizes, e.g. 8,16")
    p.add_argument("--instances", type=int_in(1, 64), default=1, help="model instances (default 1)")
    p.add_argument("--max-queue-delay-us", type=int_in(0, 10_000_000), default=None,
                   help="how long Triton's dynamic batcher waits for a batch to fill, in microseconds")
    p.set_defaults(func=_cmd_triton_repo)
