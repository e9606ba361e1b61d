"""The goals of issue 16 for ``deploylab tune``, measured in one run and printed as ratios.

Latency (``tune resnet18 --allow-unjudged`` and ``tune efficientnet_lite0``, batch 1), per model,
one block run (``deploylab.bench.time_blocks``: engine by engine, pauses, rotating order) of:
every candidate eligible under the tune's budget (its runner made again from the tune's own
artifact), the winner's engine called directly with the same settings, and the configurations
a user writes by hand from the engines' defaults on the same files. Goals:

  1a  winner median / fastest eligible median <= 1.05   (the choice is right, not lucky)
  1b  winner through deploylab / the same engine called directly <= 1.10
  1c  winner median <= the fastest hand configuration that keeps the budget
  1d  EfficientNet-Lite0 winner's top-1 agreement >= 0.99; each tune's wall time < 180 s

Throughput (``tune resnet18 --objective throughput --batch 32 --allow-unjudged``):

  2a  every eligible candidate re-timed in throughput mode (requests in flight where the tune
      used them): winner items/s / best items/s >= 0.97
  2b  winner items/s / the estimated int8 peak of this CPU (deploylab.tune.peak) >= 0.90
      "where the engines allow it" (the figure is printed whatever it is)

No absolute time is asserted: every goal is a ratio of timings taken in the same block run.
The script exits 0 whether or not a goal is met; each goal line says "met" or "NOT MET".

Run: .venv/bin/python benchmarks/tune_goals.py [--skip-throughput] [--time-budget 180] [--json out.json]
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
from goals import goal

WALL_GOAL_S = 180.0


def eligible(report, allow_unjudged: bool) -> list:
    """The measured rows the tune could choose from: in budget, or unjudged with allow_unjudged."""
    return [r for r in report.measured
            if r.in_budget is True or (r.in_budget is None and allow_unjudged)]


def find_row(report, backend: str, precision: str, recipe=None, calibration=None):
    """The first row whose artifact was built for this backend/precision(/recipe/calibration)."""
    for row in report.rows:
        c = row.candidate
        if (row.built is not None and c.backend == backend and c.precision == precision
                and (recipe is None or c.recipe == recipe) and (calibration is None or c.calibration == calibration)):
            return row
    return None


# ---------------------------------------------------------------- the engines called without deploylab
def ort_session(path: Path, threads: int | None = None):
    """``onnxruntime.InferenceSession``: with ``threads``, intra-op threads set like the runner; without,
    the engine's defaults (no options at all)."""
    import onnxruntime as ort

    if threads is None:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), session


def ov_compiled(path: Path, config: dict | None = None):
    """``openvino.Core().compile_model`` (``config`` None: the plugin's defaults) and one infer request."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", config) if config else core.compile_model(str(path), "CPU")
    request = compiled.create_infer_request()
    output = compiled.output(0)
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return (lambda x: request.infer({0: x})[output]), precision


def direct_for(row) -> tuple:
    """The winner's engine called directly with the winner's settings on the winner's artifact."""
    from deploylab.backends.openvino import HINTS, PRECISIONS

    c = row.candidate
    if c.backend == "onnxruntime":
        fn, _ = ort_session(row.built.path, c.threads)
        return fn, f"InferenceSession(intra_op_num_threads={c.threads}).run"
    config = {"PERFORMANCE_HINT": HINTS[c.hint], "INFERENCE_NUM_THREADS": c.threads}
    if c.precision in ("fp32", "bf16", "fp16"):
        config["INFERENCE_PRECISION_HINT"] = PRECISIONS[c.precision]
    fn, _ = ov_compiled(row.built.path, config)
    return fn, f"compile_model(CPU, {config}) + infer request"


def hand_configs(report) -> dict:
    """name -> (fn(x), note): what a user writes from the engines' defaults, on the tune's own files."""
    fp32 = find_row(report, "onnxruntime", "fp32")
    ov_int8 = find_row(report, "openvino", "int8")
    ort_int8 = find_row(report, "onnxruntime", "int8", "u8s8-per-channel", "minmax")
    configs = {}
    if fp32 is not None:
        fn, _ = ort_session(fp32.built.path)
        configs["hand: onnxruntime InferenceSession(fp32.onnx)"] = (fn, "ORT defaults (threads: its own choice)")
        fn, precision = ov_compiled(fp32.built.path)
        configs["hand: openvino compile_model(fp32.onnx, CPU)"] = (fn, f"OpenVINO defaults; runs {precision}")
    if ov_int8 is not None:
        fn, precision = ov_compiled(ov_int8.built.path)
        configs["hand: openvino compile_model(nncf int8 IR, CPU)"] = (fn, f"OpenVINO defaults; float layers "
                                                                          f"{precision}")
    if ort_int8 is not None:
        fn, _ = ort_session(ort_int8.built.path)
        configs["hand: onnxruntime InferenceSession(u8s8 minmax int8.onnx)"] = (fn, "ORT defaults")
    return configs


def predict_fn(fn, inputs: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(np.ascontiguousarray(inputs[i:i + batch])))
                           for i in range(0, len(inputs), batch)])


def reference_for(report, cpus: int):
    """The tune's reference again: held-out inputs of the tuned file and PyTorch eager's outputs on them."""
    from deploylab.backends.torch_eager import TorchEagerRunner
    from deploylab.batching import predict
    from deploylab.models import resolve_model
    from deploylab.tune.heldout import held_out_inputs

    fp32 = find_row(report, "onnxruntime", "fp32")
    held = held_out_inputs(fp32.built.path, report.batch)
    bundle = resolve_model(report.model)
    eager = TorchEagerRunner(bundle, threads=cpus).activate()
    outputs = predict(eager, held.inputs, 32)
    eager.deactivate()
    return held.inputs, outputs


# ---------------------------------------------------------------- latency
def latency_goals(label: str, report, allow_unjudged: bool, args, cpus: int, results: dict) -> None:
    from deploylab.backends.torch_eager import TorchEagerRunner
    from deploylab.batching import batch_feed
    from deploylab.bench import DEFAULT_BLOCK_PAUSE_S, compare_timings, time_blocks, time_call
    from deploylab.models import resolve_model
    from deploylab.quantize.evaluate import fidelity
    from deploylab.tune.artifacts import make_candidate_runner
    from deploylab.tune.budget import parse_budget

    out = results.setdefault("latency", {}).setdefault(label, {})
    out["tune_seconds"] = report.seconds
    out["winner"] = report.winner.label if report.winner else None
    goal(results, f"1d {label} wall", f"{label} tune wall time {report.seconds:.1f} s (goal < {WALL_GOAL_S:g} s)",
         report.seconds < WALL_GOAL_S, seconds=report.seconds)
    winner = report.winner
    if winner is None:
        goal(results, f"1a-c {label}", f"{label}: the tune chose nothing ({report.conclusion()})", False)
        return
    batch = report.batch
    budget = parse_budget(report.budget)
    rows = eligible(report, allow_unjudged)
    runners = {}
    for row in rows:
        runners[row.label] = make_candidate_runner(row.candidate, row.built).activate()
    feed = batch_feed(runners[winner.label], batch, 0)
    x = next(iter(feed.values()))
    fns = {f"cand: {name}": (lambda r=r: r.infer(feed)) for name, r in runners.items()}
    direct_fn, direct_text = direct_for(winner)
    fns["direct: winner's engine"] = lambda: direct_fn(x)
    hands = hand_configs(report)
    for name, (fn, _) in hands.items():
        fns[name] = lambda fn=fn: fn(x)

    # Which hand configurations keep the budget: their top-1 agreement against the tune's reference.
    keeps, agreement = {}, {}
    if report.judged:
        inputs, reference = reference_for(report, cpus)
        for name, (fn, _) in hands.items():
            fid = fidelity(reference, predict_fn(fn, inputs, batch))
            agreement[name] = fid.top1_agreement
            keeps[name] = budget.keeps(fid, None)
        mine = fidelity(reference, predict_fn(lambda a: runners[winner.label].infer(
            {next(iter(feed)): a})[runners[winner.label].output_names[0]], inputs, batch))
        print(f"{label}: winner's top-1 agreement re-measured here {mine.top1_agreement:.2%} "
              f"(the tune's report: {winner.fidelity.top1_agreement:.2%})")
    else:
        keeps = {name: True for name in hands}  # the budget cannot judge seeded weights: speed alone

    print(f"\n{label}: timing {len(fns)} callables together by blocks ({args.rounds} rounds x {args.block} "
          f"calls, warmup {args.warmup}, {DEFAULT_BLOCK_PAUSE_S:g} s pauses, rotating), batch {batch}", flush=True)
    t0 = time.perf_counter()
    stats = time_blocks(fns, rounds=args.rounds, block=args.block, warmup=args.warmup,
                        pause_s=DEFAULT_BLOCK_PAUSE_S, items_per_call=batch)
    print(f"  (took {time.perf_counter() - t0:.0f} s)")
    eager_alone = None
    if report.model in ("resnet18", "efficientnet_lite0"):
        for r in runners.values():
            r.deactivate()
        runners.clear()
        eager = TorchEagerRunner(resolve_model(report.model), threads=cpus).activate()
        eager_feed = batch_feed(eager, batch, 0)
        time.sleep(DEFAULT_BLOCK_PAUSE_S)
        eager_alone = time_call(lambda: eager.infer(eager_feed), label="pytorch eager alone", warmup=3,
                                repeats=args.block, items_per_call=batch)
        eager.deactivate()
    for r in runners.values():
        r.deactivate()

    print(f"  {'callable':<62} {'median ms':>9} {'IQR ms':>15}  note")
    for key, s in sorted(stats.items(), key=lambda kv: kv[1].median_ms):
        note = ""
        if key == f"cand: {winner.label}":
            note = "<- the tune's winner"
        elif key.startswith("direct"):
            note = direct_text
        elif key in hands:
            note = hands[key][1] + ("" if not agreement else f"; top-1 {agreement[key]:.2%}, "
                                    f"{'keeps' if keeps[key] else 'OUTSIDE'} {report.budget}")
        print(f"  {key:<62} {s.median_ms:9.2f} {s.q1_ms:7.2f}-{s.q3_ms:7.2f}  {note}")
    out["timings"] = {k: s.to_dict() for k, s in stats.items()}
    out["hand_agreement"] = agreement
    out["hand_keeps_budget"] = keeps

    w = stats[f"cand: {winner.label}"]
    cands = {k: s for k, s in stats.items() if k.startswith("cand: ")}
    fastest_key = min(cands, key=lambda k: cands[k].median_ms)
    ratio_a = w.median_ms / cands[fastest_key].median_ms
    others = {k: s for k, s in cands.items() if k != f"cand: {winner.label}"}
    if fastest_key == f"cand: {winner.label}" and others:  # the winner is the fastest: by how much
        second = min(others, key=lambda k: others[k].median_ms)
        margin = (f"the winner is the fastest; runner-up {second[6:]} {others[second].median_ms:.2f} ms: "
                  f"{compare_timings(w, others[second]).sentence()}")
    else:
        margin = compare_timings(w, cands[fastest_key]).sentence()
    goal(results, f"1a {label}", f"{label}: winner {winner.label} {w.median_ms:.2f} ms / fastest of "
         f"{len(cands)} eligible {fastest_key[6:]} {cands[fastest_key].median_ms:.2f} ms = {ratio_a:.3f} "
         f"(goal <= 1.05; {margin})", ratio_a <= 1.05, ratio=ratio_a)

    d = stats["direct: winner's engine"]
    ratio_b = w.median_ms / d.median_ms
    goal(results, f"1b {label}", f"{label}: deploylab {w.median_ms:.2f} ms / direct {d.median_ms:.2f} ms = "
         f"{ratio_b:.3f} (goal <= 1.10; measurable: {compare_timings(w, d).measurable})", ratio_b <= 1.10,
         ratio=ratio_b)

    kept = {k: stats[k] for k in hands if keeps.get(k)}
    if kept:
        hand_key = min(kept, key=lambda k: kept[k].median_ms)
        h = kept[hand_key]
        cmp = compare_timings(w, h)
        goal(results, f"1c {label}", f"{label}: winner {w.median_ms:.2f} ms vs fastest hand config keeping the "
             f"budget {hand_key[6:]} {h.median_ms:.2f} ms: hand/winner = {h.median_ms / w.median_ms:.3f} "
             f"(goal: winner <= hand; difference measurable: {cmp.measurable})", w.median_ms <= h.median_ms,
             ratio=h.median_ms / w.median_ms, measurable=cmp.measurable, hand=hand_key)
    else:
        goal(results, f"1c {label}", f"{label}: no hand configuration keeps {report.budget}; the winner has "
             "nothing to beat", True)
    if eager_alone is not None:
        speedup = eager_alone.median_ms / w.median_ms
        print(f"{label}: winner {w.median_ms:.2f} ms vs PyTorch eager timed alone {eager_alone.median_ms:.2f} ms "
              f"({eager_alone.spread_text()}): {speedup:.2f}x eager alone")
        out["eager_alone"] = eager_alone.to_dict()
        out["speedup_over_eager_alone"] = speedup
    if report.judged:
        top1 = winner.fidelity.top1_agreement
        goal(results, f"1d {label} top-1", f"{label}: winner's top-1 agreement {top1:.2%} (goal >= 99%)",
             top1 >= 0.99, top1=top1)


# ---------------------------------------------------------------- throughput
def throughput_goals(report, args, results: dict) -> None:
    from deploylab.batching import batch_feed
    from deploylab.bench import DEFAULT_BLOCK_PAUSE_S, RequestPool, compare_timings, time_blocks
    from deploylab.tune.artifacts import make_candidate_runner
    from deploylab.tune.peak import estimate_int8_peak

    out = results.setdefault("throughput", {})
    out["tune_seconds"] = report.seconds
    goal(results, "2 wall", f"throughput tune wall time {report.seconds:.1f} s (goal: within its --tp-time-budget "
         f"{report.time_budget:g} s)", report.seconds <= report.time_budget, seconds=report.seconds)
    winner = report.winner
    if winner is None:
        goal(results, "2a", f"throughput: the tune chose nothing ({report.conclusion()})", False)
        return
    batch = report.batch
    fns, items, runners, pools = {}, {}, [], []
    for row in eligible(report, True):
        runner = make_candidate_runner(row.candidate, row.built).activate()
        runners.append(runner)
        feed = batch_feed(runner, batch, 0)
        if row.in_flight > 1:
            pool = RequestPool(runner, row.in_flight)
            pools.append(pool)
            feeds = [feed] * (2 * row.in_flight)
            fns[row.label] = lambda pool=pool, feeds=feeds: pool.run(feeds)
            items[row.label] = batch * len(feeds)
        else:
            fns[row.label] = lambda runner=runner, feed=feed: runner.infer(feed)
            items[row.label] = batch
    print(f"\nthroughput: timing {len(fns)} eligible candidates together by blocks ({args.tp_rounds} rounds x "
          f"{args.tp_block} calls, warmup {args.tp_warmup}), batch {batch}", flush=True)
    t0 = time.perf_counter()
    stats = time_blocks(fns, rounds=args.tp_rounds, block=args.tp_block, warmup=args.tp_warmup,
                        pause_s=DEFAULT_BLOCK_PAUSE_S, items_per_call=items)
    print(f"  (took {time.perf_counter() - t0:.0f} s)")
    for pool in pools:
        pool.close()
    for runner in runners:
        runner.deactivate()
    print(f"  {'candidate':<52} {'items/s':>8} {'items/call':>10}")
    for key, s in sorted(stats.items(), key=lambda kv: -kv[1].throughput):
        mark = "  <- the tune winner" if key == winner.label else ""
        print(f"  {key:<52} {s.throughput:8.1f} {s.items_per_call:>10}{mark}")
    out["timings"] = {k: s.to_dict() for k, s in stats.items()}
    w = stats[winner.label]
    best_key = max(stats, key=lambda k: stats[k].throughput)
    ratio = w.throughput / stats[best_key].throughput
    measurable = compare_timings(w.per_item(), stats[best_key].per_item()).measurable  # per item: calls differ
    goal(results, "2a", f"throughput: winner {winner.label} {w.throughput:.1f}/s / best {best_key} "
         f"{stats[best_key].throughput:.1f}/s = {ratio:.3f} (goal >= 0.97; difference measurable per item: "
         f"{measurable})", ratio >= 0.97, ratio=ratio, measurable=measurable)

    fp32 = find_row(report, "onnxruntime", "fp32")
    try:
        peak = estimate_int8_peak(fp32.built.path, report.environment)
    except Exception as exc:  # noqa: BLE001 - report why, keep the other goals
        goal(results, "2b", f"throughput: the int8 peak cannot be estimated here: {exc}", None)
        return
    print(f"throughput: {peak.format()}")
    share = w.throughput / peak.images_per_s
    int8 = [r.label for r in report.measured if r.candidate.precision == "int8"]
    print(f"throughput: {len(int8)} int8 candidate(s) measured by the tune"
          + ("" if int8 else " (none: the peak is an int8 figure, so an fp32 winner cannot approach it)"))
    out["int8_measured"] = int8
    out["peak"] = {"images_per_s": peak.images_per_s, "text": peak.format()}
    goal(results, "2b", f"throughput: winner {w.throughput:.1f} img/s / estimated int8 peak "
         f"{peak.images_per_s:.0f} img/s = {share:.3f} (goal >= 0.90 where the engines allow it)",
         share >= 0.90, ratio=share)


def run_tune(label: str, args, results: dict, **kwargs):
    from deploylab.tune import tune

    shown = {k: v for k, v in kwargs.items() if k != "work_dir"}
    print(f"\n=== {label}: tune({', '.join(f'{k}={v!r}' for k, v in shown.items())})",
          flush=True)
    kwargs.setdefault("time_budget", args.time_budget)
    report = tune(progress=False, **kwargs)
    print(report.table())
    print(report.conclusion(), flush=True)
    results.setdefault("tunes", {})[label] = report.to_dict()
    return report


def main(argv=None) -> int:
    from deploylab.env import collect_environment, machine_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-throughput", action="store_true", help="only the latency goals (1a-1d)")
    parser.add_argument("--time-budget", type=float, default=180.0, help="tune's --time-budget, seconds (180)")
    parser.add_argument("--rounds", type=int, default=7, help="latency re-timing: rounds (7)")
    parser.add_argument("--block", type=int, default=30, help="latency re-timing: calls per block (30)")
    parser.add_argument("--warmup", type=int, default=3, help="latency re-timing: warm-up calls per block (3)")
    parser.add_argument("--tp-time-budget", type=float, default=600.0,
                        help="the throughput tune's --time-budget, seconds (600: batch 32 on 2 cores takes minutes)")
    parser.add_argument("--tp-rounds", type=int, default=5, help="throughput re-timing: rounds (5)")
    parser.add_argument("--tp-block", type=int, default=3, help="throughput re-timing: calls per block (3)")
    parser.add_argument("--tp-warmup", type=int, default=1, help="throughput re-timing: warm-up calls (1)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    env = collect_environment()
    cpus = int(env.get("cpu_count") or os.cpu_count() or 1)
    print(machine_line(env))
    print("every goal is a ratio of timings taken in the same block run; the script exits 0 either way")
    results: dict = {"environment": env, "arguments": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tune-goals-") as tmp:
        tmp = Path(tmp)
        report = run_tune("resnet18 latency", args, results, model="resnet18", allow_unjudged=True,
                          work_dir=tmp / "resnet18")
        latency_goals("resnet18", report, True, args, cpus, results)
        del report
        report = run_tune("efficientnet_lite0 latency", args, results, model="efficientnet_lite0",
                          budget="top1-agreement>=0.99", work_dir=tmp / "efficientnet_lite0")
        latency_goals("efficientnet_lite0", report, False, args, cpus, results)
        del report
        if not args.skip_throughput:
            report = run_tune("resnet18 throughput", args, results, model="resnet18", objective="throughput",
                              batch=32, allow_unjudged=True, work_dir=tmp / "resnet18_throughput",
                              time_budget=args.tp_time_budget)
            throughput_goals(report, args, results)
            del report
    total = time.perf_counter() - started
    results["seconds"] = total
    print(f"\nsummary ({total / 60:.1f} min):")
    for g in results.get("goals", []):
        print("  " + g["line"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
