"""Shared fixtures: the LeNet and mmcls bundles, LeNet exports reused across files, helpers.

Exports are expensive (dynamo: seconds each), so the ones several test files read are
made once per session here; tests must treat those files as read-only (copy to modify).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

MMCLS_SPEC = "mmcls:resnet18_8xb32_in1k.py"
LENET_PARAMETERS = 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850


@pytest.fixture(scope="session", autouse=True)
def _deploylab_out(tmp_path_factory):
    """Anything deploylab writes as results goes to a temporary folder, not build/."""
    saved = os.environ.get("DEPLOYLAB_OUT")
    os.environ["DEPLOYLAB_OUT"] = str(tmp_path_factory.mktemp("deploylab_out"))
    yield
    if saved is None:
        os.environ.pop("DEPLOYLAB_OUT", None)
    else:
        os.environ["DEPLOYLAB_OUT"] = saved


@pytest.fixture(scope="session")
def lenet_bundle():
    from deploylab.models import resolve_model

    return resolve_model("lenet")


@pytest.fixture(scope="session")
def mmcls_bundle():
    from deploylab.models import resolve_model

    return resolve_model(MMCLS_SPEC)


def _export(bundle, directory, **kwargs):
    from deploylab.export import export_bundle

    return export_bundle(bundle, directory / "model.onnx", **kwargs)


@pytest.fixture(scope="session")
def lenet_ts11(lenet_bundle, tmp_path_factory):
    """ExportReport of the seed's call: LeNet, torchscript exporter, opset 11 (read-only file)."""
    return _export(lenet_bundle, tmp_path_factory.mktemp("lenet_ts11"), exporter="torchscript", opset=11)


@pytest.fixture(scope="session")
def lenet_ts_dynamic(lenet_bundle, tmp_path_factory):
    """ExportReport of LeNet via torchscript, opset 17, symbolic batch dim (read-only file)."""
    return _export(lenet_bundle, tmp_path_factory.mktemp("lenet_ts_dyn"), exporter="torchscript",
                   opset=17, dynamic_batch=True)


@pytest.fixture(scope="session")
def resnet18_state():
    """mmcls-named ResNet-18 weights (real checkpoint if shipped, else the seeded ones)."""
    from deploylab.models.resnet import resnet18_state_dict

    state, _source = resnet18_state_dict()
    return state


def perturb_batchnorm(state: dict, seed: int = 0) -> dict:
    """A copy of ``state`` whose BatchNorm weight/bias/running stats are seeded non-trivial values.

    Freshly initialised BN layers are the identity (weight 1, bias 0, mean 0, var 1), which
    would hide a mix-up between BN layers; after this each layer does something different.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in state.items()}
    prefixes = sorted(k[: -len(".running_mean")] for k in out if k.endswith(".running_mean"))
    assert prefixes, "no BatchNorm layers found"
    for p in prefixes:
        n = out[p + ".running_mean"].numel()
        out[p + ".weight"] = 1 + 0.2 * torch.randn(n, generator=generator)
        out[p + ".bias"] = 0.1 * torch.randn(n, generator=generator)
        out[p + ".running_mean"] = 0.1 * torch.randn(n, generator=generator)
        out[p + ".running_var"] = 0.5 + torch.rand(n, generator=generator)
    return out


@pytest.fixture
def perturbed_resnet18_state(resnet18_state):
    return perturb_batchnorm(resnet18_state, seed=1)


@pytest.fixture
def garbage_file(tmp_path):
    """Factory: a file named ``name`` in tmp_path holding seeded random bytes (not a model)."""

    def make(name: str, size: int = 2048):
        path = tmp_path / name
        path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
        return path

    return make


LENET_PROFILE = {"input": ((1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32))}


@pytest.fixture(scope="session")
def lenet_ir(lenet_ts_dynamic, tmp_path_factory):
    """An OpenVINO IR of the dynamic LeNet export, batch bounded to 1..16 (read-only)."""
    from deploylab.backends.openvino import build_openvino_ir

    xml = tmp_path_factory.mktemp("lenet_ir") / "lenet.xml"
    return build_openvino_ir(lenet_ts_dynamic.path, xml, profile=LENET_PROFILE).xml_path


# ---------------------------------------------------------------- command line
@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``deploylab ARGS`` in-process; argparse's SystemExit becomes the exit code."""
    from deploylab.cli import main

    def run(*argv) -> CliResult:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def one_line_error(result: CliResult, *named: str) -> str:
    """Assert exit 2 with exactly one stderr line, no traceback, naming every text in ``named``."""
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out
    for text in named:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# ---------------------------------------------------------------- serving (Ray)
@pytest.fixture(scope="session")
def efficientnet_onnx(tmp_path_factory):
    """EfficientNet-Lite0 with its real ImageNet weights, exported with a dynamic batch (read-only)."""
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.onnx"
    export_bundle(resolve_model("efficientnet_lite0"), path, dynamic_batch=True)
    return path


@pytest.fixture(scope="session")
def efficientnet_runner(efficientnet_onnx):
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(efficientnet_onnx, intra_op_threads=2)


@pytest.fixture(scope="session")
def sample_photos():
    from deploylab.data.images import sample_image_paths

    return sample_image_paths()


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for every test that serves or runs Ray Data; shut down at the end."""
    from deploylab.serve.ray_local import ray_module, start_ray

    started = start_ray()
    try:
        yield ray_module()
    finally:
        if started:
            ray_module().shutdown()
