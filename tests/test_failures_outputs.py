"""Issue 15: odd files are read as one-line errors, every output is written whole or not at all,
no file the user owns is destroyed (disk full, a folder as -o, a checker-rejected model, a sidecar
beside someone's results.json, concurrent builds, SIGTERM), and the engines send no telemetry."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import one_line_error
from onnx import TensorProto, helper

from deploylab.errors import DeployLabError

CLI = [sys.executable, "-m", "deploylab.cli"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256: what a failed run must leave as it was."""
    return {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_limited(argv, file_bytes: int, env=None, cwd=None) -> subprocess.CompletedProcess:
    """The CLI in a child whose files may grow to ``file_bytes`` (RLIMIT_FSIZE): a full disk. Python
    ignores SIGXFSZ, so the write that crosses the limit raises OSError(EFBIG)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))

    return subprocess.run(CLI + [str(a) for a in argv], preexec_fn=limit, capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def _one_line(r: subprocess.CompletedProcess, *named: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [line for line in r.stderr.strip().splitlines() if "%|" not in line]  # progress bars aside
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for text in named:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# ---------------------------------------------------------------- files deploylab reads
def test_odd_array_files_are_one_line(cli, lenet_ts_dynamic, tmp_path):
    from deploylab.data.arrays import load_npz

    empty = tmp_path / "empty.npy"
    empty.touch()
    one_line_error(cli("run", lenet_ts_dynamic.path, "--input", empty), "empty.npy", "the file is empty")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(cli("run", lenet_ts_dynamic.path, "--input", pickled), "obj.npy", "not a readable .npy array")
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"PK\x03\x04" + os.urandom(200))  # a zip's magic, then noise
    with pytest.raises(DeployLabError, match="bad.npz.* is not a readable .npz archive"):
        load_npz(corrupt)
    r = cli("quantize", lenet_ts_dynamic.path, "--mode", "int8", "--calib-data", corrupt, "-o", tmp_path / "q.onnx")
    one_line_error(r, "bad.npz", "not a readable .npz archive")
    assert not (tmp_path / "q.onnx").exists()


def test_a_state_dict_with_an_int_key_is_refused(cli, tmp_path):
    import torch

    checkpoint = tmp_path / "ints.pt"
    torch.save({0: torch.zeros(3)}, checkpoint)
    one_line_error(cli("export", "lenet", "--checkpoint", checkpoint, "-o", tmp_path / "l.onnx"),
                   "ints.pt", "keys that are not parameter names")


@pytest.mark.parametrize("content", [b"[1, 2]", b"null", b"\xff\xfe not utf-8", "folder"])
def test_json_files_that_are_not_objects_are_refused(content, tmp_path):
    from deploylab.bench.results import SweepResults
    from deploylab.paths import read_json_object
    from deploylab.support import load_support_matrix

    path = tmp_path / "f.json"
    if content == "folder":
        path.mkdir()
    else:
        path.write_bytes(content)
    for read in (load_support_matrix, SweepResults.from_json, lambda p: read_json_object(p, "file", "fix it")):
        with pytest.raises(DeployLabError, match=r"f\.json") as err:
            read(path)
        assert "\n" not in str(err.value)


def test_a_damaged_build_record_means_rebuild(lenet_ts_dynamic, tmp_path):
    from deploylab.backends.build_record import record_path_for
    from deploylab.backends.openvino import build_openvino_ir

    xml = tmp_path / "m.xml"
    build_openvino_ir(lenet_ts_dynamic.path, xml)
    record = record_path_for(xml)
    for damage in (b"[]", b"null", b"\xff\xfe"):
        record.write_bytes(damage)
        report = build_openvino_ir(lenet_ts_dynamic.path, xml)
        assert not report.reused and json.loads(record.read_text())["format"] == "deploylab-openvino-ir/1"
    record.unlink()
    record.mkdir()  # a folder where the record goes: one line, the IR left as it was
    before = _digest(xml.with_suffix(".bin"))
    with pytest.raises(DeployLabError, match="is a folder"):
        build_openvino_ir(lenet_ts_dynamic.path, xml)
    assert _digest(xml.with_suffix(".bin")) == before


def test_run_prints_outputs_that_are_not_class_scores(cli, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    boolean = _save(tmp_path / "bool.onnx", [helper.make_node("Greater", ["x", "zero"], ["y"])], [x],
                    [helper.make_tensor_value_info("y", TensorProto.BOOL, [1, 4])],
                    [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    empty = _save(tmp_path / "empty.onnx", [helper.make_node("Slice", ["x", "s", "s", "axis"], ["y"])], [x],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 0])],
                  [helper.make_tensor("s", TensorProto.INT64, [1], [0]),
                   helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
    np.save(tmp_path / "x.npy", np.array([[1, -1, 2, -2]], np.float32))
    r = cli("run", boolean, "--input", tmp_path / "x.npy")
    assert r.code == 0 and "not a batch of class scores (bool)" in r.out and "[[ True False  True False]]" in r.out
    r = cli("run", empty, "--input", tmp_path / "x.npy")
    assert r.code == 0 and "y 1x0" in r.out and "not a batch of class scores" in r.out


def test_run_on_a_model_without_inputs_is_one_line(cli, tmp_path):
    const = helper.make_node("Constant", [], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1, 2], [1, 2]))
    model = _save(tmp_path / "const.onnx", [const], [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    np.save(tmp_path / "x.npy", np.zeros((1, 2), np.float32))
    one_line_error(cli("run", model, "--input", tmp_path / "x.npy"), "const.onnx", "has 0 inputs")


def test_inspect_draw_needs_an_image_extension(cli, lenet_ts_dynamic, tmp_path):
    r = cli("inspect", lenet_ts_dynamic.path, "--draw", tmp_path / "g.txt")
    one_line_error(r, "g.txt", ".png")
    assert not (tmp_path / "g.txt").exists()
    assert cli("inspect", lenet_ts_dynamic.path, "--draw", tmp_path / "g.svg").code == 0
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")


def test_a_huge_example_input_is_refused_before_allocating(cli, tmp_path):
    one_line_error(cli("export", "lenet", "-o", tmp_path / "l.onnx", "--input-shape", "99999999x1x32x32"),
                   "99999999x1x32x32", "at most 8 dims and 268,435,456 elements")
    one_line_error(cli("export", "lenet", "-o", tmp_path / "l.onnx", "--input-shape", "1x1x1x1x1x1x1x1x1"),
                   "9 dims")


# ---------------------------------------------------------------- outputs: whole or not at all
@pytest.mark.parametrize("argv, limit, said", [
    (["export", "lenet", "--exporter", "torchscript", "-o", "OUT.onnx"], 60_000, "File too large"),
    (["quantize", "MODEL", "--mode", "fp16", "-o", "OUT.onnx"], 40_000, "File too large"),
    (["build", "MODEL", "--backend", "openvino", "-o", "OUT.xml"], 60_000, "has space"),  # OpenVINO: no errno
    (["train-lenet", "--epochs", "1", "-o", "OUT.pt"], 60_000, "has space"),  # torch.save: no errno either
], ids=["export", "quantize", "build", "train-lenet"])
def test_a_full_disk_leaves_the_previous_output(argv, limit, said, lenet_ts_dynamic, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    model = _copy(lenet_ts_dynamic.path, work / "m.onnx")
    out = work / next(a for a in argv if a.startswith("OUT")).replace("OUT", "out")
    out.write_text("the user's file")
    if out.suffix == ".xml":
        out.with_suffix(".bin").write_text("the user's weights")
    before = _listing(work)
    argv = [str(model) if a == "MODEL" else str(out) if a.startswith("OUT") else a for a in argv]
    _one_line(_run_limited(argv, limit), "cannot write", out.name, said)
    assert _listing(work) == before  # nothing replaced, nothing half-written left behind


def test_bench_out_on_a_full_disk_and_beside_a_users_csv(lenet_ts_dynamic, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    before = _listing(tmp_path)
    r = _run_limited(["bench", lenet_ts_dynamic.path, "--batch", "1", "--repeats", "2", "--out", out], 2_000)
    _one_line(r, "cannot write", "r.json")
    assert _listing(tmp_path) == before


def test_bench_does_not_replace_a_csv_it_did_not_write(cli, lenet_ts_dynamic, tmp_path):
    mine = tmp_path / "r.csv"
    mine.write_text("name,score\nalice,3\n")
    r = cli("bench", lenet_ts_dynamic.path, "--batch", "1", "--repeats", "2", "--out", tmp_path / "r.json")
    one_line_error(r, "r.csv", "not written by deploylab bench")
    assert mine.read_text() == "name,score\nalice,3\n" and not (tmp_path / "r.json").exists()
    mine.unlink()
    for _ in range(2):  # its own CSV it replaces, and says so before writing
        r = cli("bench", lenet_ts_dynamic.path, "--batch", "1", "--repeats", "2", "--out", tmp_path / "r.json")
        assert r.code == 0 and f"writing {tmp_path / 'r.json'} and {mine}" in r.out
    one_line_error(cli("bench", lenet_ts_dynamic.path, "--out", tmp_path / "r.csv"), "must end in .json")


def test_an_output_that_is_a_folder_or_under_a_file_is_one_line(cli, lenet_ts_dynamic, tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    one_line_error(cli("export", "lenet", "-o", folder), "is a folder")
    (tmp_path / "dir.onnx").mkdir()
    one_line_error(cli("quantize", lenet_ts_dynamic.path, "--mode", "fp16", "-o", tmp_path / "dir.onnx"), "is a folder")
    (tmp_path / "ir.xml").mkdir()
    one_line_error(cli("build", lenet_ts_dynamic.path, "--backend", "openvino", "-o", tmp_path / "ir.xml"), "is a folder")
    note = tmp_path / "note.txt"
    note.write_text("x")
    for argv in (["export", "lenet", "-o", note / "l.onnx"],
                 ["build", lenet_ts_dynamic.path, "--backend", "openvino", "-o", note / "m.xml"],
                 ["bench", lenet_ts_dynamic.path, "--out", note / "r.json"]):
        one_line_error(cli(*argv), "is a file, not a folder")
    assert note.read_text() == "x"


def test_fp16_of_a_model_the_checker_rejects_writes_nothing(cli, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    twice = _save(tmp_path / "ssa.onnx", [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])],
                  [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    out = tmp_path / "out.onnx"
    out.write_text("the user's file")
    before = _listing(tmp_path)
    one_line_error(cli("quantize", twice, "--mode", "fp16", "-o", out), "out.onnx", "fails onnx.checker",
                   "not written")
    assert _listing(tmp_path) == before


def test_build_records_never_take_a_users_file_name(cli, lenet_ts_dynamic, tmp_path):
    users = tmp_path / "results.json"
    users.write_text('{"accuracy": 0.99}')
    r = cli("build", lenet_ts_dynamic.path, "--backend", "openvino", "-o", tmp_path / "results.xml")
    assert r.code == 0, r.err
    assert users.read_text() == '{"accuracy": 0.99}'
    assert (tmp_path / "results.xml.deploylab.json").is_file()


def test_concurrent_builds_leave_one_complete_ir(lenet_ts_dynamic, tmp_path):
    import openvino as ov

    from deploylab.backends.build_record import record_path_for
    from deploylab.backends.openvino import OpenVinoRunner

    xml = tmp_path / "m.xml"
    feed = {"input": np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)}
    expected = OpenVinoRunner(lenet_ts_dynamic.path).infer(feed)["output"]
    for trial in range(3):
        procs = [subprocess.Popen(CLI + ["build", str(lenet_ts_dynamic.path), "--backend", "openvino", "-o", str(xml),
                                         "--rebuild"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert all(code == 0 for code, _ in results), results
        record = json.loads(record_path_for(xml).read_text())
        for kind, path in (("xml", xml), ("bin", xml.with_suffix(".bin"))):
            assert record["ir_files"][kind] == {"bytes": path.stat().st_size, "sha256": _digest(path)}, trial
        ov.Core().read_model(str(xml))
        np.testing.assert_array_equal(OpenVinoRunner(xml).infer(feed)["output"], expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "m.xml.deploylab.json"]


def test_sigterm_during_quantize_cleans_up_like_ctrl_c(lenet_ts_dynamic, tmp_path):
    temp, work = tmp_path / "tmp", tmp_path / "work"
    temp.mkdir()
    work.mkdir()
    out = work / "q.onnx"
    out.write_text("the user's file")
    env = {**os.environ, "TMPDIR": str(temp)}
    proc = subprocess.Popen(CLI + ["quantize", str(lenet_ts_dynamic.path), "--mode", "int8", "--calib-method",
                                   "entropy", "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(temp.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "quantize ended before it made its temporary folder"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 128 + signal.SIGTERM and "deploylab: terminated" in err and "Traceback" not in err, err
    assert list(temp.iterdir()) == [] and out.read_text() == "the user's file"
    assert sorted(p.name for p in work.iterdir()) == ["q.onnx"]


# ---------------------------------------------------------------- offline and private
_AUDIT = textwrap.dedent("""
    import ipaddress, json, multiprocessing, os, sys
    LOG = sys.argv[2]
    def host_of(event, args):
        if event in ("socket.getaddrinfo", "urllib.Request"):
            return str(args[0])
        if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
            return str(args[1][0])
    def audit(event, args):  # also runs in the processes the engines fork to send from
        host = host_of(event, args)
        if host is None or host in ("localhost", "") or host.startswith("/"):
            return
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
        with open(LOG, "a") as log:
            log.write(f"{event} {host}\\n")
    sys.addaudithook(audit)
    from deploylab.cli import main
    for argv in json.loads(sys.argv[1]):
        assert main(argv) == 0, argv
    for child in multiprocessing.active_children():
        child.join(timeout=30)
""")


def _audited(commands, home: Path, **env) -> list[str]:
    """Every non-loopback host the commands looked up or reached, with HOME=home."""
    log = home.parent / f"{home.name}.audit"
    log.touch()
    # as a user's shell has it: without the CI markers the telemetry package also honours (CI runs
    # with CI=true, which alone would silence it), so that deploylab's own switch is what is tested
    markers = ("TF_BUILD", "NNCF_CI", "NNCF_DEV", "CI", "JENKINS_URL")
    clean = {k: v for k, v in os.environ.items() if k not in markers}
    r = subprocess.run([sys.executable, "-c", _AUDIT, json.dumps(commands), str(log)], capture_output=True,
                       text=True, timeout=600, env={**clean, "HOME": str(home), **env})
    assert r.returncode == 0, r.stderr[-3000:]
    return log.read_text().splitlines()


def test_no_engine_telemetry_leaves_the_machine(lenet_ts_dynamic, tmp_path):
    commands = [["env"],
                ["build", str(lenet_ts_dynamic.path), "--backend", "openvino", "-o", str(tmp_path / "m.xml")],
                ["quantize", str(lenet_ts_dynamic.path), "--mode", "int8", "--backend", "openvino",
                 "--num-samples", "16", "-o", str(tmp_path / "q.xml")]]
    home = tmp_path / "home"
    home.mkdir()
    assert _audited(commands, home) == []
    assert not (home / "intel").exists()
    # The audit can fail: with deploylab's switch off, the engines look up their analytics host.
    control = tmp_path / "control"
    control.mkdir()
    seen = _audited(commands[1:2], control, DEPLOYLAB_ENGINE_TELEMETRY="1")
    assert any("google-analytics" in s for s in seen), seen
    assert (control / "intel").is_dir()
