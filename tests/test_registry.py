"""Backends declared once: the registry's specs drive make_runner, backend_for_artifact, the
command line's choices and option mapping; ONNX Runtime providers as names or (name, options)."""

from __future__ import annotations

import pytest

from deploylab.backends import registry
from deploylab.backends.onnxruntime import OnnxRuntimeRunner, parse_providers, resolve_providers
from deploylab.backends.registry import SPECS, backend_for_artifact, builders, make_runner, spec_for
from deploylab.errors import DeployLabError


def test_every_backend_is_declared_once_with_what_callers_need():
    assert [s.name for s in SPECS] == list(registry.BACKENDS) == ["onnxruntime", "openvino", "tensorrt"]
    for spec in SPECS:
        assert spec.loads and all(s.startswith(".") for s in spec.loads)
        assert isinstance(spec.available(), bool)
    assert registry.ARTIFACT_SUFFIXES == {s.name: s.loads for s in SPECS}
    assert builders() == ("openvino", "tensorrt")


@pytest.mark.parametrize("name, backend", [("m.onnx", "onnxruntime"), ("m.xml", "openvino"), ("m.plan", "tensorrt"),
                                           ("m.ENGINE", "tensorrt"), ("m", "onnxruntime")])
def test_backend_for_artifact_follows_the_specs(name, backend):
    assert backend_for_artifact(name) == backend


def test_runner_options_map_the_shared_words_and_refuse_what_a_backend_lacks():
    assert spec_for("onnxruntime").runner_options(threads=2, providers=["cpu"]) == {
        "intra_op_threads": 2, "providers": ["cpu"]}
    assert spec_for("openvino").runner_options(threads=2) == {"threads": 2}
    with pytest.raises(DeployLabError, match="--providers are ONNX Runtime execution providers"):
        spec_for("openvino").runner_options(providers=["cpu"])
    with pytest.raises(DeployLabError, match="tensorrt backend has no CPU thread setting"):
        spec_for("tensorrt").runner_options(threads=2)
    with pytest.raises(DeployLabError, match="unknown backend"):
        spec_for("tensorrt-rtx")


def test_make_runner_refuses_a_file_its_backend_cannot_load(tmp_path):
    with pytest.raises(DeployLabError, match=r"tensorrt backend cannot load .*m.onnx.*run by onnxruntime"):
        make_runner("tensorrt", tmp_path / "m.onnx")


def test_build_choices_come_from_the_registry():
    from deploylab.cli import build_parser

    build = build_parser()._subparsers._group_actions[0].choices["build"]
    backend = next(a for a in build._actions if a.dest == "backend")
    assert tuple(backend.choices) == builders()


# ---------------------------------------------------------------- providers
def test_providers_take_names_aliases_and_name_options_pairs():
    assert parse_providers("cuda:device_id=0;gpu_mem_limit=2,cpu") == [
        ("CUDAExecutionProvider", {"device_id": "0", "gpu_mem_limit": "2"}), "CPUExecutionProvider"]
    usable, notes = resolve_providers([("cpu", {"arena_extend_strategy": "kSameAsRequested"})])
    assert usable == [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})] and notes == []
    usable, notes = resolve_providers([("tensorrt", {"trt_engine_cache_path": "cache"}), "cuda"])
    assert usable == ["CPUExecutionProvider"] and len(notes) == 2  # neither is in this CPU build


@pytest.mark.parametrize("text, said", [("cuda:device_id", "must be key=value"), ("cpu,,cuda", "empty entry"),
                                        ("warp", "unknown ONNX Runtime provider 'warp'")])
def test_malformed_providers_are_refused(text, said):
    with pytest.raises(DeployLabError, match=said):
        parse_providers(text)


def test_a_session_runs_with_provider_options(lenet_ts_dynamic):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, providers=[("cpu", {"arena_extend_strategy": "kSameAsRequested"})])
    assert runner.providers == ["CPUExecutionProvider"] and runner.fallbacks == []
    assert runner.clone().requested_providers == runner.requested_providers


def test_cuda_iobinding_names_the_cuda_memory_providers(lenet_ts_dynamic):
    torch = pytest.importorskip("torch")
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path)
    with pytest.raises(DeployLabError, match="CUDAExecutionProvider, TensorrtExecutionProvider"):
        runner.run_cuda_iobinding({"input": torch.zeros(1, 1, 32, 32)})


def test_cli_providers(cli, lenet_ts_dynamic, tmp_path):
    import numpy as np

    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((1, 1, 32, 32), np.float32))
    ok = cli("run", str(lenet_ts_dynamic.path), "--input", str(sample), "--providers", "cpu:arena_extend_strategy=kSameAsRequested")
    assert ok.code == 0 and "CPUExecutionProvider" in ok.out
    bad = cli("run", str(lenet_ts_dynamic.path), "--input", str(sample), "--backend", "openvino", "--providers", "cpu")
    assert bad.code == 2 and "--providers are ONNX Runtime execution providers" in bad.err
    bad = cli("compare", str(lenet_ts_dynamic.path), "--providers", "cuda:device_id")
    assert bad.code == 2 and "must be key=value" in bad.err


def test_cli_bench_passes_providers_to_onnx_runtime_only(cli, lenet_ts_dynamic):
    ok = cli("bench", str(lenet_ts_dynamic.path), "--backends", "onnxruntime,openvino", "--batch", "1",
             "--repeats", "3", "--threads", "1", "--providers", "cpu")
    assert ok.code == 0 and "onnxruntime" in ok.out and "openvino" in ok.out
    bad = cli("bench", str(lenet_ts_dynamic.path), "--backends", "openvino", "--providers", "cpu")
    assert bad.code == 2 and "the openvino backend has none" in bad.err
