"""collect_environment / format_environment / CPU capability checks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploylab import env as envmod


@pytest.fixture(scope="module")
def env():
    return envmod.collect_environment()


def test_keys_and_types(env):
    assert set(env) == {"python", "platform", "machine", "cpu_model", "cpu_count", "cpu_flags", "memory_gib",
                        "packages", "onnxruntime_providers", "openvino_devices", "gpu", "torch_threads"}
    assert set(env["cpu_flags"]) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16",
                                     "amx_int8", "avx512_bf16"}
    assert all(isinstance(v, bool) for v in env["cpu_flags"].values())
    assert env["cpu_count"] >= 1 and env["cpu_model"]
    assert env["memory_gib"] is None or env["memory_gib"] > 0
    assert isinstance(env["gpu"], list) and isinstance(env["onnxruntime_providers"], list)
    json.dumps(env)  # stored next to results, so it must serialise


def test_package_versions_match_installed(env):
    import onnx
    import torch

    # The wheel's metadata omits the local build tag that torch.__version__ carries (+cu130).
    assert env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["packages"]["onnx"] == onnx.__version__
    assert env["packages"]["tensorrt"] is None or isinstance(env["packages"]["tensorrt"], str)
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert env["torch_threads"] == torch.get_num_threads()


def test_format_mentions_cpu_and_packages(env):
    text = envmod.format_environment(env)
    assert env["cpu_model"] in text and "torch" in text and "AVX2:" in text
    missing = [name for name, version in env["packages"].items() if version is None]
    if missing:
        assert "not installed" in text
    if not env["gpu"]:
        assert any(line.startswith("gpu") and line.endswith(": none") for line in text.splitlines())


def test_format_of_a_server_cpu():
    flags = dict.fromkeys(envmod._CPU_FLAGS, True)
    flags["amx_bf16"] = False
    text = envmod.format_environment({"cpu_model": "Xeon", "cpu_flags": flags, "gpu": [],
                                      "packages": {"tensorrt": None}})
    assert "AVX-512 VNNI: yes" in text and "AMX: yes (int8)" in text and "AVX2: yes" in text
    assert "tensorrt" in text and "not installed" in text


def test_capability_checks():
    none = dict.fromkeys(envmod._CPU_FLAGS, False)
    assert not envmod.cpu_has_vnni({"cpu_flags": none})
    assert not envmod.cpu_supports_bf16({"cpu_flags": none})
    assert envmod.cpu_has_vnni({"cpu_flags": {**none, "avx512_vnni": True}})
    assert envmod.cpu_has_vnni({"cpu_flags": {**none, "amx_int8": True}})
    assert envmod.cpu_supports_bf16({"cpu_flags": {**none, "amx_bf16": True}})
    assert not envmod.cpu_supports_bf16({"cpu_flags": {**none, "avx512_vnni": True}})
    assert isinstance(envmod.cpu_has_vnni(), bool)  # reads this machine's flags


def test_import_is_light():
    code = ("import sys, deploylab.env; "
            "print([m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
