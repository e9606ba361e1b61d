"""deploylab serve on a real Ray Serve app on loopback: answers, batching, bad requests, overload,
refusals at start, graceful shutdown; the request reader and load tester on their own."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter

import numpy as np
import pytest

from deploylab.errors import DeployLabError
from deploylab.serve.app import free_port
from deploylab.serve.loadtest import parse_url, run_level
from deploylab.serve.requests import BadRequest, RequestReader, answer, serving_batch, stack_batch

CAT = "chelsea_cat.jpg"


def _call(port, path="/predict", body=b"", method="POST", content_type="image/jpeg", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(method, path, body=body, headers={"Content-Type": content_type, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


@pytest.fixture(scope="module")
def photo(sample_photos):
    return next(p for p in sample_photos if p.name == CAT)


@pytest.fixture(scope="module")
def server(ray_instance, efficientnet_onnx):
    from deploylab.serve.app import ServeConfig, Server

    config = ServeConfig(str(efficientnet_onnx), max_batch=8, batch_wait_ms=20, port=free_port(),
                         max_ongoing=16, max_queued=64, max_body_bytes=4 * 2**20)
    server = Server(config, keep_ray=True).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- the request reader, no Ray
def test_reader_refuses_each_bad_body_with_its_status(efficientnet_runner):
    from deploylab.serve.requests import preprocessing_for_model

    spec = efficientnet_runner.inputs[0]
    prep, _ = preprocessing_for_model(efficientnet_runner.model_path, spec)
    reader = RequestReader(spec, prep, max_body_bytes=1000)
    cases = {
        413: b"x" * 1001,
        400: b"{not json",
        415: b"GIF89a but not really an image",
    }
    for status, body in cases.items():
        with pytest.raises(BadRequest) as caught:
            reader.read(body)
        assert caught.value.status == status
    big = RequestReader(spec, prep)
    sample = np.zeros((3, 224, 224))
    for status, payload in [
        (422, {"array": [1, 2, 3]}),  # wrong shape
        (422, {"array": sample.ravel().tolist(), "shape": [3, 224, 225]}),  # shape does not fit the values
        (422, {"array": sample.tolist(), "dtype": "float16"}),  # wrong dtype
        (422, {"array": np.full((3, 224, 224), np.nan).tolist()}),  # NaN
        (400, [1, 2, 3]),  # not an object
    ]:
        with pytest.raises(BadRequest) as caught:
            big.read(json.dumps(payload).encode(), "application/json")
        assert caught.value.status == status, payload.get("dtype") if isinstance(payload, dict) else payload
    ok = big.read(json.dumps({"array": sample.ravel().tolist(), "shape": [1, 3, 224, 224]}).encode())
    assert ok.shape == (3, 224, 224) and ok.dtype == np.float32


def test_serving_batch_refuses_sizes_the_engine_was_not_built_for(lenet_ir, lenet_ts11):
    from deploylab.backends.registry import make_runner

    ir = make_runner("openvino", lenet_ir)  # built for batch 1..16
    assert serving_batch(ir, 16) == 1
    with pytest.raises(DeployLabError, match=r"batch sizes 1 to 16.*--max-batch 32.*--max-batch 16 or less"):
        serving_batch(ir, 32)
    fixed = make_runner("onnxruntime", lenet_ts11.path)  # batch fixed at 1
    assert serving_batch(fixed, 1) == 1
    with pytest.raises(DeployLabError, match=r"fixed batch of 1.*--max-batch 2"):
        serving_batch(fixed, 2)
    padded = stack_batch([np.ones(3), 2 * np.ones(3)], 4)
    assert padded.shape == (4, 3) and (padded[2:] == 2).all()


def test_answer_ranks_probabilities_and_names_classes():
    scores = np.array([0.0, 3.0, 1.0, 2.0])
    result = answer(scores, ["a", "b", "c", "d"], 2, batch_size=5)
    assert [r["class"] for r in result["top_k"]] == ["b", "d"] and result["batch_size"] == 5
    assert result["top_k"][0]["score"] == pytest.approx(np.exp(3) / np.exp([0, 3, 1, 2]).sum(), rel=1e-5)


def test_server_refuses_at_start_a_batch_the_ir_cannot_take(lenet_ir):
    from deploylab.serve.app import ServeConfig, Server

    with pytest.raises(DeployLabError, match="cannot be served at --max-batch 64"):
        Server(ServeConfig(str(lenet_ir), max_batch=64, port=free_port())).start()


def test_load_test_counts_a_refused_connection_as_lost():
    port = free_port()  # nothing listens there
    result = run_level(f"http://127.0.0.1:{port}", b"x", "image/jpeg", concurrency=2, seconds=0.3)
    assert result.ok == 0 and result.lost >= 2 and result.sent == result.lost
    with pytest.raises(DeployLabError, match="must be http://"):
        parse_url("https://example.com")


# ---------------------------------------------------------------- a real server
def test_health_and_prediction_match_the_runner_called_directly(server, photo, efficientnet_runner):
    from deploylab.onnx_tools import preprocessing_for_artifact
    from deploylab.postprocess import top_k

    status, _, body = _call(server.config.port, "/health", method="GET")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ready" and health["images"] and health["max_batch"] == 8
    status, _, body = _call(server.config.port, body=photo.read_bytes())
    assert status == 200
    served = json.loads(body)
    prep, _ = preprocessing_for_artifact(efficientnet_runner.model_path)
    direct = efficientnet_runner.infer({"input": prep.batch([photo])})["output"]
    expected = top_k(direct, 5)[0]
    assert [r["index"] for r in served["top_k"]] == [p.index for p in expected]
    assert [r["score"] for r in served["top_k"]] == pytest.approx([p.probability for p in expected], abs=1e-4)
    assert "cat" in served["top_k"][0]["class"]
    # the same input as a preprocessed JSON array gives the same answer
    array = prep.batch([photo])[0]
    status, _, body = _call(server.config.port, body=json.dumps({"array": array.ravel().tolist(),
                                                                 "shape": list(array.shape)}).encode(),
                            content_type="application/json")
    assert status == 200 and json.loads(body)["top_k"] == served["top_k"]


def test_bad_requests_get_4xx_and_the_replica_keeps_serving(server, photo):
    port = server.config.port
    cases = [
        (415, dict(body=b"not an image at all")),
        (400, dict(body=b"{broken json", content_type="application/json")),
        (422, dict(body=json.dumps({"array": [1.0, 2.0]}).encode(), content_type="application/json")),
        (413, dict(body=b"\xff" * (4 * 2**20 + 1))),
        (405, dict(path="/predict", method="GET")),
        (404, dict(path="/nowhere", body=b"x")),
    ]
    for status, kwargs in cases:
        got, _, body = _call(port, **kwargs)
        assert got == status, (status, body)
        reason = json.loads(body)["error"]
        assert reason and "\n" not in reason
    assert _call(port, body=photo.read_bytes())[0] == 200
    assert _call(port, "/health", method="GET")[0] == 200


def test_concurrent_requests_are_batched_and_each_answered_once(server, photo):
    result = run_level(server.predict_url, photo.read_bytes(), "image/jpeg", concurrency=12, seconds=3)
    assert result.lost == 0 and set(result.statuses) == {200}
    assert result.ok == result.sent == len(result.latencies_ms)
    assert max(result.batch_sizes) > 1, result.batch_sizes  # the server formed real batches
    assert max(result.batch_sizes) <= 8


def test_shutdown_drains_in_flight_requests(server, photo):
    """The module's server is stopped while 48 requests are in flight (six batches of 8): every one is
    answered (none cut off): 200 for those a replica held, some of them after the stop began, 503 +
    Retry-After for those still queued; the port is closed after."""
    port, body, clients = server.config.port, photo.read_bytes(), 48
    answers, started = [], threading.Barrier(clients + 1)

    def one():
        started.wait()
        try:
            status = _call(port, body=body)[0]
        except OSError as exc:
            status = type(exc).__name__
        answers.append((status, time.perf_counter()))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.1)  # the requests have reached the server; the first batch is computing
    stop_began = time.perf_counter()
    server.stop()
    for thread in threads:
        thread.join(timeout=60)
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 503} and sum(statuses.values()) == clients, statuses
    assert any(status == 200 and t > stop_began for status, t in answers), "the drain was not exercised"
    assert any(t > stop_began for _, t in answers), "all answered before the stop: the drain was not exercised"
    with pytest.raises(OSError):
        _call(port, "/health", method="GET")


def test_overload_answers_503_with_retry_after_and_loses_nothing(server, efficientnet_onnx, photo):
    """Tight limits, 24 clients, on a server of its own (one Serve app per Ray instance: the module's
    server is stopped first)."""
    server.stop()
    from deploylab.serve.app import ServeConfig, Server

    config = ServeConfig(str(efficientnet_onnx), max_batch=2, batch_wait_ms=0, port=free_port(),
                         max_ongoing=2, max_queued=2, retry_after_s=2)
    with Server(config, keep_ray=True) as server:
        result = run_level(server.predict_url, photo.read_bytes(), "image/jpeg", concurrency=24, seconds=3)
        assert result.lost == 0
        assert set(result.statuses) <= {200, 503} and result.statuses[503] > 0 and result.ok > 0
        assert result.retry_after == {"2"}
        assert _call(server.config.port, "/health", method="GET")[0] == 200  # alive after


def test_more_replica_threads_than_cpus_are_refused(server, ray_instance, efficientnet_onnx):
    from deploylab.serve.app import ServeConfig, Server

    server.stop()  # one Serve app per Ray instance

    cpus = int(ray_instance.cluster_resources()["CPU"])
    config = ServeConfig(str(efficientnet_onnx), replicas=2, threads=cpus, port=free_port())
    with pytest.raises(DeployLabError, match=rf"2 replicas x {cpus} threads need {2 * cpus} CPUs"):
        Server(config, keep_ray=True).start()


def test_a_server_that_never_had_a_request_stops_at_once(server, efficientnet_onnx):
    """Its replica reports to the gate from its constructor on: the drain does not wait its 30 s."""
    from deploylab.serve.app import DRAIN_SECONDS, ServeConfig, Server

    server.stop()  # the module's: one Serve app per Ray instance
    idle = Server(ServeConfig(str(efficientnet_onnx), port=free_port()), keep_ray=True).start()
    began = time.perf_counter()
    idle.stop()
    assert time.perf_counter() - began < DRAIN_SECONDS / 3


def test_reader_refuses_nesting_and_casts_images_to_the_input_dtype(efficientnet_runner, photo):
    from dataclasses import replace

    from deploylab.serve.requests import preprocessing_for_model

    spec = efficientnet_runner.inputs[0]
    prep, _ = preprocessing_for_model(efficientnet_runner.model_path, spec)
    with pytest.raises(BadRequest) as caught:
        RequestReader(spec, prep).read(b"[" * 200_000, "application/json")
    assert caught.value.status == 400
    half = RequestReader(replace(spec, dtype=np.dtype(np.float16)), prep)
    assert half.read(photo.read_bytes()).dtype == np.float16
