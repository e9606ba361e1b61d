"""The int8 route as steps (pre-process, calibrate -> ranges, write Q/DQ from ranges), the option
object, and the one dispatcher the CLI calls.

The CLI's own messages are checked in test_quantize.py; here the same checks are made through
the Python entry point, before any file is read.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploylab.data.calibration import digits_calibration
from deploylab.errors import DeployLabError
from deploylab.quantize import (
    QdqOptions,
    collect_tensors_data,
    predict,
    quantize_int8_from_ranges,
    quantize_int8_onnxruntime,
    quantize_model,
)
from deploylab.quantize.int8 import split_int8_options


@pytest.fixture(scope="module")
def calibration():
    return digits_calibration(64, seed=0)


def _scales(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if "scale" in t.name}


def test_writing_from_ranges_gives_the_one_call_model(lenet_ts_dynamic, calibration, tmp_path):
    """Calibrating once and writing from the ranges is the one-call route, step by step: same ranges,
    same scales, same outputs (the variant grid and the sensitivity analysis rely on it)."""
    source = lenet_ts_dynamic.path
    one_call = quantize_int8_onnxruntime(source, tmp_path / "one.onnx", calibration, preprocess=False,
                                         reduce_range=False, progress=False)
    tensors = collect_tensors_data(source, calibration, "minmax", progress=False)
    stepwise = quantize_int8_from_ranges(source, tmp_path / "steps.onnx", tensors, QdqOptions(reduce_range=False),
                                         "minmax", len(calibration))
    assert stepwise.ranges == one_call.ranges and stepwise.settings == one_call.settings
    one, steps = _scales(one_call.path), _scales(stepwise.path)
    assert one.keys() == steps.keys() and all(np.array_equal(one[k], steps[k]) for k in one)
    np.testing.assert_array_equal(predict(one_call.path, calibration[:16]), predict(stepwise.path, calibration[:16]))
    assert stepwise.num_samples == 64 and stepwise.op_histogram.get("QuantizeLinear", 0) > 0


@pytest.mark.parametrize("options, named", [
    ({"activation_type": "int4"}, "activation_type='int4'"),
    ({"weight_type": "float8"}, "weight_type='float8'"),
    ({"nodes_to_exclude": "conv1"}, "must be a list of node names"),
])
def test_qdq_options_refuse_bad_values(options, named):
    with pytest.raises(DeployLabError, match=named):
        QdqOptions(**options)


def test_split_options_separates_calibration_and_names_an_unknown_one():
    calibration, options = split_int8_options({"method": "entropy", "per_channel": False, "batch_size": 4})
    assert calibration == {"method": "entropy", "batch_size": 4} and options.per_channel is False
    with pytest.raises(DeployLabError, match="per_chanel: not an option of quantize_int8_onnxruntime"):
        split_int8_options({"per_chanel": False})


@pytest.mark.parametrize("kwargs, named", [
    ({"mode": "fp16", "target": "tensorrt"}, "not --mode fp16: an fp16 ONNX file"),
    ({"mode": "int8", "backend": "openvino", "target": "tensorrt"}, "not --backend openvino"),
    ({"mode": "int4", "calib_method": "entropy"}, "--calib-method only apply to --mode int8"),
    ({"mode": "fp16", "backend": "openvino"}, "drop --backend openvino"),
    ({"mode": "int8", "backend": "openvino", "calib_method": "entropy"}, "NNCF computes its own ranges"),
    ({"mode": "int16"}, "--mode 'int16' is not one of fp16, int8, int4"),
])
def test_quantize_model_refuses_combinations_before_reading_the_model(kwargs, named, tmp_path):
    output = tmp_path / ("out.xml" if kwargs.get("backend") == "openvino" else "out.onnx")
    with pytest.raises(DeployLabError, match=named):
        quantize_model(tmp_path / "missing.onnx", output, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_quantize_model_int8_reports_where_calibration_came_from(lenet_ts_dynamic, tmp_path):
    lines = []
    report = quantize_model(lenet_ts_dynamic.path, tmp_path / "q.onnx", "int8", num_samples=40,
                            on_calibration=lines.append)
    assert lines == ["40 digits from the train split (seed 0)"]
    assert report.mode == "int8" and report.num_samples == 40 and report.path.is_file()
