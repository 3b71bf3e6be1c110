"""`edgetune serve` on a real Triton (PyTriton), on loopback, from the torch-free serving
environment: 100 requests through tritonclient give runtime.predict's top-1, malformed ones get
an error and leave the server ready, SIGTERM drains and exits 0; bad input is one line."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from edgetune import runtime
from edgetune.serve.child import start
from tests.support.cli import assert_user_error, edgetune
from tests.support.serving import serve_python

NAME = "shop"


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """The tiny bundle served under the name 'shop', and ten real images of varied sizes and modes."""
    root = tmp_path_factory.mktemp("serve")
    images = list(tiny.images)
    rng = np.random.default_rng(3)
    for i in range(7):
        h, w = rng.integers(20, 90, 2)
        path = root / f"extra{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        images.append(path)
    server = start(serve_python(), tiny.bundle, root / "serve.log", NAME, "--max-batch", "8")
    try:
        server.wait_ready()
        yield server, images
    finally:
        server.stop()


def image_input(*blobs: bytes) -> grpcclient.InferInput:
    i = grpcclient.InferInput("image", [len(blobs), 1], "BYTES")
    i.set_data_from_numpy(np.array([[b] for b in blobs], dtype=object))
    return i


def tensor_input(batch: np.ndarray, dtype: str = "FP32") -> grpcclient.InferInput:
    i = grpcclient.InferInput("input", list(batch.shape), dtype)
    i.set_data_from_numpy(batch)
    return i


def test_a_hundred_requests_give_the_runtimes_top1(served, tiny):
    server, images = served
    expected = [top[0][0] for top in runtime.load(tiny.bundle).predict(images, topk=1)]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
    got = []
    for k in range(100):
        result = client.infer(f"{NAME}_images", [image_input(images[k % len(images)].read_bytes())])
        got.append(result.as_numpy("label")[0, 0].decode())
    assert got == [expected[k % len(images)] for k in range(100)]
    # the tensor model, behind the dynamic batcher: the same logits as the runtime on the same batch
    model = runtime.load(tiny.bundle)
    batch = model.preprocess.batch(images[:8])
    logits = client.infer(NAME, [tensor_input(batch)]).as_numpy("logits")
    np.testing.assert_allclose(logits, model.run(batch), rtol=1e-5, atol=1e-5)


def test_malformed_requests_are_answered_with_errors_and_the_server_stays_ready(served, tiny):
    server, images = served
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
    bad = [
        ("undecodable image", lambda: client.infer(f"{NAME}_images", [image_input(b"\x89PNG not really")]),
         "cannot decode the image"),
        ("wrong shape", lambda: client.infer(NAME, [tensor_input(np.zeros((1, 3, 16, 16), np.float32))]),
         "unexpected shape"),
        ("wrong dtype", lambda: client.infer(NAME, [tensor_input(np.zeros((1, 3, 32, 32)), "FP64")]), "FP64"),
        ("batch over --max-batch", lambda: client.infer(NAME, [tensor_input(np.zeros((9, 3, 32, 32), np.float32))]),
         "batch-size must be <= 8"),
    ]
    for what, call, needle in bad:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert needle in str(caught.value), (what, str(caught.value)[:500])
    assert client.is_server_ready() and client.is_model_ready(f"{NAME}_images")
    label = client.infer(f"{NAME}_images", [image_input(images[0].read_bytes())]).as_numpy("label")
    assert label.shape == (1, 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert f'nv_inference_request_failure{{model="{NAME}_images"' in metrics  # Prometheus saw the failures


def test_sigterm_drains_and_exits_cleanly(served):
    server, _ = served
    assert server.stop() == 0
    log = server.log.read_text()
    assert f"HTTP http://127.0.0.1:{server.http}" in log and "curl -f" in log and "tritonclient" in log
    assert log.rstrip().endswith("edgetune serve: stopped")
    for port in (server.http, server.grpc, server.metrics):  # Triton is gone, not orphaned
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_bad_input_is_one_line(tiny):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_user_error(edgetune("serve", tiny.bundle, "--grpc-port", port), f"--grpc-port {port}", "in use")
    # this (training) environment has no PyTriton: the extra is named
    assert_user_error(edgetune("serve", tiny.bundle, "--http-port", "0"), "--http-port '0' is not allowed")
    assert_user_error(edgetune("serve", tiny.bundle, "--http-port", "18555", "--grpc-port", "18555"), "must differ")
    assert_user_error(edgetune("serve", tiny.bundle, "--http-port", "18555", "--grpc-port", "18556",
                               "--metrics-port", "18557"), "pip install 'edgetune[serve]'")
