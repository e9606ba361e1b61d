"""``deploylab run`` and ``deploylab compare``: outputs, exit codes (0 ok, 1 check failed, 2 bad input).

Calls ``deploylab.cli.main`` in-process; one case runs a real process to prove the exit
status and the single stderr line a user sees.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from conftest import one_line_error
from deploylab.paths import DATA_DIR

CAT = DATA_DIR / "images" / "chelsea_cat.jpg"
RANKED_LINE = re.compile(r"^\s+(\d+)\.\s+(\d+) (.+?)\s+score=(-?[\d.]+) (p|softmax)=([\d.]+)$")




def _ranked(out: str) -> list[tuple[int, int, str, float, float]]:
    rows = []
    for line in out.splitlines():
        m = RANKED_LINE.match(line)
        if m:
            rows.append((int(m[1]), int(m[2]), m[3].strip(), float(m[4]), float(m[6])))
    return rows


@pytest.fixture(scope="module")
def resnet18_onnx(tmp_path_factory):
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    path = tmp_path_factory.mktemp("resnet18") / "resnet18.onnx"
    return export_bundle(resolve_model("resnet18"), path, exporter="torchscript", opset=17).path


@pytest.fixture(scope="module")
def lenet_onnx(lenet_ts_dynamic):
    return lenet_ts_dynamic.path  # read-only: symbolic batch, so --batch 1,3 works


@pytest.fixture(scope="module")
def perturbed_lenet(lenet_onnx, tmp_path_factory):
    """LeNet with its last Gemm's weight scaled by 1.05: valid, runs, but outside tolerance."""
    model = onnx.load(str(lenet_onnx))
    weight = [n for n in model.graph.node if n.op_type == "Gemm"][-1].input[1]
    for init in model.graph.initializer:
        if init.name == weight:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), weight))
    path = tmp_path_factory.mktemp("perturbed") / "perturbed.onnx"
    onnx.save(model, str(path))
    return path


def _zeroed_copy(src, dst, names):
    """Copy an ONNX file with the named initializers set to zero."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name in names:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))
    return dst


def _classifier(path) -> tuple[str, str]:
    """(weight, bias) initializer names of the last Gemm node."""
    return tuple([n for n in onnx.load(str(path)).graph.node if n.op_type == "Gemm"][-1].input[1:3])


@pytest.fixture(scope="module")
def mobilenet_zeroed(tmp_path_factory):
    """mobilenet_v3_small (default init) exported with a dynamic batch, its classifier zeroed: outputs 0."""
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    folder = tmp_path_factory.mktemp("mobilenet_zeroed")
    path = export_bundle(resolve_model("torchvision:mobilenet_v3_small"), folder / "m.onnx",
                         exporter="torchscript", opset=17, dynamic_batch=True).path
    return _zeroed_copy(path, folder / "zeroed.onnx", _classifier(path))


@pytest.fixture(scope="module")
def constant_lenet(lenet_onnx, tmp_path_factory):
    """LeNet whose last Gemm weight is zero: every input gets the same scores (the bias)."""
    return _zeroed_copy(lenet_onnx, tmp_path_factory.mktemp("constant") / "constant.onnx", _classifier(lenet_onnx)[:1])


SCALE = re.compile(r"reference max abs ([-+.\de]+)")


# ---------------------------------------------------------------- run
def test_run_resnet18_on_the_cat_prints_ranked_imagenet_classes(cli, resnet18_onnx):
    from deploylab.data.images import load_imagenet_classes
    from deploylab.data.preprocess import ImagePreprocessing

    r = cli("run", resnet18_onnx, "--input", CAT, "--topk", "3")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "preprocessing: mmcls ImageNet test pipeline (from resnet18.onnx's metadata)"
    header = r.out.splitlines()[1]
    assert "CPUExecutionProvider" in header and "output 1x1000" in header
    rows = _ranked(r.out)
    assert [row[0] for row in rows] == [1, 2, 3]
    classes = (DATA_DIR / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes == load_imagenet_classes() and len(classes) == 1000
    for _, index, label, _, _ in rows:
        assert label == classes[index]
    # the ranking is the model's own on the mmcls-preprocessed cat
    feed = {"input": ImagePreprocessing(resize_short=256, crop_size=224).batch([CAT])}
    scores = OnnxRuntimeRunner(resnet18_onnx).infer(feed)["output"][0]
    assert [row[1] for row in rows] == list(np.argsort(-scores, kind="stable")[:3])
    assert [row[3] for row in rows] == sorted((row[3] for row in rows), reverse=True)
    assert all(row[3] == pytest.approx(float(scores[row[1]]), abs=1e-4) for row in rows)
    assert " softmax=" in r.out  # logits: probabilities are their softmax


def test_run_lenet_on_an_npy_sample_without_batch_dim(cli, lenet_onnx, tmp_path):
    x = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("run", lenet_onnx, "--input", tmp_path / "x.npy")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "input: x.npy as given (.npy, no preprocessing)"
    assert "output 1x10" in r.out.splitlines()[1]
    rows = _ranked(r.out)
    assert len(rows) == 5  # default --topk
    logits = OnnxRuntimeRunner(lenet_onnx).infer({"input": x[None]})["output"][0]
    assert [row[1] for row in rows] == list(np.argsort(-logits, kind="stable")[:5])
    assert all(row[2] == f"class {row[1]}" for row in rows)  # 10 classes: no names


def test_run_lenet_on_an_npy_batch(cli, lenet_onnx, tmp_path):
    np.save(tmp_path / "xs.npy", np.random.default_rng(1).random((2, 1, 32, 32), dtype=np.float32))
    r = cli("run", lenet_onnx, "--input", tmp_path / "xs.npy", "--topk", "2")
    assert r.code == 0, r.err
    assert "sample 0:" in r.out and "sample 1:" in r.out
    assert [row[0] for row in _ranked(r.out)] == [1, 2, 1, 2]


def test_run_image_on_lenet_asks_for_npy(cli, lenet_onnx):
    r = cli("run", lenet_onnx, "--input", CAT)
    line = one_line_error(r, "deploylab run: error:", str(CAT), ".npy")
    assert "float32[batchx1x32x32]" in line


@pytest.mark.parametrize("name", ["missing.npy", "missing.jpg"])
def test_run_missing_input_file(cli, resnet18_onnx, tmp_path, name):
    r = cli("run", resnet18_onnx, "--input", tmp_path / name)
    one_line_error(r, str(tmp_path / name), "does not exist")


def test_run_npy_of_wrong_shape(cli, lenet_onnx, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 32, 32), np.float32))
    r = cli("run", lenet_onnx, "--input", tmp_path / "bad.npy")
    one_line_error(r, "'input' has shape 1x3x32x32, but dim 1 must be 1")


def test_run_npy_of_wrong_dtype(cli, lenet_onnx, tmp_path):
    np.save(tmp_path / "f64.npy", np.zeros((1, 1, 32, 32), np.float64))
    r = cli("run", lenet_onnx, "--input", tmp_path / "f64.npy")
    one_line_error(r, "dtype float64", "float32")


def test_run_unreadable_npy(cli, lenet_onnx, garbage_file):
    bad = garbage_file("garbage.npy")
    r = cli("run", lenet_onnx, "--input", bad)
    one_line_error(r, str(bad), "not a readable .npy")


# ---------------------------------------------------------------- compare
def test_compare_against_pytorch_passes(cli, lenet_onnx):
    r = cli("compare", lenet_onnx, "--reference", "lenet", "--batch", "1,3")
    assert r.code == 0, r.err
    assert "PASS" in r.out and "FAIL" not in r.out
    assert "torch:lenet" in r.out.splitlines()[0]
    assert "output 1x10" in r.out and "output 3x10" in r.out


def test_compare_perturbed_against_pytorch_fails(cli, perturbed_lenet):
    r = cli("compare", perturbed_lenet, "--reference", "lenet", "--batch", "1,3")
    assert r.code == 1, r.err
    assert "FAIL" in r.out.splitlines()[0]
    assert r.out.count("FAIL output") == 2
    assert "Traceback" not in r.err


def test_compare_default_reference_is_the_unoptimized_graph(cli, perturbed_lenet):
    r = cli("compare", perturbed_lenet)
    assert r.code == 0, r.err  # the same (wrong) file agrees with itself
    assert "no optimization" in r.out and "PASS" in r.out


def test_compare_layerwise_against_itself(cli, perturbed_lenet):
    r = cli("compare", perturbed_lenet, "--layerwise")
    assert r.code == 0, r.err
    assert "layer-wise" in r.out and "all within tolerance" in r.out
    n_nodes = len(onnx.load(str(perturbed_lenet)).graph.node)
    assert f"{n_nodes} tensors compared" in r.out


def test_compare_layerwise_with_pytorch_reference_is_bad_input(cli, lenet_onnx):
    r = cli("compare", lenet_onnx, "--layerwise", "--reference", "lenet")
    one_line_error(r, "deploylab compare: error:", "--layerwise", "PyTorch")


def test_compare_unknown_backend(cli, lenet_onnx):
    r = cli("compare", lenet_onnx, "--backends", "nope")
    line = one_line_error(r, "unknown backend(s) 'nope'", "available:", "onnxruntime")
    assert r.out == ""
    assert line.startswith("deploylab compare: error:")


def test_compare_bad_batch_and_missing_model(cli, lenet_onnx, tmp_path):
    one_line_error(cli("compare", lenet_onnx, "--batch", "1,x"), "--batch")
    one_line_error(cli("compare", tmp_path / "absent.onnx"), str(tmp_path / "absent.onnx"), "does not exist")


def test_compare_unknown_backend_in_a_real_process(lenet_onnx, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "deploylab.cli", "compare", str(lenet_onnx), "--backends", "nope"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("deploylab compare: error: unknown backend(s) 'nope'")
    assert proc.stdout == ""


# ---------------------------------------------------------------- compare: verdicts PASS, FAIL, DEGENERATE
def test_compare_readme_example_passes_at_a_real_scale(cli, tmp_path):
    out = tmp_path / "m.onnx"
    r = cli("export", "torchvision:mobilenet_v3_small", "-o", out, "--dynamic-batch")
    assert r.code == 0, r.out + r.err
    assert "BatchNorm statistics from 4 seeded batches" in r.out.splitlines()[0]
    r = cli("compare", out, "--reference", "torchvision:mobilenet_v3_small", "--batch", "1,4")
    assert r.code == 0, r.out + r.err
    assert r.out.splitlines()[0].endswith(": PASS") and r.out.count("PASS output") == 2
    scales = [float(v) for v in SCALE.findall(r.out)]
    assert len(scales) == 2 and min(scales) > 1e-3, r.out  # far from degenerate
    # the same file against torchvision's plain init: that reference cannot judge it
    r = cli("compare", out, "--reference", "torchvision:mobilenet_v3_small", "--batch", "1,4",
            "--reference-init", "seeded")
    assert r.code == 1 and r.out.splitlines()[0].endswith(": DEGENERATE"), r.out + r.err
    assert max(float(v) for v in SCALE.findall(r.out)) < 1e-6


def test_compare_zeroed_classifier_exits_1_and_says_why(cli, mobilenet_zeroed):
    spec = "torchvision:mobilenet_v3_small"
    r = cli("compare", mobilenet_zeroed, "--reference", spec, "--batch", "1,4", "--reference-init", "seeded")
    assert r.code == 1, r.out + r.err
    assert r.out.splitlines()[0].endswith(": DEGENERATE") and "PASS" not in r.out
    assert "cosine 0.000000, top-1 agreement" in r.out
    line = r.err.strip().splitlines()[-1]
    assert line.startswith("deploylab compare: DEGENERATE, cannot judge: reference output max abs")
    assert "near zero" in line and "--reference-init realistic" in line and "Traceback" not in r.err
    r = cli("compare", mobilenet_zeroed, "--reference", spec, "--batch", "1,4")  # a reference that can judge
    assert r.code == 1 and r.out.splitlines()[0].endswith(": FAIL"), r.out + r.err
    assert "cosine 0.0000 < 0.995" in r.out and r.err == ""
    r = cli("compare", mobilenet_zeroed)  # against itself: its own output is 0
    assert r.code == 1 and "DEGENERATE" in r.out.splitlines()[0] and "max abs 0 is near zero" in r.err


def test_compare_constant_classifier_is_degenerate_beyond_one_row(cli, constant_lenet):
    r = cli("compare", constant_lenet, "--batch", "1,3")
    assert r.code == 1, r.out + r.err
    assert r.out.splitlines()[0].endswith(": DEGENERATE")
    assert "PASS output 1x10" in r.out and "DEGENERATE output 3x10" in r.out
    assert "all 3 reference rows are the same" in r.err and "all 3 rows predict class" in r.err
    r = cli("compare", constant_lenet, "--batch", "1")  # one row cannot show one answer for every input
    assert r.code == 0, r.out + r.err


def test_export_with_torchvision_init_cannot_judge_its_parity(cli, tmp_path):
    args = ("export", "torchvision:mobilenet_v3_small", "-o", tmp_path / "m.onnx", "--exporter", "torchscript")
    r = cli(*args, "--reference-init", "seeded")
    assert r.code == 1, r.out + r.err
    assert "parity ONNX Runtime vs PyTorch: DEGENERATE" in r.out and "batch 1: DEGENERATE" in r.out
    assert r.err.strip().splitlines()[-1].startswith("deploylab export: DEGENERATE, cannot judge: ")
    r = cli(*args)
    assert r.code == 0 and "parity ONNX Runtime vs PyTorch: PASS" in r.out, r.out + r.err


def test_bad_reference_init_is_one_line(cli, lenet_onnx):
    r = cli("compare", lenet_onnx, "--reference", "torchvision:resnet18", "--reference-init", "random")
    one_line_error(r, "--reference-init", "'random'")
    from deploylab.errors import DeployLabError
    from deploylab.models import resolve_model

    with pytest.raises(DeployLabError, match="unknown init 'random' for torchvision:resnet18"):
        resolve_model("torchvision:resnet18", init="random")
