"""The runner contract suite, run over every runner this machine can run, and shown to fail.

``deploylab.backends.contract.check_runner`` is the same list of checks for every backend
(describe, outputs, input checks, settings, clone, many requests), like scikit-learn's
estimator checks. The feed is real digits through the shipped, trained LeNet, so outputs
differ from input to input and "same outputs" means something. TensorRT needs an NVIDIA
GPU; its case runs where one is visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from deploylab.backends.base import Runner, RunnerSettings
from deploylab.backends.contract import check_runner
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import OpenVinoRunner
from deploylab.backends.registry import SPECS
from deploylab.backends.torch_eager import TorchEagerRunner


@pytest.fixture(scope="module")
def digits_feed():
    from deploylab.data.digits import load_digits_split

    images = load_digits_split("test").images[:4]
    return {"input": np.ascontiguousarray(images)}


def _runners(lenet_bundle, lenet_ts_dynamic, lenet_ir):
    path = lenet_ts_dynamic.path
    data = path.read_bytes()
    return {
        "onnxruntime file": lambda: OnnxRuntimeRunner(path, intra_op_threads=1),
        "onnxruntime bytes": lambda: OnnxRuntimeRunner.from_bytes(data, intra_op_threads=1),
        "onnxruntime no optimization": lambda: OnnxRuntimeRunner(path, optimization="disabled"),
        "openvino onnx": lambda: OpenVinoRunner(path, threads=1),
        "openvino ir": lambda: OpenVinoRunner(lenet_ir, threads=1),
        "openvino bytes": lambda: OpenVinoRunner.from_bytes(data, threads=1),
        "openvino throughput queue": lambda: OpenVinoRunner(lenet_ir, hint="throughput"),
        "torch eager": lambda: TorchEagerRunner(lenet_bundle, threads=1),
        **{f"{spec.name} conformance runner": (lambda spec=spec: spec.conformance_runner(data))
           for spec in SPECS if spec.conformance_runner is not None},
    }


CASES = ["onnxruntime file", "onnxruntime bytes", "onnxruntime no optimization", "openvino onnx", "openvino ir",
         "openvino bytes", "openvino throughput queue", "torch eager", "onnxruntime conformance runner",
         "openvino conformance runner"]


@pytest.mark.parametrize("case", CASES)
def test_every_runner_keeps_the_contract(case, lenet_bundle, lenet_ts_dynamic, lenet_ir, digits_feed):
    make = _runners(lenet_bundle, lenet_ts_dynamic, lenet_ir)[case]
    assert check_runner(make, digits_feed) == []


def test_the_cases_cover_every_backend_spec(lenet_bundle, lenet_ts_dynamic, lenet_ir):
    """A backend added to the registry without a contract case here fails (TensorRT: the GPU case)."""
    covered = {case.split()[0] for case in CASES} | {"tensorrt"}
    assert {spec.name for spec in SPECS} <= covered
    assert set(CASES) <= set(_runners(lenet_bundle, lenet_ts_dynamic, lenet_ir))


def test_tensorrt_runner_keeps_the_contract(tmp_path, lenet_ts_dynamic, digits_feed):
    from deploylab.backends.tensorrt import BuildSettings, TensorRTRunner, build_engine_plan, gpu_info
    from deploylab.backends.tensorrt.version import detect_install

    if detect_install() is None or gpu_info() is None:
        pytest.skip("no NVIDIA GPU / full TensorRT: the TensorRT runner runs only on a GPU")
    from deploylab.backends.profiles import parse_profile_args

    profile = parse_profile_args(min="1x1x32x32", opt="4x1x32x32", max="8x1x32x32")
    report = build_engine_plan(BuildSettings(lenet_ts_dynamic.path, tmp_path / "lenet.plan", [profile]))
    assert check_runner(lambda: TensorRTRunner(report.engine_path), digits_feed) == []


# ---------------------------------------------------------------- the checks can fail
class _Broken(Runner):
    """A real ONNX Runtime runner with one fault put in."""

    backend = "broken"

    def __init__(self, path, fault: str, seed: list | None = None):
        super().__init__("broken")
        self.path, self.fault = path, fault
        self.inner = OnnxRuntimeRunner(path, intra_op_threads=1)
        self.calls = seed if seed is not None else [0]

    def _activate(self):
        self.inner.activate()

    def _describe(self):
        return self.inner.inputs, self.inner.outputs

    def check(self, feed):
        return dict(feed) if self.fault == "no input checks" else super().check(feed)

    def _infer(self, feed):
        out = self.inner.activate()._infer(feed) if self.fault == "no input checks" else self.inner.infer(feed)
        if self.fault == "float64 outputs":
            return {k: v.astype(np.float64) for k, v in out.items()}
        if self.fault == "drifts":
            self.calls[0] += 1
            return {k: v + self.calls[0] * 1e-3 for k, v in out.items()}
        return out

    def settings(self):
        return RunnerSettings(threads=1)

    def clone(self):
        if self.fault == "no clone":
            return None
        twin = _Broken(self.path, self.fault, self.calls)
        if self.fault == "clone differs":
            twin.settings = lambda: RunnerSettings(threads=2)
        return twin


@pytest.mark.parametrize("fault, said", [
    ("float64 outputs", "is float64, declared float32"),
    ("drifts", "different outputs"),
    ("no input checks", "a wrong dtype"),
    ("no clone", "clone() gave None"),
    ("clone differs", "clone() settings"),
])
def test_the_contract_catches_a_broken_runner(fault, said, lenet_ts_dynamic, digits_feed):
    failures = check_runner(lambda: _Broken(lenet_ts_dynamic.path, fault), digits_feed)
    assert any(said in f for f in failures), failures
    assert check_runner(lambda: _Broken(lenet_ts_dynamic.path, "none"), digits_feed) == []
