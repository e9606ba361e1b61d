"""The serving commands from the command line: bad input is one line and exit 2; `deploylab serve`
runs as a user runs it (its own process and Ray), answers, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

from deploylab.serve.app import free_port
from tests.conftest import one_line_error


def test_serve_refuses_a_missing_model_and_a_batch_beyond_the_bound(cli, lenet_ir, tmp_path):
    result = cli("serve", str(tmp_path / "nothing.onnx"))
    assert result.code == 2
    one_line_error(result, "nothing.onnx", "does not exist")
    result = cli("serve", str(lenet_ir), "--max-batch", "64")
    assert result.code == 2
    one_line_error(result, "batch sizes 1 to 16", "--max-batch 16 or less")


def test_load_test_bad_url_and_nothing_listening(cli, sample_photos):
    result = cli("load-test", "https://example.com", "--input", str(sample_photos[0]))
    assert result.code == 2
    one_line_error(result, "https://example.com", "http://")
    result = cli("load-test", f"http://127.0.0.1:{free_port()}", "--input", str(sample_photos[0]),
                 "--concurrency", "1", "--seconds", "0.3")
    assert result.code == 1 and "lost" in result.out and "is the server running" in result.err


def test_triton_repo_writes_once_and_never_replaces(cli, lenet_ts_dynamic, tmp_path):
    repo = tmp_path / "repo"
    result = cli("triton-repo", str(lenet_ts_dynamic.path), "-o", str(repo), "--max-batch", "8",
                 "--preferred-batch", "2,4", "--instances", "2")
    assert result.code == 0, result.err
    config = next(repo.glob("*/config.pbtxt"))
    assert "max_batch_size: 8" in config.read_text() and "docker run" in result.out
    before = config.read_bytes()
    again = cli("triton-repo", str(lenet_ts_dynamic.path), "-o", str(repo))
    assert again.code == 2
    one_line_error(again, "already exists")
    assert config.read_bytes() == before
    too_big = cli("triton-repo", str(lenet_ts_dynamic.path), "-o", str(tmp_path / "r2"), "--max-batch", "8",
                  "--preferred-batch", "16")
    assert too_big.code == 2 and not (tmp_path / "r2").exists()


def test_batch_infer_refuses_a_pattern_that_matches_nothing(cli, efficientnet_onnx, tmp_path):
    result = cli("batch-infer", str(efficientnet_onnx), "--input", str(tmp_path / "*.jpg"),
                 "--output", str(tmp_path / "out.parquet"))
    assert result.code == 2
    one_line_error(result, "*.jpg")
    assert not (tmp_path / "out.parquet").exists()


def _get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_serve_command_answers_and_stops_cleanly_on_ctrl_c(efficientnet_onnx, sample_photos):
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "deploylab.cli", "serve", str(efficientnet_onnx), "--port",
                                str(port), "--max-batch", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        lines, deadline = [], time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C stops it"):
                break
        assert any(f"serving at http://127.0.0.1:{port}" in line for line in lines), lines
        assert any("curl --data-binary" in line for line in lines)
        status, health = _get(port, "/health")
        assert status == 200 and health["max_batch"] == 4
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "stopped" in err and "Traceback" not in err
    try:
        _get(port, "/health")
        raise AssertionError("the port still answers after the server stopped")
    except OSError:
        pass


def test_load_test_and_serve_refuse_bad_values_in_one_line(cli, efficientnet_onnx, tmp_path):
    result = cli("load-test", "http://127.0.0.1:9", "--input", str(tmp_path / "missing.jpg"))
    one_line_error(result, "missing.jpg", "does not exist")
    result = cli("serve", str(efficientnet_onnx), "--max-body-mb", "nan")
    one_line_error(result, "--max-body-mb", "nan")
    result = cli("serve", str(efficientnet_onnx), "--threads", "0")
    one_line_error(result, "threads", "positive integer")
