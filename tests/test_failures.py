"""Failures end as one line (issue 15, first step): engine run-time errors are wrapped where they
happen, an unforeseen error gets one line and exit 3 (a traceback log only with DEPLOYLAB_DEBUG),
sizes and tolerances have stated bounds, and no command replaces a file it reads."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from conftest import one_line_error
from onnx import TensorProto, helper

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import OpenVinoRunner
from deploylab.errors import EngineError


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
    assert not np.allclose(OpenVinoRunner(xml).infer(feed)["output"], good)  # the damage is real
    again = build_openvino_ir(lenet_ts_dynamic.path, xml)
    assert not again.reused and again.record["ir_files"]["bin"] == first.record["ir_files"]["bin"]
    np.testing.assert_array_equal(OpenVinoRunner(xml).infer(feed)["output"], good)
    assert build_openvino_ir(lenet_ts_dynamic.path, xml).reused  # unchanged files are reused


def test_a_failed_openvino_build_keeps_the_previous_ir(lenet_ts_dynamic, tmp_path, cli):
    from deploylab.backends.openvino import build_openvino_ir

    xml = tmp_path / "m.xml"
    build_openvino_ir(lenet_ts_dynamic.path, xml)
    before = {p.name: _digest(p) for p in (xml, xml.with_suffix(".bin"), xml.with_suffix(".json"))}
    unknown = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such.domain")], "g",
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(unknown, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("no.such.domain", 1)]), str(bad))
    r = cli("build", bad, "--backend", "openvino", "-o", xml, "--rebuild")
    assert "OpenVINO cannot convert" in one_line_error(r, "bad.onnx")
    assert {p.name: _digest(p) for p in (xml, xml.with_suffix(".bin"), xml.with_suffix(".json"))} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "m.bin", "m.json", "m.xml"]
