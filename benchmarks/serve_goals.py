"""The goals of issue 17 for ``deploylab serve`` (Ray Serve + dynamic batching), measured in one run.

EfficientNet-Lite0 (real weights, exported with a dynamic batch) served by one replica running
ONNX Runtime with ``--threads`` engine threads (default: every core); every request is a shipped
photo sent as JPEG bytes, as a client sends it, so the server decodes and preprocesses each one.

Before the server starts (never interleaved with it: the replica would take the cores), the same
runner with the same threads is timed directly on preprocessed inputs at batch 1, 2, 4, 8
(``deploylab.bench.time_blocks``: block by block, pauses, rotating order), and again with the
decoding and preprocessing of every image of the batch included (the served path pays for it: the
fair ceiling on this machine). Then the server (max batch 8, batch wait 5 ms) is load-tested with
closed-loop clients at 1, 4, 8, 16, 32 (``deploylab.serve.loadtest.run_level``). Goals:

  1  served images/s at saturation (the level with the best throughput) / the direct engine's
     images/s at the batch size the server formed (the level's mean batch, rounded to the nearest
     timed batch size) >= 0.80. Printed with it: the ratio against the direct path including
     preprocessing, where each request's time went (Server-Timing: preprocess, queue, engine; the
     rest is "http": proxy, routing, client) and the CPU each process took per answered image
     (proxy, replica, this process's load-test client, Ray's other processes), the evidence when
     the proxy's own CPU makes the goal impossible on a small machine.
  2  the server restarted with tight limits (max batch 8, max ongoing 8, max queued 8) and
     2 x (max ongoing + max queued) closed-loop clients for ``--overload-seconds`` (30): every
     request answered 200 or 503, none lost, ``GET /health`` answers 200 afterwards, and the p99
     latency of the 200 answers <= the bound the limits give: (max ongoing + max queued + max batch)
     requests ahead at most, drained at the throughput measured in the same overload, plus one batch
     wait: bound = (max_ongoing + max_queued + max_batch) / throughput + batch_wait.

No absolute time is asserted: goal 1 is a ratio of two throughputs measured in this run, goal 2
compares a latency with a bound computed from a throughput measured in the same 30 s. The script
exits 0 whether or not a goal is met; each goal line says "met" or "NOT MET".

Run: .venv/bin/python benchmarks/serve_goals.py [--quick] [--threads N] [--overload-seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from goals import goal

RATIO_GOAL = 0.80
PHOTO = "chelsea_cat.jpg"
DIRECT_BATCHES = (1, 2, 4, 8)
PARTS = ("preprocess", "queue", "engine", "http")


def http_status(url: str, method: str = "GET", body: bytes | None = None, content_type: str = "") -> int | None:
    """The status of one request (None: no answer)."""
    from deploylab.serve.loadtest import parse_url

    host, port, path = parse_url(url)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


# ---------------------------------------------------------------- CPU per process
def process_group(cmdline: list[str], pid: int) -> str:
    """Which part of the service a process is: Ray names its actor processes ``ray::<Class>``."""
    head = cmdline[0] if cmdline else ""
    if pid == os.getpid():
        return "client"
    if "ProxyActor" in head:
        return "proxy"
    if "ServeReplica" in head:
        return "replica"
    return "ray other"


def cpu_seconds() -> dict[str, float]:
    """User + system CPU seconds so far of this process and every process it started (Ray's GCS,
    raylet, its workers and actors), summed by :func:`process_group`; {} where psutil cannot tell."""
    try:
        import psutil
    except ImportError:
        return {}
    me = psutil.Process()
    totals: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            group = process_group(proc.cmdline(), proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        totals[group] = totals.get(group, 0.0) + times.user + times.system
    return totals


def timed_level(url, body, content_type, clients, seconds):
    """``run_level`` and the CPU seconds each process group used during it."""
    from deploylab.serve.loadtest import run_level

    before = cpu_seconds()
    result = run_level(url, body, content_type, clients, seconds)
    after = cpu_seconds()
    return result, {g: after[g] - before.get(g, 0.0) for g in after}


# ---------------------------------------------------------------- direct timing
def direct_throughput(model: Path, photo: bytes, threads: int, args, results: dict) -> dict:
    """Images/s of the runner called directly, per batch size: engine only, and decoding +
    preprocessing each image + engine. Also the preprocessing of one image alone."""
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.bench import DEFAULT_BLOCK_PAUSE_S, time_blocks
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.onnx_tools import preprocessing_for_artifact

    prep, source = preprocessing_for_artifact(model)
    print(f"preprocessing: {source}")
    runner = OnnxRuntimeRunner(model, intra_op_threads=threads).activate()
    name = runner.inputs[0].name
    sample = prep(ImagePreprocessing.decode(photo))

    def with_prep(batch):
        images = [prep(ImagePreprocessing.decode(photo)) for _ in range(batch)]
        return runner.infer({name: np.stack(images)})

    fns, items = {}, {}
    for b in DIRECT_BATCHES:
        feed = {name: np.ascontiguousarray(np.stack([sample] * b))}
        fns[f"engine b{b}"] = lambda feed=feed: runner.infer(feed)
        fns[f"preprocess+engine b{b}"] = lambda b=b: with_prep(b)
        items[f"engine b{b}"] = items[f"preprocess+engine b{b}"] = b
    fns["preprocess 1 image"] = lambda: prep(ImagePreprocessing.decode(photo))
    items["preprocess 1 image"] = 1
    print(f"\ndirect: the runner with {threads} intra-op threads, {args.rounds} rounds x {args.block} calls "
          f"(warm-up {args.warmup}, {DEFAULT_BLOCK_PAUSE_S:g} s pauses, rotating)", flush=True)
    t0 = time.perf_counter()
    stats = time_blocks(fns, rounds=args.rounds, block=args.block, warmup=args.warmup,
                        pause_s=DEFAULT_BLOCK_PAUSE_S, items_per_call=items)
    runner.deactivate()
    print(f"  (took {time.perf_counter() - t0:.0f} s)")
    print(f"  {'callable':<24} {'median ms':>9} {'IQR ms':>15} {'img/s':>7}")
    for key, s in stats.items():
        print(f"  {key:<24} {s.median_ms:9.2f} {s.q1_ms:7.2f}-{s.q3_ms:7.2f} {s.throughput:7.1f}")
    results["direct"] = {k: s.to_dict() for k, s in stats.items()}
    return stats


def at_batch(throughputs: dict[int, float], batch: float) -> tuple[int, float, float]:
    """(nearest timed batch size, its throughput, throughput interpolated linearly at ``batch``)."""
    sizes = sorted(throughputs)
    nearest = min(sizes, key=lambda b: (abs(b - batch), b))
    clipped = min(max(batch, sizes[0]), sizes[-1])
    interpolated = float(np.interp(clipped, sizes, [throughputs[b] for b in sizes]))
    return nearest, throughputs[nearest], interpolated


# ---------------------------------------------------------------- the served path
def start_server(model: Path, threads: int, **limits):
    from deploylab.serve.app import ServeConfig, Server, free_port

    config = ServeConfig(str(model), threads=threads, port=free_port(), **limits)
    server = Server(config, keep_ray=True).start()
    deadline = time.perf_counter() + 60
    while http_status(f"{server.url}/health") != 200 and time.perf_counter() < deadline:
        time.sleep(0.2)
    c = server.config
    print(f"server at {server.url}: max batch {c.max_batch}, batch wait {c.batch_wait_ms:g} ms, {threads} engine "
          f"threads, max ongoing {c.ongoing_limit}, max queued {c.queue_limit} "
          f"(started in {server.start_seconds:.1f} s)",
          flush=True)
    return server


def router_max_backoff_s() -> float | None:
    """Ray Serve's longest wait between two tries to route a queued request to a full replica
    (``RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S``, ray/serve/_private/constants.py), or None."""
    try:
        from ray.serve._private.constants import RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S
    except ImportError:
        return None
    return float(RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S)


def breakdown_table(levels) -> str:
    lines = ["where a request's time went (medians of the 200 answers, ms; Server-Timing parts, \"http\" = the "
             "rest: proxy, routing, client; the medians need not add up to p50)",
             f"{'clients':>7} {'ok/s':>7} {'batch':>5} " + " ".join(f"{p:>10}" for p in PARTS) + f" {'p50':>7}"]
    for r in levels:
        parts = r.breakdown()
        lines.append(f"{r.concurrency:>7} {r.throughput:>7.1f} {r.mean_batch:>5.1f} "
                     + " ".join(f"{parts.get(p, math.nan):>10.1f}" for p in PARTS) + f" {r.percentile(50):>7.1f}")
    return "\n".join(lines)


def cpu_table(levels, cpu: list[dict]) -> str:
    groups = ("proxy", "replica", "client", "ray other")
    lines = ["CPU per answered image by process (ms; cores used in brackets). The replica's figure holds "
             "preprocessing, the engine and the request handling (the engine threads do not spin: "
             "deploylab serve turns spinning off)",
             f"{'clients':>7} " + " ".join(f"{g:>16}" for g in groups) + f" {'total cores':>11}"]
    for r, used in zip(levels, cpu):
        cells = [f"{used.get(g, 0) * 1000 / max(r.ok, 1):>8.1f} ({used.get(g, 0) / r.seconds:4.2f})" for g in groups]
        lines.append(f"{r.concurrency:>7} " + " ".join(f"{c:>16}" for c in cells)
                     + f" {sum(used.values()) / r.seconds:>11.2f}")
    return "\n".join(lines)


def saturation_goal(model, body, threads, direct, args, results) -> None:
    from deploylab.serve.loadtest import LoadTestReport

    server = start_server(model, threads, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
    try:
        content = "image/jpeg"
        print(f"warm-up: {args.max_batch} clients for 1 s (not counted)", flush=True)
        timed_level(server.predict_url, body, content, args.max_batch, 1.0)
        levels, cpu = [], []
        for clients in args.levels:
            time.sleep(args.pause)
            print(f"  {clients} clients for {args.level_seconds:g} s ...", flush=True)
            result, used = timed_level(server.predict_url, body, content, clients, args.level_seconds)
            levels.append(result)
            cpu.append(used)
    finally:
        server.stop()
    report = LoadTestReport(server.predict_url, levels)
    print("\n" + report.format() + "\n\n" + breakdown_table(levels))
    if any(cpu):
        print("\n" + cpu_table(levels, cpu))
    results["saturation"] = {**report.to_dict(), "cpu_seconds": cpu}

    best = max(range(len(levels)), key=lambda i: levels[i].throughput)
    sat, used = levels[best], cpu[best]
    engine = {b: direct[f"engine b{b}"].throughput for b in DIRECT_BATCHES}
    full = {b: direct[f"preprocess+engine b{b}"].throughput for b in DIRECT_BATCHES}
    b, engine_b, engine_interp = at_batch(engine, sat.mean_batch)
    _, full_b, _ = at_batch(full, sat.mean_batch)
    ratio = sat.throughput / engine_b
    print(f"\nsaturation: {sat.concurrency} clients, {sat.throughput:.1f} img/s, mean batch {sat.mean_batch:.2f} "
          f"-> nearest timed batch {b} (the goal's; interpolated at {sat.mean_batch:.2f}: direct engine "
          f"{engine_interp:.1f} img/s, ratio {sat.throughput / engine_interp:.3f})")
    print(f"served / direct including decoding + preprocessing at batch {b} ({full_b:.1f} img/s): "
          f"{sat.throughput / full_b:.3f} (the fair ceiling: the served path pays for preprocessing too)")
    per_image = 1000 / sat.throughput
    engine_ms, prep_ms = 1000 / engine_b, direct["preprocess 1 image"].median_ms
    left = per_image - engine_ms - prep_ms
    print(f"per served image {per_image:.2f} ms = direct engine at batch {b} {engine_ms:.2f} + preprocessing "
          f"{prep_ms:.2f} (direct) + {left:.2f} left to the proxy, HTTP, Ray and the client (they take the "
          "cores the engine needs)" + (": negative, the served path beat the direct timing, so the direct "
                                       "figure is no ceiling in this run (other load on the machine?)"
                                       if left < 0 else ""))
    if used:
        cores = os.cpu_count() or 1
        others = sum(v for g, v in used.items() if g != "replica")
        print(f"at saturation the processes other than the replica used {others / sat.seconds:.2f} of {cores} "
              f"cores ({others * 1000 / max(sat.ok, 1):.1f} ms CPU per image; the proxy alone "
              f"{used.get('proxy', 0) * 1000 / max(sat.ok, 1):.1f} ms)")
    parts = sat.breakdown()
    shown = ", ".join(f"{p} {parts[p]:.1f}" for p in PARTS if p in parts)
    results["goal1"] = {"clients": sat.concurrency, "served": sat.throughput, "mean_batch": sat.mean_batch,
                        "batch": b, "direct_engine": engine_b, "direct_engine_interpolated": engine_interp,
                        "direct_with_preprocessing": full_b, "breakdown_ms": parts}
    goal(results, "1", f"served {sat.throughput:.1f} img/s at {sat.concurrency} clients (mean batch "
         f"{sat.mean_batch:.2f}) / direct engine at batch {b} {engine_b:.1f} img/s = {ratio:.3f} (goal >= "
         f"{RATIO_GOAL:.2f}); vs direct incl. preprocessing {full_b:.1f} img/s: {sat.throughput / full_b:.3f}; "
         f"median ms {shown}", ratio >= RATIO_GOAL, ratio=ratio, ratio_with_preprocessing=sat.throughput / full_b)


def overload_goal(model, body, threads, args, results) -> None:
    limits = dict(max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, max_ongoing=args.max_ongoing,
                  max_queued=args.max_queued)
    server = start_server(model, threads, **limits)
    try:
        c = server.config
        clients = 2 * (c.ongoing_limit + c.queue_limit)
        print(f"warm-up: {c.max_batch} clients for 1 s (not counted)", flush=True)
        timed_level(server.predict_url, body, "image/jpeg", c.max_batch, 1.0)
        time.sleep(args.pause)
        print(f"overload: {clients} clients (2 x ({c.ongoing_limit} ongoing + {c.queue_limit} queued)) for "
              f"{args.overload_seconds:g} s ...", flush=True)
        r, used = timed_level(server.predict_url, body, "image/jpeg", clients, args.overload_seconds)
        health = http_status(f"{server.url}/health")
        after = http_status(server.predict_url, "POST", body, "image/jpeg")
    finally:
        server.stop()
    from deploylab.serve.loadtest import LoadTestReport

    print("\n" + LoadTestReport(server.predict_url, [r]).format() + "\n\n" + breakdown_table([r]))
    if used:
        print("\n" + cpu_table([r], [used]))
    others = {k: v for k, v in r.statuses.items() if k not in (200, 503)}
    bound = ((c.ongoing_limit + c.queue_limit + c.max_batch) / r.throughput * 1000 + c.batch_wait_ms
             if r.throughput > 0 else math.inf)
    p99 = r.percentile(99)
    print(f"\noverload: {r.sent} sent, {r.ok} answered 200, {r.statuses.get(503, 0)} answered 503 "
          f"(Retry-After: {', '.join(sorted(r.retry_after)) or 'none'}), other statuses {others or 'none'}, "
          f"{r.lost} lost; GET /health after: {health}, one POST after: {after}")
    print(f"p99 bound = ({c.ongoing_limit} ongoing + {c.queue_limit} queued + {c.max_batch} batch) / "
          f"{r.throughput:.1f} img/s + {c.batch_wait_ms:g} ms batch wait = {bound:.0f} ms; 200 latencies: p50 "
          f"{r.percentile(50):.0f}, p90 {r.percentile(90):.0f}, p99 {p99:.0f}, max "
          f"{max(r.latencies_ms, default=math.nan):.0f} ms")
    from deploylab.serve.loadtest import BACKOFF_S

    print(f"refusals: {r.statuses.get(503, 0) / r.seconds:.0f} x 503 per second (each client sends again "
          f"{BACKOFF_S * 1000:.0f} ms after a 503, not after Retry-After), proxy CPU "
          f"{used.get('proxy', 0) / r.seconds:.2f} cores")
    backoff = router_max_backoff_s()
    if backoff is not None:
        print(f"for context: the bound plus Ray Serve's longest router retry backoff ({backoff * 1000:.0f} ms: a "
              f"queued request waits up to that long after a slot frees) = {bound + backoff * 1000:.0f} ms")
    if not r.statuses.get(503):
        print("note: no request was refused, so the limits were never reached: this was no overload")
    results["overload"] = {**r.to_dict(), "clients": clients, "bound_ms": bound, "health_after": health,
                           "predict_after": after, "cpu_seconds": used,
                           "limits": {"max_batch": c.max_batch, "max_ongoing": c.ongoing_limit,
                                      "max_queued": c.queue_limit}}
    answered = not others and r.lost == 0
    alive = health == 200 and after == 200
    goal(results, "2a", f"overload {clients} clients x {r.seconds:.1f} s: {r.sent} sent, {r.ok} x 200, "
         f"{r.statuses.get(503, 0)} x 503, {sum(others.values())} other, {r.lost} lost; /health after {health}",
         answered and alive, sent=r.sent, lost=r.lost, health_after=health)
    goal(results, "2b", f"overload p99 of 200 answers {p99:.0f} ms <= bound {bound:.0f} ms "
         f"(p99/bound {p99 / bound:.2f})", bool(p99 <= bound), p99_ms=p99, bound_ms=bound)


def main(argv=None) -> int:
    from deploylab.env import collect_environment, machine_line

    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short levels (2 s) and overload (8 s): to check that the script works")
    parser.add_argument("--threads", type=int, default=cpus, help=f"engine threads, served and direct ({cpus})")
    parser.add_argument("--levels", default="1,4,8,16,32", help="load-test concurrency levels (1,4,8,16,32)")
    parser.add_argument("--level-seconds", type=float, default=None, help="seconds per level (6; --quick 2)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between levels (1)")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's max batch (8)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's batch wait, ms (5)")
    parser.add_argument("--max-ongoing", type=int, default=8, help="overload server: max ongoing (8)")
    parser.add_argument("--max-queued", type=int, default=8, help="overload server: max queued (8)")
    parser.add_argument("--overload-seconds", type=float, default=None, help="overload duration (30; --quick 8)")
    parser.add_argument("--rounds", type=int, default=None, help="direct timing: rounds (5; --quick 2)")
    parser.add_argument("--block", type=int, default=None, help="direct timing: calls per block (10; --quick 3)")
    parser.add_argument("--warmup", type=int, default=2, help="direct timing: warm-up calls per block (2)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    quick = args.quick
    args.level_seconds = args.level_seconds or (2.0 if quick else 6.0)
    args.overload_seconds = args.overload_seconds or (8.0 if quick else 30.0)
    args.rounds = args.rounds or (2 if quick else 5)
    args.block = args.block or (3 if quick else 10)

    from deploylab.data.images import sample_image_paths
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model
    from deploylab.paths import write_atomically
    from deploylab.serve.ray_local import ray_module, start_ray

    env = collect_environment()
    print(machine_line(env))
    print("goal 1 is a ratio of throughputs taken in this run, goal 2 a latency against a bound from this run's "
          "throughput; the script exits 0 either way" + (" (--quick: too short to judge the goals)" if quick else ""))
    results: dict = {"environment": env, "arguments": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    photo = next(p for p in sample_image_paths() if p.name == PHOTO)
    body = photo.read_bytes()
    print(f"request body: {photo.name}, {len(body):,} bytes of JPEG")
    started_ray = False
    with tempfile.TemporaryDirectory(prefix="serve-goals-") as tmp:
        model = Path(tmp) / "efficientnet_lite0.onnx"
        export_bundle(resolve_model("efficientnet_lite0"), model, dynamic_batch=True)
        try:
            direct = direct_throughput(model, body, args.threads, args, results)
            time.sleep(1.0)  # the direct runner's threads park before Ray starts
            started_ray = start_ray()
            from ray import serve  # its import sets its logger to INFO: quieten it after

            logging.getLogger(serve.__name__).setLevel(logging.WARNING)  # Serve's "started", "deleting app" lines
            print()
            saturation_goal(model, body, args.threads, direct, args, results)
            print()
            overload_goal(model, body, args.threads, args, results)
        finally:
            if started_ray:
                ray_module().shutdown()
    total = time.perf_counter() - started
    results["seconds"] = total
    print(f"\nsummary (wall time {total:.0f} s):")
    for g in results.get("goals", []):
        print("  " + g["line"])
    if args.json:
        write_atomically(args.json, json.dumps(results, indent=2, default=str).encode())
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
