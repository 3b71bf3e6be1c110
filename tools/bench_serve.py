#!/usr/bin/env python
"""`edgetune serve` under load and faults, on loopback only, every loop bounded in count and time.

    python tools/bench_serve.py runs/demo                     # the table BENCHMARKS.md shows
    python tools/bench_serve.py runs/demo --seconds 5 --json serve.json

Run from the training venv (it has tritonclient); the server runs from the serving environment
(.venv-serve, `make serve-env`; --serve-python names another). Four parts:
1. latency p50/p99 and images/s at concurrency 1, 4 and 16 through tritonclient (gRPC, batch-1
   requests), for the tensor model with Triton's dynamic batcher, the same server started with
   --max-batch 1 (no batching), and the image model (bytes in, decoded on the server); beside
   them the same artifact called in-process (runtime.load(...).run), at batch 1 and batch 8;
2. faults mixed into the load: 3 requests in 16 are bad (a wrong shape, a wrong dtype, garbage
   bytes); every bad one must be answered with an error, no good one lost or failed, and the
   server still ready after;
3. SIGKILL to the server's process group (edgetune serve and Triton, as a container dies) under
   load: clients see errors within their timeout, nothing hangs, and a restart on the same ports
   serves again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgetune import host, runtime
from edgetune.bundle import serving_name
from edgetune.serve.child import free_ports, start

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 4, 16)
CLIENT_TIMEOUT_S = 10.0  # no call waits longer: a dead server is an error, never a hang


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": len(a)}


def load(url: str, concurrency: int, make_request, seconds: float, max_requests: int) -> dict:
    """`concurrency` clients, each its own gRPC channel, sending until `seconds` or `max_requests`."""
    import tritonclient.grpc as grpcclient

    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.monotonic() + seconds
    budget = [max_requests]

    def client():
        c = grpcclient.InferenceServerClient(url)
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            model, inputs = make_request()
            t0 = time.perf_counter()
            try:
                c.infer(model, inputs, client_timeout=CLIENT_TIMEOUT_S)
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1e3)
            except Exception as exc:  # counted, never raised: the point is to see them
                with lock:
                    errors.append(type(exc).__name__)
                time.sleep(0.01)  # a client backs off a little, as real ones do, instead of spinning

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + CLIENT_TIMEOUT_S + 5)
    wall = time.perf_counter() - t0
    return {**percentiles(latencies), "images_per_s": len(latencies) / wall, "errors": len(errors)}


def in_process(model, batch: int, seconds: float) -> dict:
    x = np.zeros((batch, 3, *model.preprocess.size), np.float32)
    for _ in range(10):
        model.run(x)
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and len(times) < 100_000:
        t0 = time.perf_counter()
        model.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    stats = percentiles(times)
    return {**stats, "images_per_s": batch * 1e3 / float(np.mean(times))}


def tensor(batch: np.ndarray, dtype: str = "FP32"):
    import tritonclient.grpc as grpcclient

    i = grpcclient.InferInput("input", list(batch.shape), dtype)
    i.set_data_from_numpy(batch)
    return i


def image(data: bytes):
    import tritonclient.grpc as grpcclient

    i = grpcclient.InferInput("image", [1, 1], "BYTES")
    i.set_data_from_numpy(np.array([[data]], dtype=object))
    return i


def faults(url: str, name: str, x: np.ndarray, jpeg: bytes, total: int, concurrency: int) -> dict:
    """`total` requests from `concurrency` clients, 3 in 16 bad; every outcome counted."""
    import tritonclient.grpc as grpcclient

    kinds = ["good", "good", "good", "wrong shape", "good", "good", "good", "wrong dtype",
             "good", "good", "good", "garbage bytes", "good", "good", "good", "good image"]
    counts = {"sent": 0, "answered": 0, "errors": 0, "bad": 0, "bad answered with an error": 0,
              "good failed": 0, "lost": 0}
    lock, next_index = threading.Lock(), [0]

    def request(kind):
        if kind == "wrong shape":
            return name, [tensor(np.zeros((1, 3, 7, 7), np.float32))]
        if kind == "wrong dtype":
            return name, [tensor(x.astype(np.float64), "FP64")]
        if kind == "garbage bytes":
            return f"{name}_images", [image(b"\xff\xd8\xff not a jpeg" * 10)]
        if kind == "good image":
            return f"{name}_images", [image(jpeg)]
        return name, [tensor(x)]

    def client():
        c = grpcclient.InferenceServerClient(url)
        while True:
            with lock:
                if next_index[0] >= total:
                    return
                kind = kinds[next_index[0] % len(kinds)]
                next_index[0] += 1
                counts["sent"] += 1
                counts["bad"] += kind not in ("good", "good image")
            try:
                c.infer(*request(kind), client_timeout=CLIENT_TIMEOUT_S)
                ok = True
            except grpcclient.InferenceServerException:
                ok = False
            with lock:
                counts["answered"] += 1
                counts["errors"] += not ok
                bad = kind not in ("good", "good image")
                counts["bad answered with an error"] += bad and not ok
                counts["good failed"] += (not bad) and not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    counts["lost"] = counts["sent"] - counts["answered"]
    return counts


def kill_and_restart(python: Path, bundle: Path, name: str, x: np.ndarray, log: Path, seconds: float) -> dict:
    """Load at concurrency 4; SIGKILL the group halfway; restart on the same ports; load again."""
    ports = free_ports(3)
    server = start(python, bundle, log, name, ports=ports)
    server.wait_ready()
    url = f"127.0.0.1:{server.grpc}"
    result = {}
    killer = threading.Timer(seconds / 2, server.kill)
    killer.start()
    t0 = time.monotonic()
    during = load(url, 4, lambda: (name, [tensor(x)]), seconds, 1_000_000)
    killer.join()
    result["load while killed"] = {"answered": during["n"], "errors": during["errors"],
                                   "clients done after (s)": round(time.monotonic() - t0, 1)}
    t1 = time.monotonic()
    server = start(python, bundle, log, name, ports=ports)
    try:
        server.wait_ready()
        result["restart to ready (s)"] = round(time.monotonic() - t1, 1)
        after = load(url, 4, lambda: (name, [tensor(x)]), seconds / 2, 1_000_000)
        result["load after restart"] = {"answered": after["n"], "errors": after["errors"]}
    finally:
        result["exit code on SIGTERM"] = server.stop()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--serve-python", type=Path, default=ROOT / ".venv-serve" / "bin" / "python")
    parser.add_argument("--seconds", type=float, default=8.0, help="per load row (default 8)")
    parser.add_argument("--fault-requests", type=int, default=800)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    console = Console(width=160)
    if not args.serve_python.is_file():
        console.print(f"no serving environment at {args.serve_python}: run `make serve-env`")
        return 2
    name = serving_name(args.bundle)
    model = runtime.load(args.bundle, backend="onnxruntime", device="cpu")
    x = np.zeros((1, 3, *model.preprocess.size), np.float32)
    rng = np.random.default_rng(0)
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    report = {"bundle": str(args.bundle), "artifact": model.artifact.file, "machine": host.short(),
              "rows": [], "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        for label, batch in (("in-process, batch 1", 1), ("in-process, batch 8", 8)):
            report["rows"].append({"what": label, "concurrency": 1, **in_process(model, batch, args.seconds)})
        for extra, label in (((), "served, dynamic batching"), (("--max-batch", "1"), "served, --max-batch 1"),
                             ((), "served images (640x480 JPEG)")):
            server = start(args.serve_python, args.bundle, log, name, *extra)
            try:
                server.wait_ready()
                url = f"127.0.0.1:{server.grpc}"
                images = "images" in label
                for c in CONCURRENCY:
                    make = (lambda: (f"{name}_images", [image(jpeg)])) if images else (lambda: (name, [tensor(x)]))
                    row = load(url, c, make, args.seconds, 100_000)
                    report["rows"].append({"what": label, "concurrency": c, **row})
                    console.print(f"{label}, concurrency {c}: p50 {row['p50']:.2f} ms, {row['images_per_s']:.0f} img/s")
                if label == "served, dynamic batching":
                    report["faults"] = faults(url, name, x, jpeg, args.fault_requests, 8)
                    report["faults"]["ready after"] = server.ready()
            finally:
                server.stop()
        report["kill"] = kill_and_restart(args.serve_python, args.bundle, name, x, log, args.seconds)
    table = Table(title=f"edgetune serve, {model.artifact.file} of {args.bundle} ({host.short()})")
    for col in ("what", "concurrency", "p50 ms", "p99 ms", "images/s", "errors"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in report["rows"]:
        table.add_row(r["what"], str(r["concurrency"]), f"{r['p50']:.2f}", f"{r['p99']:.2f}",
                      f"{r['images_per_s']:,.0f}", str(r.get("errors", 0)))
    console.print(table)
    console.print("faults:", report["faults"])
    console.print("SIGKILL and restart:", report["kill"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = (report["faults"]["lost"] == 0 and report["faults"]["good failed"] == 0
          and report["faults"]["bad answered with an error"] == report["faults"]["bad"]
          and report["faults"]["ready after"] and report["kill"]["load after restart"]["errors"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
