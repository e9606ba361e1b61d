"""Per-layer profiles: ONNX Runtime's profiler and OpenVINO's runtime model, on CPU, and `deploylab profile`."""

from __future__ import annotations

import json

import onnx
import pytest

from deploylab.errors import DeployLabError
from deploylab.profiling import (
    optimized_graph_changes,
    profile_model,
    profile_onnxruntime,
    profile_openvino,
)
from tests.conftest import one_line_error


@pytest.fixture(scope="module")
def lenet_int8(lenet_ts_dynamic, tmp_path_factory):
    from deploylab.data.calibration import digits_calibration
    from deploylab.quantize import quantize_int8_onnxruntime

    out = tmp_path_factory.mktemp("int8") / "lenet_int8.onnx"
    return quantize_int8_onnxruntime(lenet_ts_dynamic.path, out, digits_calibration(64), progress=False).path


def _optimized_node_count(path) -> int:
    import onnxruntime as ort

    from deploylab.backends.onnxruntime import session_options

    out = path.with_name(path.stem + "_optimized_for_count.onnx")
    options = session_options(optimized_model_path=out)
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    try:
        return len(onnx.load(str(out)).graph.node)
    finally:
        out.unlink()


def test_onnxruntime_profile_times_every_executed_node_once_per_run(lenet_ts_dynamic):
    report = profile_onnxruntime(lenet_ts_dynamic.path, runs=4, warmup=1, threads=1)
    assert report.backend == "onnxruntime" and report.runs == 4 and report.batch_size == 1
    # one entry per node of the graph ORT really runs (after its fusions), each with a positive time
    assert len(report.layers) == _optimized_node_count(lenet_ts_dynamic.path)
    assert all(layer.time_us > 0 for layer in report.layers)
    ops = {op for op, *_ in report.by_op_type()}
    assert "Conv" in ops or "FusedConv" in ops
    assert sum(share for *_, share in report.by_op_type()) == pytest.approx(1.0)
    assert report.precisions() == {}  # ORT does not report a precision per node
    text = report.format(top=3)
    assert "VNNI:" in text.splitlines()[0] and "mean of 4 timed runs" in text
    assert json.loads(json.dumps(report.to_dict()))["runs"] == 4


def test_onnxruntime_profile_drops_the_warmup_runs(lenet_ts_dynamic):
    """The first run allocates and is slow: with it kept, the mean per run is inflated."""
    kept = profile_onnxruntime(lenet_ts_dynamic.path, runs=1, warmup=0, threads=1)
    dropped = profile_onnxruntime(lenet_ts_dynamic.path, runs=1, warmup=3, threads=1)
    assert len(kept.layers) == len(dropped.layers)
    assert kept.total_us > dropped.total_us


def test_openvino_profile_reports_the_precision_each_layer_runs(lenet_ts_dynamic, lenet_int8):
    fp32 = profile_openvino(lenet_ts_dynamic.path, runs=3, threads=1, precision="fp32")
    assert fp32.settings["inference_precision"] == "f32"
    assert set(fp32.precisions()) <= {"f32", "FP32"} and fp32.precisions()
    int8 = profile_openvino(lenet_int8, runs=3, threads=1, precision="fp32")
    int8_layers = [layer for layer in int8.layers if layer.precision in ("i8", "u8", "I8", "U8")]
    assert int8_layers, int8.format()
    assert {layer.op_type for layer in int8_layers} & {"Convolution", "FullyConnected", "MatMul"}
    assert all(layer.time_us >= 0 for layer in int8.layers) and int8.total_us > 0


def test_fp16_model_gets_casts_inserted_on_the_cpu(lenet_ts_dynamic, tmp_path):
    """On ORT's CPU provider an fp16 model runs in fp32 between inserted casts."""
    from deploylab.quantize import convert_to_fp16

    fp16 = convert_to_fp16(lenet_ts_dynamic.path, tmp_path / "fp16.onnx").path
    basic = optimized_graph_changes(fp16, "basic")
    assert basic["added"].get("Cast", 0) > 0 and basic["inserted_casts"] > 0, basic
    assert set(basic["initializers_before"]) == {"FLOAT16"}
    full = optimized_graph_changes(fp16, "all")  # the casts of constants are folded: fp32 weights
    assert full["initializers_after"].get("FLOAT", 0) > 0, full
    fp32 = optimized_graph_changes(lenet_ts_dynamic.path, "basic")
    assert fp32["inserted_casts"] == 0 and fp32["added"].get("Cast", 0) == 0


def test_profile_model_refuses_bad_requests(lenet_ir, tmp_path, garbage_file):
    with pytest.raises(DeployLabError, match="cannot profile with backend 'tensorrt'"):
        profile_model(lenet_ir, "tensorrt")
    with pytest.raises(DeployLabError, match="does not exist"):
        profile_model(tmp_path / "missing.onnx", "onnxruntime")
    with pytest.raises(DeployLabError, match="ONNX Runtime profiles .onnx files"):
        profile_model(lenet_ir, "onnxruntime")
    with pytest.raises(DeployLabError, match="runs must be a positive integer"):
        profile_model(lenet_ir, "openvino", runs=0)
    with pytest.raises(DeployLabError, match="is not a readable ONNX model"):
        profile_model(garbage_file("bad.onnx"), "onnxruntime")
    with pytest.raises(DeployLabError, match="batch sizes 1 to 16"):
        profile_model(lenet_ir, "openvino", batch_size=32)


def test_cli_profile_both_engines(cli, lenet_ts_dynamic, lenet_ir):
    ort = cli("profile", lenet_ts_dynamic.path, "--runs", "2", "--threads", "1")
    assert ort.code == 0 and "onnxruntime profile of" in ort.out and "op type" in ort.out
    ov = cli("profile", lenet_ir, "--backend", "openvino", "--runs", "2", "--json")
    assert ov.code == 0
    data = json.loads(ov.out)
    assert data["backend"] == "openvino" and data["precisions"] and data["layers"]


@pytest.mark.parametrize("argv, named", [
    (["--runs", "0"], "--runs must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--precision", "bf16"], "--precision bf16 is an OpenVINO setting"),
    (["--batch", "40", "--backend", "openvino"], "not 40"),
])
def test_cli_profile_bad_input_is_one_line(cli, lenet_ir, lenet_ts_dynamic, argv, named):
    model = lenet_ir if "openvino" in argv else lenet_ts_dynamic.path
    one_line_error(cli("profile", model, *argv), named)


def test_cli_profile_missing_and_corrupt_files(cli, tmp_path, garbage_file):
    one_line_error(cli("profile", tmp_path / "none.onnx"), "none.onnx", "does not exist")
    one_line_error(cli("profile", garbage_file("junk.onnx")), "junk.onnx")
    one_line_error(cli("profile", garbage_file("junk.xml"), "--backend", "openvino"), "junk.xml")
