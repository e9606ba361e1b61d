"""Issue 16: ``deploylab tune`` end to end on real engines (LeNet and small generated models).

Each search runs the real builders, ONNX Runtime and OpenVINO; the candidate sets are kept
small so a test takes seconds. What is asserted: a candidate outside the budget is never
chosen (a deliberately damaged one, and fabricated timings where it is the fastest), refused
candidates keep the engine's reason, the time budget cuts the expensive end, a reference that
cannot judge chooses nothing, the files, and bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deploylab.bench import summarize_timings
from deploylab.errors import DeployLabError
from deploylab.tune import tune
from deploylab.tune.candidates import Candidate
from deploylab.tune.report import TuneRow, _ms, choose_winner
from deploylab.tune.search import parse_time_budget, pick_finalists

FAST = dict(backends="onnxruntime", precisions=("fp32", "fp16"), progress=False)


def _row(name, ms, in_budget, threads=1):
    row = TuneRow(Candidate("onnxruntime", "fp32", threads, recipe=name))
    row.status, row.in_budget = "measured", in_budget
    samples = np.full(30, ms * 1e6)
    row.screen = row.final = summarize_timings(name, samples)
    return row


def test_outside_the_budget_never_wins_whatever_its_speed():
    fastest_but_damaged = _row("damaged", 1.0, False)
    unjudged = _row("unjudged", 1.5, None)
    kept = [_row("slow", 9.0, True), _row("kept", 5.0, True), _row("close", 5.5, True)]
    rows = [fastest_but_damaged, unjudged, *kept]
    finalists = pick_finalists(rows)
    assert fastest_but_damaged not in finalists and unjudged not in finalists
    assert [r.candidate.recipe for r in finalists] == ["kept", "close"]  # 9.0 ms is beyond 1.15x of 5.0
    assert choose_winner(finalists, "latency").candidate.recipe == "kept"
    # the selection can fail: judged the damaged row in budget, it would win
    fastest_but_damaged.in_budget = True
    assert choose_winner(pick_finalists(rows), "latency") is fastest_but_damaged
    # with --allow-unjudged a row the budget could not judge may be chosen, a failing one still not
    fastest_but_damaged.in_budget = False
    assert choose_winner(pick_finalists(rows, allow_unjudged=True), "latency") is unjudged
    assert choose_winner([], "latency") is None


def test_throughput_prefers_more_items():
    rows = [_row("a", 2.0, True), _row("b", 4.0, True)]  # items per call 1: a does 500/s, b 250/s
    for row in rows:
        row.objective = "throughput"
    assert choose_winner(pick_finalists(rows), "throughput").candidate.recipe == "a"


def _damage_fp16(monkeypatch):
    """Every fp16 artifact gets its first convolution's weights zeroed after it is built."""
    import deploylab.tune.search as search
    from onnx import numpy_helper

    real = search.build_artifact

    def damaged(candidate, onnx_path, work, calibration):
        built = real(candidate, onnx_path, work, calibration)
        if candidate.precision == "fp16":
            model = onnx.load(str(built.path))
            conv = next(n for n in model.graph.node if n.op_type == "Conv")
            for init in model.graph.initializer:
                if init.name == conv.input[1]:
                    init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
            onnx.save(model, str(built.path))
        return built

    monkeypatch.setattr(search, "build_artifact", damaged)


def test_a_damaged_candidate_is_judged_outside_and_not_chosen(monkeypatch, tmp_path):
    healthy = tune("lenet", **FAST)
    fp16 = [r for r in healthy.measured if r.candidate.precision == "fp16"]
    assert fp16 and all(r.in_budget for r in fp16)  # undamaged, fp16 LeNet keeps the budget
    _damage_fp16(monkeypatch)
    report = tune("lenet", out=tmp_path / "out", **FAST)
    damaged = [r for r in report.measured if r.candidate.precision == "fp16"]
    assert damaged and all(r.in_budget is False and r.fidelity.top1_agreement < 0.99 for r in damaged)
    assert report.winner is not None and report.winner.candidate.precision == "fp32"
    assert all(r not in report.finalists for r in damaged)
    saved = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert saved["winner"] == report.winner.label
    assert {c["name"]: c["in_budget"] for c in saved["candidates"] if c["precision"] == "fp16"} == {
        r.label: False for r in damaged}


def test_lenet_report_table_files_and_reproduction(tmp_path):
    out = tmp_path / "out"
    report = tune("lenet", budget="accuracy-drop<=1", out=out, **FAST)
    assert report.judged and report.reference.startswith("pytorch eager")
    assert "digits of the test split" in report.held_out
    winner = report.winner
    assert winner is not None and winner.in_budget and winner.final is not None
    # the conclusion is computed from the final run: ratios over ONNX Runtime fp32 and eager
    line = report.conclusion()
    assert line.startswith(f"{winner.label} won") and "pytorch eager" in line
    assert f"{_ms(winner.final.median_ms)} ms" in line
    table = report.table()
    assert "<- chosen" in table and "refused" not in table  # fp32/fp16 on ORT all run
    files = sorted(p.name for p in out.iterdir())
    assert files == ["pareto.png", "tune.json", "winner.onnx"]
    saved = json.loads((out / "tune.json").read_text())
    assert saved["reproduce"]["steps"][0].startswith("deploylab export lenet")
    assert saved["environment"]["cpu_count"] >= 1 and saved["conclusion"] == line
    # the artifact written is the winner's, and runs
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.data.digits import load_digits_split

    test = load_digits_split("test")
    with OnnxRuntimeRunner(out / "winner.onnx") as runner:
        logits = runner.infer({"input": test.images[:1]})["output"]
    assert logits.shape == (1, 10)
    # a second run into the same folder replaces the previous winner instead of piling up
    tune("lenet", backends="openvino", precisions="fp32", out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["pareto.png", "tune.json", "winner.bin", "winner.xml"]


def _cumprod_model(path):
    """x (N, 10) -> CumProd(x): ONNX Runtime runs it, OpenVINO 2026.4's ONNX frontend does not convert it."""
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    node = helper.make_node("CumProd", ["x", "axis"], ["y"])
    graph = helper.make_graph([node], "cumprod", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [axis])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26)], ir_version=11), str(path))
    return path


def test_refused_candidates_keep_the_engines_reason(tmp_path):
    model = _cumprod_model(tmp_path / "cumprod.onnx")
    report = tune(model, backends="onnxruntime,openvino,tensorrt", precisions="fp32,bf16", progress=False,
                  budget="max-abs-error<=1e-4")
    by_backend = {}
    for row in report.rows:
        by_backend.setdefault(row.candidate.backend, []).append(row)
    assert all(r.status == "measured" for r in by_backend["onnxruntime"] if r.candidate.precision == "fp32")
    ov = by_backend["openvino"]
    assert ov and all(r.status == "refused" and r.reason for r in ov)
    assert any("OpenVINO cannot convert" in r.reason for r in ov)  # the engine's own refusal, kept
    assert all(r.reason for r in report.rows if r.status != "measured")
    trt = by_backend["tensorrt"]
    if not report.environment["gpu"]:
        assert all(r.status == "not on this machine" and "--backend tensorrt" in r.candidate.command for r in trt)
    # no labels and no image preprocessing: seeded inputs, said to judge little
    assert "seeded" in report.held_out and "judge little" in report.held_out_warning
    assert report.winner is not None and report.winner.candidate.backend == "onnxruntime"
    assert "refused" in report.table() and "not on this machine" in report.table()


def test_the_time_budget_cuts_the_expensive_end():
    report = tune("lenet", backends="onnxruntime", precisions="fp32,int8", time_budget=1, progress=False)
    measured = report.measured
    cut = [r for r in report.rows if r.status == "not measured"]
    assert measured and measured[0].candidate.precision == "fp32"  # the cheapest is always measured
    assert cut and all("time budget" in r.reason for r in cut)
    assert all(r.candidate.cost >= max(m.candidate.cost for m in measured) for r in cut)
    assert "not measured: time budget" in report.table()


def _constant_lenet(path):
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    bundle = resolve_model("lenet")
    last = [m for m in bundle.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(10, dtype=torch.float32))  # class 9, always
    export_bundle(bundle, path, exporter="torchscript", opset=17)
    return path


def test_a_reference_that_cannot_judge_chooses_nothing_unless_allowed(tmp_path):
    model = _constant_lenet(tmp_path / "constant.onnx")
    report = tune(model, backends="onnxruntime", precisions="fp32", progress=False)
    assert not report.judged and report.reference_classes == 1
    assert report.winner is None and all(r.in_budget is None for r in report.measured)
    assert "cannot judge" in report.conclusion() and "--allow-unjudged" in report.conclusion()
    allowed = tune(model, backends="onnxruntime", precisions="fp32", allow_unjudged=True, progress=False)
    assert allowed.winner is not None and "chosen by speed alone" in allowed.conclusion()


def test_value_budgets_still_judge_a_constant_reference(tmp_path):
    # a constant classifier cannot be judged by agreement, but its values can be compared
    model = _constant_lenet(tmp_path / "constant.onnx")
    report = tune(model, budget="max-abs-error<=1e-3", backends="onnxruntime", precisions="fp32", progress=False)
    assert report.judged and report.winner is not None and report.winner.in_budget


def _four_classes(path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [10, 4], np.linspace(-1, 1, 40).tolist())
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "four", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("budget, said", [("top5-overlap>=0.9", "needs at least 6"),
                                          ("accuracy-drop<=1", "needs labelled held-out inputs")])
def test_budgets_the_model_cannot_have_are_refused(tmp_path, budget, said):
    with pytest.raises(DeployLabError, match=said):
        tune(_four_classes(tmp_path / "four.onnx"), budget=budget, **FAST)


def test_an_unwritable_out_is_refused_before_the_search():
    started = time.perf_counter()
    with pytest.raises(DeployLabError, match="cannot be written"):
        tune("lenet", out="/proc/deploylab-tune", **FAST)
    assert time.perf_counter() - started < 20  # refused up front, not after a whole search


def test_throughput_objective_puts_requests_in_flight():
    report = tune("lenet", objective="throughput", batch=8, backends="onnxruntime,openvino", precisions="fp32",
                  progress=False)
    cpus = report.environment["cpu_count"]
    rows = {r.label: r for r in report.measured}
    if cpus > 1:
        one_per_core = [r for r in rows.values() if r.candidate.backend == "onnxruntime" and r.candidate.threads == 1]
        assert one_per_core and all(r.in_flight == cpus for r in one_per_core)
    streams = [r for r in rows.values() if r.candidate.hint == "throughput"]
    assert streams and all(r.in_flight >= 1 and r.candidate.requests == 0 for r in streams)
    assert report.winner is not None and report.winner.final.throughput > 0
    assert "items/s" in report.conclusion()


@pytest.mark.parametrize("text, seconds", [("180s", 180.0), ("3m", 180.0), ("90", 90.0), (" 2.5M ", 150.0)])
def test_time_budgets_parse(text, seconds):
    assert parse_time_budget(text) == seconds


@pytest.mark.parametrize("text", ["0s", "-5", "abc", "", "1e9", "nan", "inf"])
def test_bad_time_budgets_are_refused(text):
    with pytest.raises(DeployLabError, match="--time-budget"):
        parse_time_budget(text)


@pytest.mark.parametrize("args, said", [
    (["nosuch"], "unknown model 'nosuch'"),
    (["lenet", "--budget", "speed>=2"], "unknown metric 'speed'"),
    (["lenet", "--budget", "top1-agreement<=0.9"], "is bounded with >="),
    (["lenet", "--backends", "onnxruntime,foo"], "--backends: unknown 'foo'"),
    (["lenet", "--precisions", "int3"], "--precisions: unknown 'int3'"),
    (["lenet", "--time-budget", "soon"], "--time-budget 'soon'"),
    (["lenet", "--batch", "0"], "--batch must be an integer from 1"),
    (["missing.onnx"], "does not exist"),
    (["lenet", "--checkpoint", "missing.pt"], "missing.pt"),
])
def test_bad_input_is_one_line_exit_2(args, said, tmp_path):
    result = subprocess.run([sys.executable, "-m", "deploylab.cli", "tune", *args], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr


def test_out_must_be_new_empty_or_a_previous_tune(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DeployLabError, match="other files in it"):
        tune("lenet", out=tmp_path, **FAST)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(DeployLabError, match="is a file"):
        tune("lenet", out=tmp_path / "mine.txt", **FAST)


def test_an_onnx_file_with_another_fixed_batch_is_refused(tmp_path, lenet_ts11):
    with pytest.raises(DeployLabError, match="--batch 1"):
        tune(lenet_ts11.path, batch=4, **FAST)


def test_the_command_writes_everything_and_exits_1_when_nothing_is_chosen(tmp_path):
    command = [sys.executable, "-m", "deploylab.cli", "tune", "lenet", "--backends", "onnxruntime",
               "--precisions", "fp32"]
    chosen = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert chosen.returncode == 0, chosen.stderr
    assert sorted(p.name for p in (tmp_path / "tune_lenet").iterdir()) == ["pareto.png", "tune.json", "winner.onnx"]
    assert " won: " in chosen.stdout and "written to tune_lenet: tune.json, pareto.png, winner.onnx" in chosen.stdout
    # a budget nothing keeps: the table and report still, no winner, exit 1
    strict = subprocess.run(command + ["--budget", "max-abs-error<=1e-30", "--out", "strict"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=600)
    assert strict.returncode == 1, strict.stderr
    assert "nothing chosen: no measured candidate keeps the budget" in strict.stdout
    assert sorted(p.name for p in (tmp_path / "strict").iterdir()) == ["pareto.png", "tune.json"]
    assert json.loads((tmp_path / "strict" / "tune.json").read_text())["winner"] is None
