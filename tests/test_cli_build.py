"""``deploylab build`` (OpenVINO IR, TensorRT trtexec commands) and ``run``/``compare`` on the IR.

In-process through ``deploylab.cli.main`` (exit 0 ok, 1 check failed, 2 bad input with one
stderr line); one case runs a real process to prove the exit status and stderr a user sees.
The LeNet export is conftest's ``lenet_ts_dynamic`` (read-only, symbolic batch).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.tensorrt import detect_tensorrt
from deploylab.cli import main
from conftest import one_line_error

PROFILE_ARGS = ["--min", "1x1x32x32", "--opt", "8x1x32x32", "--max", "32x1x32x32"]




def _ir_input_shape(xml_path) -> str:
    return str(ov.Core().read_model(str(xml_path)).inputs[0].get_partial_shape())


def _trtexec_argv(out: str) -> list[str]:
    """The printed trtexec command as an argv list (comment line dropped, continuations joined)."""
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    return shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines))


def _full_tensorrt_builder() -> bool:
    module, _version, lean = detect_tensorrt()
    return module is not None and not lean and hasattr(module, "Builder")


@pytest.fixture(scope="module")
def onnx_path(lenet_ts_dynamic):
    return lenet_ts_dynamic.path  # read-only


@pytest.fixture(scope="module")
def out_xml(onnx_path, tmp_path_factory):
    """An IR built once by the CLI with batch 1..32 (for run and compare)."""
    xml = tmp_path_factory.mktemp("cli_ir") / "out.xml"
    assert main(["build", str(onnx_path), "--backend", "openvino", *PROFILE_ARGS, "-o", str(xml)]) == 0
    return xml


# ---------------------------------------------------------------- build --backend openvino
def test_build_openvino_then_reuse_then_rebuild(cli, onnx_path, tmp_path):
    xml = tmp_path / "out.xml"
    argv = ["build", onnx_path, "--backend", "openvino", *PROFILE_ARGS, "-o", xml]

    first = cli(*argv)
    assert first.code == 0, first
    assert "OpenVINO IR built" in first.out and "[1..32,1,32,32]" in first.out
    assert xml.is_file() and xml.with_suffix(".bin").is_file() and Path(str(xml) + ".deploylab.json").is_file()
    assert _ir_input_shape(xml) == "[1..32,1,32,32]"
    sidecar = json.loads(Path(str(xml) + ".deploylab.json").read_text())
    assert sidecar["profile"] == {"input": [[1, 1, 32, 32], [8, 1, 32, 32], [32, 1, 32, 32]]}
    built_at = xml.stat().st_mtime_ns

    second = cli(*argv)
    assert second.code == 0, second
    assert "reused" in second.out and "built" not in second.out
    assert xml.stat().st_mtime_ns == built_at

    third = cli(*argv, "--rebuild")
    assert third.code == 0, third
    assert "OpenVINO IR built" in third.out and "reused" not in third.out
    assert _ir_input_shape(xml) == "[1..32,1,32,32]"


def test_output_without_suffix_becomes_xml(cli, onnx_path, tmp_path):
    r = cli("build", onnx_path, "--backend", "openvino", *PROFILE_ARGS, "-o", tmp_path / "out")
    assert r.code == 0, r
    assert (tmp_path / "out.xml").is_file() and (tmp_path / "out.bin").is_file()
    assert not (tmp_path / "out").exists()
    assert str(tmp_path / "out.xml") in r.out


def test_openvino_int8_is_bad_input(cli, onnx_path, tmp_path):
    r = cli("build", onnx_path, "--backend", "openvino", "--precision", "int8", "-o", tmp_path / "out.xml")
    one_line_error(r, "int8", "quantize")
    assert not list(tmp_path.iterdir())


def test_openvino_without_profile_keeps_dynamic_dims(cli, onnx_path, tmp_path):
    xml = tmp_path / "out.xml"
    r = cli("build", onnx_path, "--backend", "openvino", "-o", xml)
    assert r.code == 0, r
    assert "[?,1,32,32]" in r.out
    assert _ir_input_shape(xml) == "[?,1,32,32]"
    assert json.loads(Path(str(xml) + ".deploylab.json").read_text())["profile"] == {}


# ---------------------------------------------------------------- build --backend tensorrt
def test_print_trtexec_fp32(cli, onnx_path, tmp_path):
    plan = tmp_path / "lenet.plan"
    r = cli("build", onnx_path, "--backend", "tensorrt", *PROFILE_ARGS, "-o", plan,
            "--print-trtexec", "--trt-version", "10.13", "--workspace-mib", "1024")
    assert r.code == 0, r
    assert r.out.startswith("# trtexec command for TensorRT 10.13")
    argv = _trtexec_argv(r.out)
    assert argv[0] == "trtexec"
    assert f"--onnx={onnx_path}" in argv
    assert f"--saveEngine={plan}" in argv
    assert "--minShapes=input:1x1x32x32" in argv
    assert "--optShapes=input:8x1x32x32" in argv
    assert "--maxShapes=input:32x1x32x32" in argv
    assert "--memPoolSize=workspace:1024" in argv
    assert not {"--fp16", "--bf16", "--int8", "--stronglyTyped"} & set(argv)
    assert not plan.exists()  # printing builds nothing


def test_print_trtexec_fp16_on_10(cli, onnx_path, tmp_path):
    r = cli("build", onnx_path, "--backend", "tensorrt", *PROFILE_ARGS, "-o", tmp_path / "e.plan",
            "--print-trtexec", "--trt-version", "10.13", "--precision", "fp16")
    assert r.code == 0, r
    argv = _trtexec_argv(r.out)
    assert "--fp16" in argv and "--stronglyTyped" not in argv
    assert not any(a.startswith("--memPoolSize") for a in argv)  # no --workspace-mib, no limit


def test_print_trtexec_fp16_on_11_is_bad_input(cli, onnx_path, tmp_path):
    r = cli("build", onnx_path, "--backend", "tensorrt", *PROFILE_ARGS, "-o", tmp_path / "e.plan",
            "--print-trtexec", "--trt-version", "11.4", "--precision", "fp16")
    one_line_error(r, "strongly typed", "11.4")
    assert "trtexec" not in r.out


def test_print_trtexec_int8_with_calibration_cache(cli, onnx_path, tmp_path):
    r = cli("build", onnx_path, "--backend", "tensorrt", *PROFILE_ARGS, "-o", tmp_path / "e.plan",
            "--print-trtexec", "--trt-version", "10.13", "--precision", "int8", "--calib", "cal.cache")
    assert r.code == 0, r
    argv = _trtexec_argv(r.out)
    assert "--int8" in argv and "--calib=cal.cache" in argv


def test_tensorrt_build_without_the_builder_names_the_install(cli, onnx_path, tmp_path):
    if _full_tensorrt_builder():
        pytest.skip("the full TensorRT builder is importable here; this checks the machine without it")
    r = cli("build", onnx_path, "--backend", "tensorrt", *PROFILE_ARGS, "-o", tmp_path / "e.plan")
    one_line_error(r, "pip install tensorrt")
    assert not (tmp_path / "e.plan").exists()


def _bad_profiles():
    return {
        "min > max": (["--backend", "openvino", "--min", "8x1x32x32", "--opt", "8x1x32x32",
                       "--max", "2x1x32x32"], ["min 8", "max 2"]),
        "min > max tensorrt": (["--backend", "tensorrt", "--min", "8x1x32x32", "--opt", "8x1x32x32",
                                "--max", "2x1x32x32", "--print-trtexec", "--trt-version", "10.13"],
                               ["min 8", "max 2"]),
        "changes a fixed dim": (["--backend", "openvino", "--min", "1x3x32x32", "--opt", "8x3x32x32",
                                 "--max", "16x3x32x32"], ["dim 1 = 3", "fixes dim 1 to 1"]),
        "dynamic batch, no profile, tensorrt": (["--backend", "tensorrt", "--print-trtexec", "--trt-version",
                                                 "10.13"], ["'input'", "no shapes", "input:1x1x32x32"]),
    }


@pytest.mark.parametrize("case", list(_bad_profiles()))
def test_bad_profiles_are_bad_input(case, cli, onnx_path, tmp_path):
    args, named = _bad_profiles()[case]
    r = cli("build", onnx_path, *args, "-o", tmp_path / "out.xml")
    one_line_error(r, *named)
    assert r.out == ""
    assert not list(tmp_path.iterdir())


def test_bad_input_in_a_real_process(onnx_path, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "deploylab.cli", "build", str(onnx_path), "--backend", "tensorrt",
         "--min", "8x1x32x32", "--opt", "8x1x32x32", "--max", "2x1x32x32", "-o", "e.plan"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("deploylab build: error: ")
    assert "min <= opt <= max" in lines[0]
    assert proc.stdout == ""
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- run and compare the IR
def test_run_ir_backend_from_suffix(cli, out_xml, onnx_path, tmp_path):
    batch = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", batch)
    r = cli("run", out_xml, "--input", tmp_path / "x.npy")
    assert r.code == 0, r
    assert r.out.splitlines()[0] == "input: x.npy as given (.npy, no preprocessing)"
    assert r.out.splitlines()[1].startswith("openvino:out.xml on openvino: output 2x10")
    # the printed top-1 of each sample is ONNX Runtime's argmax on the same input
    expected = OnnxRuntimeRunner(onnx_path).infer({"input": batch})["output"].argmax(axis=1)
    firsts = [int(ln.split()[1]) for ln in r.out.splitlines() if ln.strip().startswith("1. ")]
    assert firsts == expected.tolist()


def test_compare_ir_against_pytorch(cli, out_xml):
    r = cli("compare", out_xml, "--reference", "lenet", "--batch", "1,8")
    assert r.code == 0, r
    assert "openvino:out.xml vs torch:lenet: PASS" in r.out
    assert "PASS output 1x10" in r.out and "PASS output 8x10" in r.out
    assert "FAIL" not in r.out


def test_compare_ir_needs_a_reference(cli, out_xml):
    one_line_error(cli("compare", out_xml), "--reference", "built artifact")


def test_compare_ir_against_the_onnx(cli, out_xml, onnx_path):
    r = cli("compare", out_xml, "--reference", onnx_path, "--batch", "2")
    assert r.code == 0, r
    assert "openvino:out.xml vs onnxruntime (no optimization):model.onnx: PASS" in r.out
    assert "PASS output 2x10" in r.out


def test_compare_onnx_under_two_backends(cli, onnx_path):
    r = cli("compare", onnx_path, "--backends", "onnxruntime,openvino")
    assert r.code == 0, r
    assert "onnxruntime:model.onnx vs onnxruntime (no optimization): PASS" in r.out
    assert "openvino:model.onnx vs onnxruntime (no optimization): PASS" in r.out
    assert "FAIL" not in r.out
