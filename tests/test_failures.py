"""Failures end as one line (issue 15, first step): engine run-time errors are wrapped where they
happen, an unforeseen error gets one line and exit 3 (a traceback log only with DEPLOYLAB_DEBUG),
sizes and tolerances have stated bounds, and no command replaces a file it reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import one_line_error
from onnx import TensorProto, helper

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import OpenVinoRunner
from deploylab.errors import DeployLabError, EngineError


def _impossible_reshape(path):
    """Loads in every engine (the input's first dim is symbolic), fails at run time: 6 values into 4x4."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [4, 4])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("runner", [OnnxRuntimeRunner, OpenVinoRunner])
def test_a_run_time_engine_failure_is_an_engine_error(runner, tmp_path):
    model = runner(_impossible_reshape(tmp_path / "r.onnx"))
    with pytest.raises(EngineError, match=r"failed running .* x 1x6") as err:
        model.infer({"x": np.zeros((1, 6), np.float32)})
    assert "\n" not in str(err.value) and err.value.engine_text  # one line for people, all of it kept


def test_cli_run_time_failure_is_one_line(cli, tmp_path):
    model = _impossible_reshape(tmp_path / "r.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 6), np.float32))
    r = cli("run", model, "--input", tmp_path / "x.npy")
    assert r.code == 2
    assert "ONNX Runtime failed running" in one_line_error(r, "x 1x6")


def test_an_unforeseen_error_is_one_line_with_exit_3(cli, monkeypatch, tmp_path):
    import deploylab.env

    def broken():
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(deploylab.env, "collect_environment", broken)
    r = cli("env")
    assert r.code == 3 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert "internal error: ZeroDivisionError: a bug" in r.err and "DEPLOYLAB_DEBUG=1" in r.err
    monkeypatch.setenv("DEPLOYLAB_DEBUG", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    r = cli("env")
    assert r.code == 3 and "traceback in " in r.err
    log = r.err.split("traceback in ")[1].split(")")[0]
    assert "ZeroDivisionError: a bug" in open(log, encoding="utf-8").read()


@pytest.mark.parametrize("argv, said", [
    (["run", "m.onnx", "--input", "x.npy", "--topk", "-1"], "--topk: must be an integer from 1 to 1000"),
    (["compare", "m.onnx", "--rtol", "nan"], "--rtol: a tolerance must be a finite number >= 0"),
    (["compare", "m.onnx", "--atol", "-1"], "--atol: a tolerance must be a finite number >= 0"),
    (["export", "lenet", "-o", "l.onnx", "--atol", "-1"], "--atol: a tolerance must be a finite number >= 0"),
    (["train-lenet", "--epochs", "0"], "--epochs: must be an integer from 1 to 10000"),
    (["compare", "m.onnx", "--batch", "0"], "sizes must be at least 1"),
    (["compare", "m.onnx", "--batch", "1000000000000"], "sizes must be at most 4096"),
    (["bench", "m.onnx", "--batch", "1000000000"], "sizes must be at most 4096"),
    (["bench", "m.onnx", "--concurrency", "100000"], "sizes must be at most 64"),
    (["bench", "m.onnx", "--threads", "100000"], "--threads must be at most"),
    (["bench", "m.onnx", "--repeats", "10000000"], "--repeats must be at most 100000"),
    (["profile", "m.onnx", "--threads", "100000"], "--threads must be at most"),
    (["profile", "m.onnx", "--batch", "100000"], "--batch must be at most 4096"),
])
def test_sizes_and_tolerances_have_stated_bounds(cli, lenet_ts_dynamic, tmp_path, argv, said):
    argv = [str(lenet_ts_dynamic.path) if a == "m.onnx" else str(tmp_path / a) if a in ("x.npy", "l.onnx") else a
            for a in argv]
    r = cli(*argv)
    assert r.code == 2 and said in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_no_command_replaces_a_file_it_reads(cli, lenet_ts_dynamic, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(lenet_ts_dynamic.path.read_bytes())
    before = _digest(model)
    for argv in (["quantize", model, "--mode", "fp16", "-o", model],
                 ["quantize", model, "--mode", "int8", "-o", tmp_path / "." / "m.onnx"],
                 ["bench", model, "--out", model],
                 ["build", model, "--backend", "openvino", "-o", model]):
        r = cli(*argv)
        assert r.code == 2 and "does not replace a file it reads" in r.err, (argv, r.err)
    assert _digest(model) == before


def test_export_does_not_replace_its_checkpoint(cli, tmp_path):
    import torch

    from deploylab.models import resolve_model

    checkpoint = tmp_path / "lenet.pt"
    torch.save(resolve_model("lenet").model.state_dict(), checkpoint)
    before = _digest(checkpoint)
    r = cli("export", "lenet", "--checkpoint", checkpoint, "-o", checkpoint)
    assert r.code == 2 and "does not replace a file it reads" in r.err
    assert _digest(checkpoint) == before


# ---------------------------------------------------------------- never trust a changed IR
def test_an_ir_changed_after_its_build_is_rebuilt_not_reused(lenet_ts_dynamic, tmp_path):
    from deploylab.backends.openvino import build_openvino_ir

    xml = tmp_path / "lenet.xml"
    first = build_openvino_ir(lenet_ts_dynamic.path, xml)
    feed = {"input": np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)}
    good = OpenVinoRunner(xml).infer(feed)["output"]
    weights = xml.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # same size, other weights
    weights.write_bytes(bytes(data))
    with pytest.raises(DeployLabError, match="changed since they were built"):  # run refuses it
        OpenVinoRunner(xml).infer(feed)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in (xml, weights):  # the same files without their record run, and show the damage is real
        (copy / path.name).write_bytes(path.read_bytes())
    assert not np.allclose(OpenVinoRunner(copy / xml.name).infer(feed)["output"], good)
    again = build_openvino_ir(lenet_ts_dynamic.path, xml)
    assert not again.reused and again.record["ir_files"]["bin"] == first.record["ir_files"]["bin"]
    np.testing.assert_array_equal(OpenVinoRunner(xml).infer(feed)["output"], good)
    assert build_openvino_ir(lenet_ts_dynamic.path, xml).reused  # unchanged files are reused


def test_a_failed_openvino_build_keeps_the_previous_ir(lenet_ts_dynamic, tmp_path, cli):
    from deploylab.backends.openvino import build_openvino_ir

    xml = tmp_path / "m.xml"
    build_openvino_ir(lenet_ts_dynamic.path, xml)
    before = {p.name: _digest(p) for p in (xml, xml.with_suffix(".bin"), Path(str(xml) + ".deploylab.json"))}
    unknown = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such.domain")], "g",
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(unknown, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("no.such.domain", 1)]), str(bad))
    r = cli("build", bad, "--backend", "openvino", "-o", xml, "--rebuild")
    assert "OpenVINO cannot convert" in one_line_error(r, "bad.onnx")
    assert {p.name: _digest(p) for p in (xml, xml.with_suffix(".bin"), Path(str(xml) + ".deploylab.json"))} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "m.bin", "m.xml", "m.xml.deploylab.json"]


# ---------------------------------------------------------------- found by the failure corpus
@pytest.mark.parametrize("change, said", [
    (lambda m: m.update(backends=5), "'backends' is not a list"),
    (lambda m: m["ops"].update({"ai.onnx::Relu": 7}), "the entry of 'ai.onnx::Relu'"),
    (lambda m: m["ops"].update({"ai.onnx::Relu": {"x": {}}}), "the entry of 'ai.onnx::Relu'"),
    (lambda m: m["ops"].update({"ai.onnx::Relu": {"14": {"onnxruntime": {"pass": "1"}}}}), "the entry of"),
    (lambda m: m.update(failures=[{"op": 1}]), "'failures' is not a list of records"),
])
def test_a_damaged_support_matrix_is_refused(change, said, tmp_path):
    import json

    from deploylab.paths import DATA_DIR
    from deploylab.support import load_support_matrix

    matrix = json.loads((DATA_DIR / "support_matrix.json").read_text())
    change(matrix)
    path = tmp_path / "mx.json"
    path.write_text(json.dumps(matrix))
    with pytest.raises(DeployLabError, match="is damaged") as err:
        load_support_matrix(path)
    assert said in str(err.value)
    path.write_text("[" * 100_000)
    with pytest.raises(DeployLabError, match="nests deeper"):
        load_support_matrix(path)


def test_a_model_declaring_a_huge_dim_is_not_allocated(cli, tmp_path):
    model = tmp_path / "huge.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**40, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**40, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    one_line_error(cli("compare", model), "1099511627776x4", "more than the 268,435,456")


@pytest.mark.parametrize("argv, said", [
    (["train-lenet", "--seed", str(2**70)], "--seed: must be an integer from 0 to 4294967295"),
    (["bench", "m.onnx", "--seconds", "1e308"], "--seconds must be a number of seconds from 0 to 3600"),
    (["build", "m.onnx", "--backend", "openvino", "--min", "", "--opt", "1x1x32x32", "-o", "m.xml"], "--min is empty"),
])
def test_more_stated_bounds(cli, argv, said, lenet_ts_dynamic):
    r = cli(*[str(lenet_ts_dynamic.path) if a == "m.onnx" else a for a in argv])
    assert r.code == 2 and said in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_engine_and_decoder_messages_do_not_add_lines(tmp_path):
    """ORT logs a failing kernel and libpng/libjpeg print warnings straight to descriptor 2, where an
    in-process test cannot see them: run the real CLI and count stderr's lines."""
    import subprocess
    import sys

    model = _impossible_reshape(tmp_path / "r.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 6), np.float32))
    png = tmp_path / "zero.png"  # a PNG signature and an IHDR claiming width 0
    png.write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d49484452000000000000000108020000009077"))
    np.save(tmp_path / "calib.npy", np.zeros((4, 6), np.float32))
    np.save(tmp_path / "calib4.npy", np.zeros((4, 4), np.float32))
    unknown = dict(_broken_models(tmp_path))["unknown_op"]
    work = tmp_path / "cwd"
    work.mkdir()
    for argv in (["run", model, "--input", tmp_path / "x.npy"], ["profile", model, "--runs", "1"],
                 ["run", model, "--input", png],
                 ["quantize", model, "--mode", "int8", "--calib-data", tmp_path / "calib.npy", "-o", tmp_path / "q.onnx"],
                 ["quantize", unknown, "--mode", "int8", "--calib-data", tmp_path / "calib4.npy", "-o", tmp_path / "q.onnx"]):
        r = subprocess.run([sys.executable, "-m", "deploylab.cli", *map(str, argv)], capture_output=True, text=True,
                           timeout=300, cwd=work)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)
        assert "calibration data" not in r.stderr  # each reaches the engine, not a shape check
    # ORT's symbolic shape inference writes sym_shape_infer_temp.onnx into the working directory when
    # it gives up: deploylab runs it in a folder of its own
    assert list(work.iterdir()) == []


def test_an_interrupt_inside_an_exporter_is_an_interrupt(tmp_path):
    import torch

    from deploylab.export import run_exporter

    class Stops(torch.nn.Module):
        def forward(self, x):
            raise KeyboardInterrupt

    for exporter in ("dynamo", "torchscript"):
        with pytest.raises(KeyboardInterrupt):
            run_exporter(Stops(), (torch.zeros(1, 2),), tmp_path / "s.onnx", exporter=exporter)


def test_inspect_says_a_graph_without_outputs_is_not_runnable(cli, tmp_path):
    model = tmp_path / "none.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    r = cli("inspect", model)
    assert r.code == 1 and "INVALID: the graph has no outputs" in r.out


def _broken_models(folder):
    """ONNX files each engine must refuse in one line: (name, path)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])

    def save(name, nodes, inputs=(x,), initializers=(), check=False):
        model = helper.make_model(helper.make_graph(nodes, "g", list(inputs), [y], list(initializers)),
                                  opset_imports=[helper.make_opsetid("", 17)])
        path = folder / f"{name}.onnx"
        onnx.save(model, str(path))
        return name, path

    outside = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [1.0] * 4)
    outside.data_location = TensorProto.EXTERNAL
    outside.ClearField("float_data")
    outside.external_data.add(key="location", value="../../../etc/passwd")
    missing = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [1.0] * 4)
    missing.data_location = TensorProto.EXTERNAL
    missing.ClearField("float_data")
    missing.external_data.add(key="location", value="absent.bin")
    return [
        save("missing_initializer", [helper.make_node("Add", ["x", "w"], ["y"])]),
        save("cycle", [helper.make_node("Add", ["x", "z"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]),
        save("duplicate_inputs", [helper.make_node("Relu", ["x"], ["y"])], inputs=(x, x)),
        save("external_outside", [helper.make_node("Add", ["x", "w"], ["y"])], initializers=(outside,)),
        save("external_missing", [helper.make_node("Add", ["x", "w"], ["y"])], initializers=(missing,)),
        save("unknown_op", [helper.make_node("NoSuchOp", ["x"], ["y"])]),
    ]


def test_broken_models_are_one_line_in_every_command(cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    np.save(tmp_path / "calib.npy", np.zeros((4, 4), np.float32))
    for name, model in _broken_models(tmp_path):
        for argv in (["build", model, "--backend", "openvino", "-o", tmp_path / f"{name}.xml"],
                     ["run", model, "--input", tmp_path / "x.npy"],
                     ["compare", model, "--backends", "onnxruntime,openvino"],
                     ["quantize", model, "--mode", "int8", "--calib-data", tmp_path / "calib.npy",
                      "-o", tmp_path / f"{name}_int8.onnx"],
                     ["quantize", model, "--mode", "int8", "--backend", "openvino", "--calib-data",
                      tmp_path / "calib.npy", "-o", tmp_path / f"{name}_int8.xml"]):
            r = cli(*argv)
            assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, (name, argv, r)
            assert "internal error" not in r.err, (name, argv[0], r.err)
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*_int8.onnx"))
