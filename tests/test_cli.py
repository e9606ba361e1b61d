"""The ``deploylab`` command line: exit codes, one-line errors, the issue's acceptance commands.

Most cases call ``deploylab.cli.main`` in-process (an interpreter start with torch costs
seconds); two run as real processes to prove the exit status and stderr a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CliResult, one_line_error
import torch





# ---------------------------------------------------------------- happy paths
def test_export_lenet_seed_call(cli, tmp_path):
    out = tmp_path / "lenet.onnx"
    r = cli("export", "lenet", "-o", out, "--exporter", "torchscript", "--opset", "11")
    assert r.code == 0, r.err
    assert "parity ONNX Runtime vs PyTorch: PASS" in r.out
    assert "opset asked: 11, opset in file: 11" in r.out
    assert out.is_file()


def test_export_no_verify_skips_parity(cli, tmp_path):
    r = cli("export", "lenet", "-o", tmp_path / "l.onnx", "--exporter", "torchscript", "--no-verify")
    assert r.code == 0 and "parity" not in r.out


def test_export_failed_parity_exits_1(cli, tmp_path):
    # zero tolerances ask for bit-exact parity, which ONNX Runtime's kernels do not give: the check
    # runs and fails, which is not bad input (a negative tolerance is: tests/test_failures.py)
    r = cli("export", "lenet", "-o", tmp_path / "l.onnx", "--exporter", "torchscript",
                "--atol", "0", "--rtol", "0")
    assert r.code == 1 and "FAIL" in r.out


def test_inspect_prints_summary(cli, lenet_ts11):
    r = cli("inspect", lenet_ts11.path)
    assert r.code == 0, r.err
    assert "opset:       11" in r.out
    assert "inputs:\n  input: float32[1x1x32x32]" in r.out
    assert "outputs:\n  output: float32[1x10]" in r.out
    assert "operators:" in r.out and "Sigmoid" in r.out and "AveragePool" in r.out
    assert "checker:     valid" in r.out


def test_inspect_json(cli, lenet_ts11):
    r = cli("inspect", lenet_ts11.path, "--json")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["opset"] == 11 and data["checker"]["valid"] is True
    assert data["op_histogram"]["Conv"] == 2
    assert data["inputs"][0]["name"] == "input"


def test_inspect_draw(cli, lenet_ts11, tmp_path):
    png = tmp_path / "graph.png"
    r = cli("inspect", lenet_ts11.path, "--draw", png)
    assert r.code == 0 and f"graph drawn to {png}" in r.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_env(cli):
    r = cli("env")
    assert r.code == 0
    assert torch.__version__.split("+")[0] in r.out
    assert any(line.startswith("cpu") for line in r.out.splitlines()) and "AVX2:" in r.out


def test_env_json(cli):
    r = cli("env", "--json")
    data = json.loads(r.out)
    assert data["packages"]["torch"] == torch.__version__.split("+")[0]
    assert data["cpu_count"] >= 1


# ---------------------------------------------------------------- the acceptance commands
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_acceptance_mobilenet_dynamic_batch(cli, tmp_path, exporter):
    out = tmp_path / "m.onnx"
    args = ["export", "torchvision:mobilenet_v3_small", "-o", out, "--dynamic-batch"]
    if exporter == "torchscript":
        args += ["--exporter", "torchscript"]
    r = cli(*args)
    assert r.code == 0, r.out + r.err
    assert f"exporter:    {exporter}" in r.out
    assert "symbolic dims: batch" in r.out
    assert "parity ONNX Runtime vs PyTorch: PASS" in r.out and "batch 3: PASS" in r.out


# ---------------------------------------------------------------- bad input: exit 2, one line
def _bad_input_cases(tmp: Path, garbage_file) -> dict[str, tuple[list, list[str]]]:
    """name -> (argv, texts the error line must contain)."""
    out = tmp / "out.onnx"
    return {
        "unknown model": (["export", "nothing", "-o", out], ["'nothing'"]),
        "missing checkpoint": (["export", "lenet", "-o", out, "--checkpoint", tmp / "gone.pt"], ["gone.pt"]),
        "corrupt checkpoint": (["export", "lenet", "-o", out, "--checkpoint", garbage_file("bad.pt")],
                               ["bad.pt", "weights_only"]),
        "wrong input shape": (["export", "lenet", "-o", out, "--input-shape", "1x3x32x32"], ["1x3x32x32"]),
        "bad input shape string": (["export", "lenet", "-o", out, "--input-shape", "1xax3"], ["'1xax3'"]),
        "inspect missing file": (["inspect", tmp / "gone.onnx"], ["gone.onnx"]),
        "inspect corrupt file": (["inspect", garbage_file("bad.onnx")], ["bad.onnx"]),
        "unknown subcommand": (["frobnicate"], ["frobnicate"]),
        "unknown flag": (["export", "lenet", "-o", out, "--frobnicate"], ["--frobnicate"]),
        "missing argument": (["export", "lenet"], ["-o"]),
    }


# the case names, for parametrize (building the cases here writes nothing: the factory is a stub)
BAD_INPUT_NAMES = list(_bad_input_cases(Path("."), lambda name: name))


@pytest.mark.parametrize("case", BAD_INPUT_NAMES)
def test_bad_input_is_one_line_and_exit_2(case, cli, tmp_path, garbage_file):
    argv, named = _bad_input_cases(tmp_path, garbage_file)[case]
    r = cli(*argv)
    one_line_error(r, *named)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("case, launcher", [
    ("unknown model", [sys.executable, "-m", "deploylab.cli"]),
    ("unknown flag", [str(Path(sys.executable).with_name("deploylab"))]),  # the console script
])
def test_bad_input_in_a_real_process(case, launcher, tmp_path, garbage_file):
    argv, named = _bad_input_cases(tmp_path, garbage_file)[case]
    proc = subprocess.run(launcher + [str(a) for a in argv], capture_output=True, text=True, timeout=120)
    one_line_error(CliResult(proc.returncode, proc.stdout, proc.stderr), *named)
    assert proc.stderr.startswith("deploylab")
