"""plot_profile: one bar per op type and per slow layer, with the report's numbers; clear errors."""

import matplotlib

matplotlib.use("Agg")

import pytest

from deploylab.errors import DeployLabError
from deploylab.plots import plot_profile
from deploylab.profiling import LayerProfile, ProfileReport


def _report(layers):
    return ProfileReport("openvino", "toy.xml", runs=5, batch_size=1, layers=layers)


LAYERS = [
    LayerProfile("conv1", "Convolution", 900.0, "bf16", "brgconv"),
    LayerProfile("conv2", "Convolution", 600.0, "bf16", "brgconv"),
    LayerProfile("fc", "FullyConnected", 300.0, "f32", "gemm"),
    LayerProfile("pool", "MaxPool", 100.0, None, None),
]


def test_bars_hold_the_reports_times_slowest_first(tmp_path):
    fig = plot_profile(_report(LAYERS), tmp_path / "profile.png", top=10)
    assert (tmp_path / "profile.png").stat().st_size > 0
    by_type, by_layer = fig.axes[:2]
    type_bars = {t.get_text(): bar.get_width() for t, bar in zip(by_type.get_yticklabels(), by_type.patches)}
    assert type_bars == pytest.approx({"Convolution": 1.5, "FullyConnected": 0.3, "MaxPool": 0.1})
    # barh draws bottom-up: the slowest layer is the last (top) bar
    assert [t.get_text() for t in by_layer.get_yticklabels()][-1] == "conv1 [bf16]"
    assert by_layer.patches[-1].get_width() == pytest.approx(0.9)
    assert "100%" not in " ".join(t.get_text() for t in by_type.texts)  # shares: 79%, 16%, 5%
    assert [t.get_text() for t in by_type.texts][-1].startswith("79%")


def test_top_limits_both_panels():
    fig = plot_profile(_report(LAYERS), top=2)
    assert len(fig.axes[0].patches) == 2 and len(fig.axes[1].patches) == 2


def test_empty_report_and_bad_top_are_refused():
    with pytest.raises(DeployLabError, match="holds no layers"):
        plot_profile(_report([]))
    with pytest.raises(DeployLabError, match="top must be at least 1"):
        plot_profile(_report(LAYERS), top=0)
