"""Sweeps over runners and batch sizes, their files (JSON, CSV), the table, the plot and
``deploylab bench`` (``deploylab.bench.sweeps``, ``deploylab.bench.results``, ``deploylab.cli.bench``),
on the shared LeNet exports: a symbolic batch dim, a fixed batch of 1, and an OpenVINO IR
bounded to batch [1, 16].

No test asserts an absolute time.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime

import pytest

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.bench import CSV_COLUMNS, SweepResults, sweep
from deploylab.cli import main
from deploylab.cli.bench import parse_sizes
from deploylab.errors import DeployLabError


@pytest.fixture(scope="module")
def lenet_sweep(lenet_ts_dynamic, lenet_ts11, lenet_ir):
    from deploylab.backends.openvino import OpenVinoRunner

    runners = {
        "ort": OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1),
        "ov": OpenVinoRunner(lenet_ir, threads=1),
        "ort fixed": OnnxRuntimeRunner(lenet_ts11.path),
    }
    return sweep(runners, (1, 4, 32), repeats=5, warmup=1, concurrency=(2,), progress=False)


def test_parse_sizes():
    assert parse_sizes("1, 8,32,8") == (1, 8, 32)
    with pytest.raises(DeployLabError, match="--batch '1,x' must be comma-separated positive integers"):
        parse_sizes("1,x")
    with pytest.raises(DeployLabError, match="contains 0"):
        parse_sizes("0,4")


# ---------------------------------------------------------------- sweeps and files
def test_sweep_records_skipped_batches_with_reasons(lenet_sweep):
    measured = {(r.runner, r.batch_size, r.mode) for r in lenet_sweep.results}
    assert {(n, b) for n, b, m in measured if m == "sync"} == {
        ("ort", 1), ("ort", 4), ("ort", 32), ("ov", 1), ("ov", 4), ("ort fixed", 1)}
    reasons = {(s.runner, s.batch_size): s.reason for s in lenet_sweep.skipped}
    assert set(reasons) == {("ov", 32), ("ort fixed", 4), ("ort fixed", 32)}
    assert "[1, 16]" in reasons[("ov", 32)] and "not 32" in reasons[("ov", 32)]
    assert "fixed batch of 1" in reasons[("ort fixed", 4)]
    ov = next(r for r in lenet_sweep.results if r.runner == "ov")
    assert (ov.backend, ov.threads, ov.precision) in {("openvino", 1, "fp32")}
    assert lenet_sweep.environment["cpu_count"] >= 1 and "packages" in lenet_sweep.environment
    datetime.fromisoformat(lenet_sweep.timestamp)
    for name in ("ort", "ov", "ort fixed"):
        best = lenet_sweep.best_batch(name)
        top = max(lenet_sweep.for_runner(name), key=lambda r: r.throughput_per_s)
        assert best == top.batch_size
    assert lenet_sweep.best_batch("ort fixed") == 1
    with pytest.raises(DeployLabError, match="no sync results for runner 'trt'; runners measured: 'ort', 'ov'"):
        lenet_sweep.best_batch("trt")
    table = lenet_sweep.table()
    assert "skipped ov batch 32:" in table and "median ms" in table and "async" in table


def test_sweep_checks_each_point_once(lenet_ir, monkeypatch):
    """The plan checks every (runner, batch size) against the bounds; timing it, the
    concurrent rounds included, trusts the plan and checks nothing again."""
    import deploylab.bench.run
    import deploylab.bench.sweeps
    from deploylab.backends.openvino import OpenVinoRunner
    from deploylab.batching import check_batch_bounds
    from deploylab.bench import plan_sweep, run_sweep

    checked = []

    def counting(runner, batch):
        checked.append(batch)
        return check_batch_bounds(runner, batch)

    for module in (deploylab.bench.sweeps, deploylab.bench.run):
        monkeypatch.setattr(module, "check_batch_bounds", counting)
    plan = plan_sweep({"ov": OpenVinoRunner(lenet_ir, threads=1)}, (1, 4, 32))
    assert checked == [1, 4, 32] and plan.point_count == 2
    assert [(s.batch_size, "[1, 16]" in s.reason) for s in plan.skipped] == [(32, True)]
    results = run_sweep(plan, repeats=2, warmup=0, rounds=1, pause_s=0.0, concurrency=(2,), progress=False)
    assert checked == [1, 4, 32]  # nothing checked twice
    assert sorted((r.batch_size, r.mode) for r in results.results) == [
        (1, "async"), (1, "sync"), (4, "async"), (4, "sync")]
    assert results.settings["batch_sizes"] == [1, 4, 32] and results.skipped == plan.skipped


def test_results_json_round_trip_and_csv_columns(lenet_sweep, tmp_path):
    path = lenet_sweep.to_json(tmp_path / "sweep.json")
    loaded = SweepResults.from_json(path)
    assert loaded.to_dict() == json.loads(path.read_text()) == lenet_sweep.to_dict()
    assert loaded.results == lenet_sweep.results and loaded.skipped == lenet_sweep.skipped
    assert loaded.table() == lenet_sweep.table()
    with open(lenet_sweep.to_csv(tmp_path / "sweep.csv"), newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS == (
        "runner", "backend", "batch", "mode", "concurrency", "n", "median_ms", "q1_ms", "q3_ms", "p90_ms",
        "p99_ms", "min_ms", "throughput_per_s", "per_item_ms", "threads", "spinning", "precision", "method")
    assert len(rows) == len(lenet_sweep.results)
    for row in rows:
        batch, median = int(row["batch"]), float(row["median_ms"])
        assert float(row["min_ms"]) <= float(row["q3_ms"]) and float(row["min_ms"]) <= median
        assert row["p90_ms"] == row["p99_ms"] == ""  # 6 samples per point support neither
        if row["mode"] == "sync":
            assert int(row["n"]) == 6 and row["method"].startswith("blocks: 3 rounds")
        assert float(row["per_item_ms"]) == pytest.approx(1000 / float(row["throughput_per_s"]))
        if row["mode"] == "sync":
            assert float(row["throughput_per_s"]) == pytest.approx(batch * 1000 / median)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DeployLabError, match="is not valid JSON"):
        SweepResults.from_json(tmp_path / "bad.json")
    with pytest.raises(DeployLabError, match="does not exist"):
        SweepResults.from_json(tmp_path / "missing.json")


def test_sweep_table_names_the_machine_and_flags_unequal_threads(lenet_sweep):
    from deploylab.env import machine_line

    table = lenet_sweep.table()
    assert table.splitlines()[0].startswith(machine_line(lenet_sweep.environment))
    assert "VNNI:" in table.splitlines()[0] and "AMX:" in table.splitlines()[0]
    assert "note: thread counts are not explicit and equal" in table  # "ort fixed" runs on ORT's default
    assert all(r.spinning is True for r in lenet_sweep.results if r.backend == "onnxruntime")
    assert all(r.spinning is None for r in lenet_sweep.results if r.backend == "openvino")


def test_machine_line_reads_the_flags():
    from deploylab.env import machine_line

    env = {"cpu_model": "Test CPU", "cpu_count": 4,
           "cpu_flags": {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True}}
    assert machine_line(env) == ("Test CPU, 4 logical CPUs; SIMD: AVX-512, VNNI: AVX-512, AMX: no, "
                                 "BF16: AVX-512")
    env["cpu_flags"] = {"avx2": True, "amx_tile": True, "amx_bf16": True, "amx_int8": True}
    assert machine_line(env).endswith("SIMD: AVX2, VNNI: no, AMX: bf16+int8, BF16: AMX")


def test_plot_sweep_has_three_log2_panels(lenet_sweep, tmp_path):
    from deploylab.plots import plot_sweep

    fig = plot_sweep(lenet_sweep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    latency, throughput, per_item = fig.axes
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "batch size"
    # one line per runner (sync) plus the dashed concurrent lines of the two that ran async
    assert len(throughput.get_lines()) == 3 + 3
    labels = throughput.get_legend_handles_labels()[1]
    assert labels[:2] == ["ort", "ort (2 in flight)"] and "ort fixed" in labels


# ---------------------------------------------------------------- deploylab bench
def test_cli_bench_end_to_end(lenet_ts_dynamic, tmp_path, capsys):
    out, png = tmp_path / "res" / "lenet.json", tmp_path / "lenet.png"
    code = main(["bench", str(lenet_ts_dynamic.path), "--backends", "onnxruntime,openvino", "--batch", "1,4",
                 "--threads", "1", "--repeats", "3", "--out", str(out), "--plot", str(png)])
    printed = capsys.readouterr().out
    assert code == 0
    assert out.is_file() and out.with_suffix(".csv").is_file() and png.stat().st_size > 10_000
    loaded = SweepResults.from_json(out)
    assert {(r.runner, r.batch_size) for r in loaded.results} == {
        ("onnxruntime", 1), ("onnxruntime", 4), ("openvino", 1), ("openvino", 4)}
    assert {r.threads for r in loaded.results} == {1}
    assert "median ms" in printed and "items/s" in printed and str(out) in printed
    assert "onnxruntime: best batch" in printed and "openvino: best batch" in printed
    assert "note: thread counts" not in printed  # --threads 1 for both


def test_cli_bench_defaults_to_equal_explicit_threads(lenet_ts_dynamic, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["bench", str(lenet_ts_dynamic.path), "--backends", "onnxruntime,openvino", "--batch", "1",
                 "--repeats", "2", "--out", str(out)])
    assert code == 0 and "note: thread counts" not in capsys.readouterr().out
    assert {r.threads for r in SweepResults.from_json(out).results} == {os.cpu_count()}


def test_cli_bench_skips_out_of_bounds_batches_when_others_run(lenet_ir, capsys):
    code = main(["bench", str(lenet_ir), "--batch", "2,32", "--repeats", "2"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "skipped openvino batch 32" in printed and "[1, 16]" in printed


@pytest.mark.parametrize("argv, named", [
    (["--backends", "onnxruntime,tflite"], "'tflite'"),
    (["--batch", "1,eight"], "'1,eight'"),
    (["--batch", "0"], "contains 0"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--seconds", "-2"], "--seconds must be a number of seconds from 0 to 3600"),
])
def test_cli_bench_bad_input_exits_2_with_one_line(lenet_ts_dynamic, capsys, argv, named):
    code = main(["bench", str(lenet_ts_dynamic.path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and named in err[0] and err[0].startswith("deploylab bench: error:")


def test_cli_bench_refuses_when_no_backend_accepts_any_batch(lenet_ir, lenet_ts11, tmp_path, capsys):
    code = main(["bench", str(lenet_ir), "--batch", "32,64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no backend accepts batch size(s) 32,64" in err[0] and "[1, 16]" in err[0]
    code = main(["bench", str(lenet_ts11.path), "--backends", "onnxruntime,openvino", "--batch", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fixed batch of 1" in err[0]
    code = main(["bench", str(tmp_path / "missing.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.onnx" in err[0] and "does not exist" in err[0]
