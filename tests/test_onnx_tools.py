"""summarize_onnx / check_onnx / load_onnx on real exports and hand-made graphs; compare_arrays."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploylab.compare import compare_arrays
from deploylab.errors import DeployLabError
from deploylab.onnx_tools import check_onnx, load_onnx, summarize_onnx

from conftest import LENET_PARAMETERS


# ---------------------------------------------------------------- summarize / check
def test_summary_of_dynamic_lenet(lenet_ts_dynamic):
    path = lenet_ts_dynamic.path
    s = summarize_onnx(path)
    assert s.opset == 17 and s.opsets["ai.onnx"] == 17
    assert s.ir_version > 0 and s.ir_version == onnx.load(path).ir_version
    assert [(t.name, t.dtype, t.shape) for t in s.inputs] == [("input", "float32", ("batch", 1, 32, 32))]
    assert [(t.name, t.dtype, t.shape) for t in s.outputs] == [("output", "float32", ("batch", 10))]
    assert s.symbolic_dims == ["batch"]
    assert s.file_size_bytes == path.stat().st_size > 4 * LENET_PARAMETERS  # float32 weights inside
    assert s.external_data_bytes == 0
    assert s.node_count == sum(s.op_histogram.values()) == len(onnx.load(path).graph.node)
    assert s.parameter_count >= LENET_PARAMETERS
    assert s.producer.startswith("pytorch")
    text = s.format()
    assert "input: float32[batchx1x32x32]" in text and "symbolic dims: batch" in text


def test_check_valid_model_infers_every_shape(lenet_ts11):
    result = check_onnx(lenet_ts11.path)
    assert result.valid and result.error is None
    assert result.fully_inferred
    assert result.shapes["input"] == (1, 1, 32, 32) and result.shapes["output"] == (1, 10)
    # LeNet's feature maps: 6x28x28 after the first conv, 400 features into the first Gemm
    assert (1, 6, 28, 28) in result.shapes.values() and (1, 400) in result.shapes.values()


def _dangling_input_model() -> onnx.ModelProto:
    """A Relu that reads 'ghost', a tensor nothing produces."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ghost"], ["y"])], "dangling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_check_invalid_model_reports_instead_of_raising(tmp_path):
    path = tmp_path / "dangling.onnx"
    onnx.save(_dangling_input_model(), path)
    result = check_onnx(path)
    assert result.valid is False
    assert result.error and "ghost" in result.error
    assert summarize_onnx(path).inputs[0].shape == ("n", 4)  # still readable


# ---------------------------------------------------------------- load errors
def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(DeployLabError, match="absent.onnx.*does not exist"):
        load_onnx(path)


def test_load_garbage_file(garbage_file):
    path = garbage_file("garbage.onnx")
    with pytest.raises(DeployLabError, match="garbage.onnx"):
        load_onnx(path)


def test_load_text_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello, this is not a protobuf\n")
    with pytest.raises(DeployLabError, match="notes.onnx.*not a readable ONNX model"):
        load_onnx(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(DeployLabError, match="empty.onnx.*empty ONNX model"):
        load_onnx(path)
    with pytest.raises(DeployLabError, match="empty.onnx"):
        summarize_onnx(path)
    with pytest.raises(DeployLabError, match="empty.onnx"):
        check_onnx(path)


def test_load_missing_external_data(lenet_ts11, tmp_path):
    model = onnx.load(lenet_ts11.path)
    path = tmp_path / "external.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.onnx.data", size_threshold=0)
    assert summarize_onnx(path).external_data_bytes == (tmp_path / "external.onnx.data").stat().st_size
    (tmp_path / "external.onnx.data").unlink()
    with pytest.raises(DeployLabError, match="external.onnx.*onnx.data"):
        load_onnx(path)


# ---------------------------------------------------------------- compare_arrays
@pytest.fixture
def logits():
    return np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)


def test_compare_identical(logits):
    c = compare_arrays(logits, logits.copy())
    assert c.passed and c.max_abs_error == 0.0 and c.mean_abs_error == 0.0
    assert c.cosine_similarity == pytest.approx(1.0, abs=1e-12)
    assert c.top1_agreement == 1.0 and c.shape == (4, 10)
    assert c.format().startswith("PASS output 4x10")


def test_compare_perturbed_fails(logits):
    cand = logits.copy()
    cand[2, 3] += 0.01
    c = compare_arrays(logits, cand)
    assert not c.passed
    assert c.max_abs_error == pytest.approx(0.01, rel=1e-3)
    assert c.cosine_similarity < 1.0
    assert c.format().startswith("FAIL")


def test_compare_tolerance_rule_is_allclose():
    ref = np.array([1.0, -2.0, 100.0])
    atol, rtol = 1e-4, 1e-3
    inside = ref + 0.99 * (atol + rtol * np.abs(ref))
    outside = ref + 1.01 * (atol + rtol * np.abs(ref))
    assert compare_arrays(ref, inside, atol=atol, rtol=rtol).passed
    assert not compare_arrays(ref, outside, atol=atol, rtol=rtol).passed
    assert compare_arrays(ref, inside).top1_agreement is None  # 1-D: no classes


def test_compare_shape_mismatch(logits):
    with pytest.raises(DeployLabError, match=r"\(3, 10\).*\(4, 10\)"):
        compare_arrays(logits, logits[:3])


def test_compare_nan_fails(logits):
    cand = logits.copy()
    cand[0, 0] = np.nan
    assert not compare_arrays(logits, cand, atol=1e9, rtol=1e9).passed


def test_compare_top1_agreement(logits):
    cand = logits.copy()
    row = 1
    top, second = np.argsort(logits[row])[-1], np.argsort(logits[row])[-2]
    cand[row, top], cand[row, second] = logits[row, second], logits[row, top]  # swap the top two
    c = compare_arrays(logits, cand)
    assert c.top1_agreement == 0.75 and not c.passed
