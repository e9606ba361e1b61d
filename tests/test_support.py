"""The measured support matrix, check_support on a file with a known-unsupported op and on Q/DQ models
(TensorRT's zero-point rules), the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploylab.cli import main
from deploylab.errors import DeployLabError
from deploylab.support import (
    MATRIX_PATH,
    build_support_matrix,
    check_support,
    engine_error_summary,
    iter_conformance_cases,
    conformance_case,
    load_support_matrix,
    rerun_case,
    run_case,
    tensorrt_documented,
)


def _save_model(path, op_type, opset=17, out_shape=("n", 3, 3)):
    nodes = [helper.make_node(op_type, ["x"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def matrix():
    return load_support_matrix()


@pytest.fixture
def det_model(tmp_path):
    """Det: measured to run in ONNX Runtime and to be refused by OpenVINO (no conversion rule)."""
    return _save_model(tmp_path / "det.onnx", "Det", out_shape=("n",))


@pytest.fixture
def abs_model(tmp_path):
    return _save_model(tmp_path / "abs.onnx", "Abs")


@pytest.fixture(scope="module")
def lenet_qdq(lenet_ts_dynamic, tmp_path_factory):
    """LeNet int8 twice: ONNX Runtime's default (uint8, asymmetric) and the TensorRT recipe."""
    from deploylab.data.calibration import digits_calibration
    from deploylab.quantize import quantize_int8_for_tensorrt, quantize_int8_onnxruntime

    out, calibration = tmp_path_factory.mktemp("lenet_qdq"), digits_calibration(100, seed=0)
    default = quantize_int8_onnxruntime(lenet_ts_dynamic.path, out / "default.onnx", calibration).path
    return default, quantize_int8_for_tensorrt(lenet_ts_dynamic.path, out / "trt.onnx", calibration).path


# ---------------------------------------------------------------- the shipped matrix
def test_shipped_matrix_is_complete_and_records_the_installed_versions(matrix):
    import onnxruntime
    import openvino

    data = matrix.data
    assert data["limit"] is None and data["cases"] > 1300
    assert data["backends"] == ["onnxruntime", "openvino"]
    versions = data["versions"]
    # A mismatch means the engines were upgraded: rebuild with build_support_matrix(rebuild=True).
    assert versions["onnx"] == onnx.__version__
    assert versions["onnxruntime"] == onnxruntime.__version__
    assert versions["openvino"] == openvino.__version__
    for backend in data["backends"]:
        totals = data["totals"][backend]
        assert sum(totals.values()) == data["cases"]
        assert totals["pass"] > 0.7 * data["cases"]
    assert data["seconds"]["total"] > 0
    assert len(MATRIX_PATH.read_bytes()) < 300_000  # compact enough to commit


def test_matrix_lookup_distinguishes_the_engines(matrix):
    assert matrix.status("", "Det", 22, "onnxruntime").status == "pass"
    assert matrix.status("", "Det", 22, "openvino").status == "fail"
    assert matrix.status("", "Relu", 17, "openvino").status == "pass"
    older = matrix.status("", "Det", 17, "openvino")  # Det v11: only v22 is in the conformance tests
    assert older.status == "fail" and "v22 tested" in older.note
    assert matrix.status("ai.deploylab", "SoftClip", 1, "onnxruntime").status == "unknown"
    det_failures = matrix.failures(op="ai.onnx::Det", backend="openvino")
    assert det_failures and all("Det" in f["detail"] for f in det_failures)


def test_failures_leave_out_skipped_cases_unless_asked(matrix):
    """Cast's cases that ONNX Runtime did not pass were all skipped (dtypes the harness cannot feed)."""
    assert matrix.failures(op="ai.onnx::Cast", backend="onnxruntime") == []
    skipped = matrix.failures(op="ai.onnx::Cast", backend="onnxruntime", statuses=("skipped",))
    assert skipped and all(f["status"] == "skipped" for f in skipped)
    everything = matrix.failures(backend="openvino", statuses=None)
    assert {f["status"] for f in everything} >= {"skipped", "load_error"}
    assert all(f["status"] != "skipped" for f in matrix.failures(backend="openvino"))


def test_breakdown_counts_every_case_and_groups_the_reasons(matrix):
    cast = matrix.breakdown("Cast", "openvino")
    assert sum(cast.counts.values()) == sum(e["cases"] for e in matrix.ops["ai.onnx::Cast"].values())
    assert cast.failing == len(cast.cases("wrong")) + len(cast.cases("load_error")) + len(cast.cases("run_error"))
    assert cast.tested == sum(cast.counts.values()) - cast.counts.get("skipped", 0)
    assert matrix.breakdown("Cast", "onnxruntime").failing == 0
    pow_ort = matrix.breakdown("ai.onnx::Pow", "onnxruntime")
    assert pow_ort.cases("load_error") == ["test_pow_types_float32_uint32", "test_pow_types_float32_uint64"]
    text = pow_ort.format()
    assert text.startswith("ai.onnx::Pow in onnxruntime") and "load_error x2" in text
    with pytest.raises(DeployLabError, match="not in the support matrix"):
        matrix.breakdown("NoSuchOp", "onnxruntime")
    with pytest.raises(DeployLabError, match="no 'tensorrt' column"):
        matrix.breakdown("Cast", "tensorrt")


def test_rerun_case_reproduces_the_recorded_verdict_with_its_values(matrix):
    pytest.importorskip("openvino")
    for record in matrix.failures(op="ai.onnx::Cast", backend="openvino"):
        run = rerun_case(record["case"], "openvino")
        assert (run.status, run.detail) == (record["status"], record["detail"])
        # where OpenVINO is off, the reference is an infinity and OpenVINO's value is finite
        rows = run.mismatches()
        assert rows and all(np.isinf(expected) and np.isfinite(got) for _, _, expected, got in rows)
    passed = rerun_case("test_abs", "onnxruntime")
    assert passed.status == "pass" and passed.mismatches() == []
    refused = rerun_case("test_pow_types_float32_uint32", "onnxruntime")
    assert refused.status == "load_error" and refused.got is None and refused.mismatches() == []
    with pytest.raises(DeployLabError, match="cannot run conformance cases"):
        rerun_case("test_abs", "tensorrt")


def test_conformance_case_by_name_and_unknown_names():
    case = conformance_case("test_unsqueeze_axis_0")
    assert case.op_type == "Unsqueeze" and [i.name for i in case.model.graph.input] == ["x", "axes"]
    with pytest.raises(DeployLabError, match="no ONNX node test named 'test_not_an_op'"):
        conformance_case("test_not_an_op")


# ---------------------------------------------------------------- one file
def test_check_support_flags_det_for_openvino_and_tensorrt(det_model, matrix):
    report = check_support(det_model, ["onnxruntime", "openvino", "tensorrt"], matrix=matrix)
    assert report.unsupported("openvino") == ["ai.onnx::Det"]
    assert report.unsupported("tensorrt") == ["ai.onnx::Det"]  # documented: N
    assert report.unsupported("onnxruntime") == []
    assert report.supported("onnxruntime") and not report.supported("openvino")
    assert report.loads["onnxruntime"].loaded is True
    assert report.loads["openvino"].loaded is False and "Det" in report.loads["openvino"].error
    assert report.loads["tensorrt"].loaded is None
    text = report.format()
    assert "Det" in text and "openvino: UNSUPPORTED" in text and "onnxruntime: SUPPORTED" in text


def test_check_support_passes_a_plain_model(abs_model, matrix):
    report = check_support(abs_model, ["onnxruntime", "openvino"], matrix=matrix)
    assert report.all_supported
    assert {op.op_type for op in report.ops} == {"Abs", "Relu"}
    assert all(op.verdict(b) == "pass" for op in report.ops for b in ("onnxruntime", "openvino"))


def test_tensorrt_column_fails_asymmetric_qdq_and_passes_the_recipe(lenet_qdq, matrix):
    """NVIDIA's table says Q/DQ are supported with zero points of 0; the file decides whether it keeps that."""
    from deploylab.quantize import tensorrt_qdq_problems

    default, recipe = lenet_qdq
    report = check_support(default, ["onnxruntime", "tensorrt"], matrix=matrix)
    assert report.unsupported("tensorrt") == ["ai.onnx::DequantizeLinear", "ai.onnx::QuantizeLinear"]
    assert not report.supported("tensorrt") and report.supported("onnxruntime")
    rows = {op.op_type: op for op in report.ops}
    q = rows["QuantizeLinear"]
    flagged = {p.node for p in tensorrt_qdq_problems(default) if p.op_type == "QuantizeLinear"}
    assert q.verdict("tensorrt") == "fail" and q.tensorrt_model_problem.startswith(f"{len(flagged)} of {q.nodes} nodes")
    assert "non-zero zero points" in q.tensorrt_model_problem and "TensorRT recipe" in q.tensorrt_model_problem
    assert rows["Conv"].verdict("tensorrt") == "pass"
    text = report.format()
    assert f"  QuantizeLinear: {q.tensorrt_model_problem}" in text  # in full, not cut to the table's width
    assert "tensorrt: UNSUPPORTED (unsupported: ai.onnx::DequantizeLinear, ai.onnx::QuantizeLinear)" in text

    passed = check_support(recipe, ["onnxruntime", "tensorrt"], matrix=matrix)
    assert passed.supported("tensorrt") and passed.unsupported("tensorrt") == []
    for op in passed.ops:
        if op.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert op.verdict("tensorrt") == "pass" and op.cell("tensorrt").startswith("doc: Y"), op


def test_cli_check_support_prints_why_tensorrt_fails_a_qdq_model(lenet_qdq, capsys):
    default, recipe = lenet_qdq
    assert main(["check-support", str(default), "--backends", "onnxruntime,tensorrt"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("QuantizeLinear:"))
    assert "non-zero zero points" in line and "--for tensorrt" in line
    assert main(["check-support", str(recipe), "--backends", "onnxruntime,tensorrt"]) == 0
    assert "tensorrt: SUPPORTED" in capsys.readouterr().out


def test_tensorrt_documented_table():
    assert tensorrt_documented("", "Det") == "N"
    assert tensorrt_documented("", "Relu") == "Y"
    assert tensorrt_documented("", "Loop").startswith("Y (")
    assert tensorrt_documented("ai.deploylab", "SoftClip") == "plugin"
    assert tensorrt_documented("", "NotAnOp") == "unknown"


def test_tensorrt_table_is_read_from_its_data_file_with_its_provenance(tmp_path, det_model, matrix):
    from deploylab.support import TENSORRT_OPS_PATH, read_tensorrt_op_table, tensorrt_op_table

    table = tensorrt_op_table()
    assert TENSORRT_OPS_PATH.name == "tensorrt_onnx_ops.json"
    assert TENSORRT_OPS_PATH.parent == MATRIX_PATH.parent
    assert table.source.startswith("https://github.com/onnx/onnx-tensorrt/") and table.tensorrt.startswith("TensorRT 10")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.read)
    assert table.ops["Det"] == (False, "") and table.ops["Relu"] == (True, "")
    report = check_support(det_model, ["onnxruntime"], matrix=matrix)
    assert report.tensorrt_source == table.provenance and table.source in report.format()
    with pytest.raises(DeployLabError, match="does not exist"):
        read_tensorrt_op_table(tmp_path / "missing.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(DeployLabError, match="is not valid JSON"):
        read_tensorrt_op_table(tmp_path / "garbage.json")
    (tmp_path / "old.json").write_text(json.dumps({"format": 0, "ops": {}}))
    with pytest.raises(DeployLabError, match="missing source, tensorrt, read"):
        read_tensorrt_op_table(tmp_path / "old.json")


def test_cli_check_support_exit_codes(det_model, abs_model, tmp_path, capsys):
    assert main(["check-support", str(det_model)]) == 1
    out = capsys.readouterr().out
    assert "openvino: UNSUPPORTED (unsupported: ai.onnx::Det)" in out
    assert main(["check-support", str(det_model), "--backends", "onnxruntime"]) == 0
    assert main(["check-support", str(abs_model), "--backends", "onnxruntime,openvino"]) == 0
    capsys.readouterr()
    assert main(["check-support", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["check-support", str(abs_model), "--backends", "onnxruntime,cuda"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 50)
    assert main(["check-support", str(garbage)]) == 2


# ---------------------------------------------------------------- building a matrix
def test_build_support_matrix_small_limit_writes_and_caches(tmp_path):
    out = tmp_path / "matrix.json"
    built = build_support_matrix(out, progress=False, limit=12)
    data = json.loads(out.read_text())
    assert data["cases"] == 12 and data["limit"] == 12
    assert set(data["versions"]) >= {"onnx", "onnxruntime", "openvino"}
    assert sum(data["totals"]["onnxruntime"].values()) == 12
    assert sum(entry["cases"] for op in data["ops"].values() for entry in op.values()) == 12
    cached = build_support_matrix(out, progress=False, limit=12)
    assert cached["created"] == built["created"]  # same versions and limit: not rebuilt
    assert load_support_matrix(out).status("", "Abs", 13, "onnxruntime").status == "pass"
    with pytest.raises(DeployLabError, match="cannot measure"):
        build_support_matrix(out, backends=("tensorrt",), progress=False, limit=1)


def test_cases_read_from_files_like_the_wheel_layout(tmp_path):
    """The on-disk node-test layout (model.onnx + test_data_set_0/*.pb) reads back and runs."""
    from deploylab.support import CaseRunner

    generated = list(iter_conformance_cases(limit=3))
    for case in generated:
        folder = tmp_path / case.name / "test_data_set_0"
        folder.mkdir(parents=True)
        onnx.save(case.model, str(tmp_path / case.name / "model.onnx"))
        for kind, values, infos in (("input", case.inputs, case.model.graph.input),
                                    ("output", case.outputs, case.model.graph.output)):
            for i, (value, info) in enumerate(zip(values, infos)):
                tensor = value if isinstance(value, TensorProto) else numpy_helper.from_array(np.asarray(value), info.name)
                (folder / f"{kind}_{i}.pb").write_bytes(tensor.SerializeToString())
    read = list(iter_conformance_cases(directory=tmp_path))
    assert [c.name for c in read] == [c.name for c in generated]
    runner = CaseRunner("onnxruntime")
    assert [run_case(c, runner)[0] for c in read] == [run_case(c, runner)[0] for c in generated]


def test_engine_error_summary_keeps_the_reason():
    openvino_text = (
        "Exception from src/inference/src/cpp/core.cpp:105:\n"
        "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
        "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed log:\n"
        "-- GridSample-22 with a message:\n"
        "Check '(data_rank.get_length() == 4)' failed at src/frontends/onnx/frontend/src/op/grid_sample.cpp:23:\n"
        "While validating ONNX node '<Node(GridSample): Y>':\n"
        "GridSample is only supported for 4D input tensors. Got rank: 5\n"
        "Summary:\n-- Conversion is failed for: GridSample-22\n")
    assert engine_error_summary(openvino_text) == "GridSample-22: GridSample is only supported for 4D input tensors. Got rank: 5"
    ort_text = "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Max(13) node"
    assert engine_error_summary(ort_text) == "Could not find an implementation for Max(13) node"


def test_matrix_fail_for_an_op_the_engine_accepts_here_is_only_partial(tmp_path, matrix):
    """Unsqueeze's conformance cases (v25, axes as a graph input) fail in OpenVINO; with constant
    axes in an opset-17 model OpenVINO loads it, so the op is reported partial, not unsupported."""
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 3])], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "unsqueeze.onnx"
    onnx.save(model, str(path))
    assert matrix.status("", "Unsqueeze", 17, "openvino").status == "fail"
    report = check_support(path, ["openvino"], matrix=matrix)
    (op,) = report.ops
    assert op.verdict("openvino") == "partial" and "accepted here" in op.cell("openvino")
    assert report.supported("openvino")


def test_custom_domain_op_is_unsupported_everywhere_without_its_kernel(tmp_path, matrix):
    graph = helper.make_graph(
        [helper.make_node("SoftClip", ["x"], ["y"], domain="ai.deploylab", bound=3.0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.deploylab", 1)])
    model.ir_version = 8
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    report = check_support(path, ["onnxruntime", "openvino", "tensorrt"], matrix=matrix)
    for backend in ("onnxruntime", "openvino", "tensorrt"):
        assert report.unsupported(backend) == ["ai.deploylab::SoftClip"], backend
    assert report.ops[0].tensorrt_doc == "plugin"
    assert "SoftClip" in report.loads["onnxruntime"].error
