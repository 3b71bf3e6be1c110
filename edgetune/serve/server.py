"""`edgetune serve`: the bundle's recommended CPU artifact behind Triton Inference Server.

Triton comes from PyTriton (`pip install 'edgetune[serve]'`): its binary with the Python
backend, whose model calls back into this process, where the torch-free runtime runs the
bundle. Two models: NAME takes float32 NCHW tensors behind Triton's dynamic batcher; NAME_images
takes encoded images (infer.py says why it is not batched). Triton gives the rest: readiness and
health (/v2/health/ready, /v2/models/NAME/ready), Prometheus metrics, HTTP and gRPC, and an error
response for a wrong shape or dtype before our code sees it.

Safe by default: every port listens on loopback unless `host` says otherwise, a port in use is a
one-line error before Triton starts, images are bounded in bytes and pixels
(edgetune.preprocess.decode_image) and a request in batch size, and nothing a request carries is
read as a file name. SIGTERM stops it like Ctrl-C: Triton finishes what is in flight (up to
EXIT_TIMEOUT_S), then exits.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.bundle import serving_name
from edgetune.errors import ConfigError, MissingDependencyError, require
from edgetune.serve import infer, libpython

EXIT_TIMEOUT_S = 10  # in-flight requests finish within this after SIGTERM or Ctrl-C
QUEUE_DELAY_US = 500  # the most the batcher holds a lone request back, waiting for company
MONITOR_S = 1.0  # how often the serving loop checks that Triton and the model are alive


@dataclass(frozen=True)
class Endpoints:
    host: str
    http: int
    grpc: int
    metrics: int

    def _at(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self._at(self.http)}"

    @property
    def grpc_target(self) -> str:
        return self._at(self.grpc)

    @property
    def metrics_url(self) -> str:
        return f"http://{self._at(self.metrics)}/metrics"


def check_ports(endpoints: Endpoints) -> None:
    """One line for a port that is out of range, repeated, or already in use on the host."""
    ports = {"--http-port": endpoints.http, "--grpc-port": endpoints.grpc, "--metrics-port": endpoints.metrics}
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} {port} is not a port (1-65535)")
    if len(set(ports.values())) < 3:
        raise ConfigError("--http-port, --grpc-port and --metrics-port must differ, got "
                          + ", ".join(map(str, ports.values())))
    for flag, port in ports.items():
        family = socket.AF_INET6 if ":" in endpoints.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton binds: TIME_WAIT is no conflict
            try:
                s.bind((endpoints.host, port))
            except OSError as exc:
                raise ConfigError(f"{flag} {port}: cannot listen on {endpoints.host}:{port} ({exc.strerror}); "
                                  f"stop what holds it (ss -ltnp | grep :{port}) or pass another {flag}") from None


def require_triton() -> None:
    """PyTriton is installed and can embed this interpreter; else one line saying what to do."""
    require("pytriton", "serve", "edgetune serve")
    ok, why = libpython.check()
    if not ok:
        raise MissingDependencyError(f"edgetune serve: {why}")
    import pytriton

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = Path(pytriton.__file__).parent / "tritonserver" / "python_backend_stubs" / version
    if not stub.is_dir():
        raise MissingDependencyError(f"edgetune serve: this PyTriton has no Python-backend stub for Python "
                                     f"{version}; run it from one of Python "
                                     + ", ".join(sorted(p.name for p in stub.parent.iterdir())))


def serve(bundle: str | Path, endpoints: Endpoints, name: str | None = None, max_batch: int = 32,
          instances: int = 1, threads: int | None = None, log=print) -> int:
    """Serve until SIGTERM or Ctrl-C; returns the exit code."""
    from edgetune import runtime

    name = serving_name(bundle, name)
    if max_batch < 1 or instances < 1:
        raise ConfigError(f"--max-batch {max_batch} and --instances {instances} must be at least 1")
    check_ports(endpoints)
    model = runtime.load(bundle, backend="onnxruntime", device="cpu", threads=threads)
    require_triton()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    logging.getLogger("pytriton").setLevel(logging.ERROR)  # one warning with a traceback per bad request
    h, w = model.preprocess.size
    classes = len(model.classes)

    @batch
    def tensors(**inputs):
        return infer.classify_tensors(model, inputs[infer.TENSOR_INPUT])

    @batch
    def images(**inputs):
        return infer.classify_images(model, inputs[infer.IMAGE])

    preferred = [b for b in (4, 8, 16, 32, 64) if b <= max_batch][-2:] or [max_batch]
    with tempfile.TemporaryDirectory(prefix="edgetune-serve-") as pin:
        libpython.pin(pin)
        config = TritonConfig(
            http_address=endpoints.host, http_port=endpoints.http, grpc_address=endpoints.host,
            grpc_port=endpoints.grpc, metrics_address=endpoints.host, metrics_port=endpoints.metrics,
            allow_metrics=True, allow_gpu_metrics=False, allow_cpu_metrics=True, exit_timeout_secs=EXIT_TIMEOUT_S,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM drains like Ctrl-C
        with Triton(config=config) as triton:
            triton.bind(name, [tensors] * instances,
                        inputs=[Tensor(name=infer.TENSOR_INPUT, dtype=np.float32, shape=(3, h, w))],
                        outputs=[Tensor(name=infer.LOGITS, dtype=np.float32, shape=(classes,))],
                        config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                            max_queue_delay_microseconds=QUEUE_DELAY_US, preferred_batch_size=preferred)),
                        strict=True)
            triton.bind(f"{name}_images", [images] * instances,
                        inputs=[Tensor(name=infer.IMAGE, dtype=bytes, shape=(1,))],
                        outputs=[Tensor(name=infer.LABEL, dtype=bytes, shape=(1,)),
                                 Tensor(name=infer.SCORE, dtype=np.float32, shape=(1,)),
                                 Tensor(name=infer.LOGITS, dtype=np.float32, shape=(classes,))],
                        config=ModelConfig(max_batch_size=max_batch, batcher=None), strict=True)
            triton.run()
            for line in announce(bundle, model, name, endpoints):
                log(line)
            try:
                triton.serve(monitoring_period_s=MONITOR_S)
            except KeyboardInterrupt:
                pass
    log("edgetune serve: stopped")
    return 0


def announce(bundle, model, name: str, endpoints: Endpoints) -> list[str]:
    """What the log says once the models are ready: where, what, and how to call it."""
    h, w = model.preprocess.size
    grpc = endpoints.grpc_target
    return [
        f"edgetune serve: {model.artifact.file} ({model.artifact.precision}, {model.backend}/{model.device}) "
        f"of {bundle}",
        f"  {name}: float32 input [N, 3, {h}, {w}] -> logits, dynamic batching; "
        f"{name}_images: encoded images [N, 1] -> label, score, logits",
        f"  HTTP {endpoints.url}  gRPC {grpc}  metrics {endpoints.metrics_url}",
        f"  ready?  curl -f {endpoints.url}/v2/models/{name}_images/ready   (live: {endpoints.url}/v2/health/live)",
        f"  python: c = tritonclient.grpc.InferenceServerClient('{grpc}'); "
        f"i = tritonclient.grpc.InferInput('{infer.IMAGE}', [1, 1], 'BYTES'); "
        f"i.set_data_from_numpy(np.array([[open('cat.jpg', 'rb').read()]], dtype=object)); "
        f"c.infer('{name}_images', [i]).as_numpy('{infer.LABEL}')",
        "  stop with Ctrl-C or SIGTERM",
    ]
