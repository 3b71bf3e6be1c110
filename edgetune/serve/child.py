"""`edgetune serve` as a child process, for tests, benchmarks and users' own harnesses: started
in its own process group on free loopback ports, waited on until both models are ready, and
stopped the way a supervisor stops it (SIGTERM; SIGKILL to the whole group, Triton included,
as a container runtime kills a container). Torch-free, standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 120  # a cold start on a loaded 2-core machine: Triton, two Python-backend stubs


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on loopback now (the kernel's pick; held together, so distinct)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Server:
    process: subprocess.Popen
    http: int
    grpc: int
    metrics: int
    log: Path
    name: str  # the served model's name; NAME_images loads last

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def ready(self) -> bool:
        """Both models loaded. PyTriton loads them one by one after Triton starts, so the server's
        own /v2/health/ready may answer before the second one is."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/models/{self.name}_images/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"edgetune serve exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            if self.ready():
                return
            time.sleep(0.3)
        raise TimeoutError(f"edgetune serve not ready after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a supervisor sends it; SIGKILL to the whole group if it does not end in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to edgetune serve and Triton together, as a container runtime kills a container."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)


def start(python: Path, bundle: Path, log: Path, name: str, *args, ports: list[int] | None = None) -> Server:
    """`edgetune serve BUNDLE --name NAME ARGS…` in its own process group; returns at once (see wait_ready)."""
    http, grpc, metrics = ports or free_ports(3)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(python), "-m", "edgetune.cli", "serve", str(bundle), "--http-port", str(http), "--grpc-port",
             str(grpc), "--metrics-port", str(metrics), "--name", name, *map(str, args)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(process, http, grpc, metrics, log, name)
