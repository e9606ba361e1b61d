"""draw_onnx_graph / draw_pipeline_figure: files written, one label per op, clear errors."""

from collections import Counter

import matplotlib

matplotlib.use("Agg")

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploylab.errors import DeployLabError
from deploylab.graph_plot import draw_onnx_graph, draw_pipeline_figure


def _weight(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _residual_model() -> onnx.ModelProto:
    """Conv-Relu-Conv with a skip Add, pooling and a Gemm head; batch is symbolic."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "r1"], ["s"]),  # skip connection over two convs
        helper.make_node("GlobalAveragePool", ["s"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    weights = [_weight("w1", 4, 3, 3, 3), _weight("b1", 4), _weight("w2", 4, 4, 3, 3), _weight("b2", 4),
               _weight("w3", 4, 4, 3, 3), _weight("fw", 10, 4), _weight("fb", 10)]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_png_written_with_one_label_per_op(tmp_path):
    model = _residual_model()
    png = tmp_path / "sub" / "residual.png"
    fig = draw_onnx_graph(model, path=png)
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = Counter(_texts(fig))
    ops = Counter(node.op_type for node in model.graph.node)
    assert {op: labels[op] for op in ops} == dict(ops)  # e.g. 3 "Conv" labels for 3 Conv nodes


def test_weights_shapes_and_symbolic_dims_are_shown():
    texts = _texts(draw_onnx_graph(_residual_model()))
    assert "W 4×3×3×3  B 4" in texts and "W 4×4×3×3" in texts  # weights annotate ops ...
    assert "w1" not in texts  # ... and are not boxes of their own
    assert "batch×3×8×8" in texts and "batch×10" in texts  # graph input / output shapes
    assert "batch×4×8×8" in texts  # an inferred intermediate shape on an arrow


def test_skip_connection_is_an_arrow():
    from matplotlib.patches import FancyArrowPatch

    fig = draw_onnx_graph(_residual_model())
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    # One arrow per data edge: 8 between adjacent ops, the skip, from the input, to the output.
    assert len(arrows) == 11


def test_draws_into_given_axes(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert draw_onnx_graph(_residual_model(), ax=ax, title="mine") is fig
    assert ax.get_title() == "mine"


def test_too_many_nodes_points_to_netron():
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(30)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("t30", TensorProto.FLOAT, [1])])
    with pytest.raises(DeployLabError, match=r"30 nodes.*Netron.*max_nodes"):
        draw_onnx_graph(helper.make_model(graph), max_nodes=20)


def test_missing_and_corrupt_files_raise_deploylab_error(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DeployLabError, match="nope.onnx"):
        draw_onnx_graph(missing)
    corrupt = tmp_path / "notes.onnx"
    corrupt.write_text("hello, this is not a protobuf\n")
    with pytest.raises(DeployLabError, match="not an ONNX model"):
        draw_onnx_graph(str(corrupt))


def test_reads_model_from_path(tmp_path):
    path = tmp_path / "residual.onnx"
    onnx.save(_residual_model(), path)
    fig = draw_onnx_graph(str(path))
    assert "residual.onnx: 9 nodes" in fig.texts[0].get_text()


def test_pipeline_figure(tmp_path):
    png = tmp_path / "pipeline.png"
    fig = draw_pipeline_figure(png)
    assert png.stat().st_size > 20_000
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for word in ("ONNX", "Inference engine", "TensorRT", "ONNX Runtime", "Hardware", "Huawei Ascend"):
        assert word in text
