"""`edgetune serve`: a bundle on Triton Inference Server (PyTriton). Parsing only; the work is
in `edgetune.serve`. Torch-free."""

from __future__ import annotations

import argparse

from edgetune.cli.device import int_flag


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a bundle on Triton Inference Server, HTTP and gRPC (pip install 'edgetune[serve]')",
        description="The bundle's recommended CPU artifact behind Triton's dynamic batcher, through the "
                    "torch-free runtime: model NAME takes float32 NCHW tensors, NAME_images encoded images. "
                    "Health and readiness at /v2/health/ready, Prometheus metrics on the metrics port; "
                    "SIGTERM or Ctrl-C finishes what is in flight and stops.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (with manifest.json)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address every port listens on; loopback unless you open it, e.g. 0.0.0.0")
    p.add_argument("--http-port", default="8000", metavar="PORT", help="HTTP/REST (default 8000)")
    p.add_argument("--grpc-port", default="8001", metavar="PORT", help="gRPC (default 8001)")
    p.add_argument("--metrics-port", default="8002", metavar="PORT", help="Prometheus metrics (default 8002)")
    p.add_argument("--name", help="model name (default: the bundle folder's name)")
    p.add_argument("--max-batch", default="32", metavar="N",
                   help="largest batch Triton forms or a request may send (default 32; 1: no batching)")
    p.add_argument("--instances", default="1", metavar="N", help="model instances (default 1)")
    p.add_argument("--threads", metavar="N", help="ONNX Runtime threads (default: the engine's own choice)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from edgetune.serve.server import Endpoints, serve

    endpoints = Endpoints(args.host, int_flag(args.http_port, "--http-port", minimum=1),
                          int_flag(args.grpc_port, "--grpc-port", minimum=1),
                          int_flag(args.metrics_port, "--metrics-port", minimum=1))
    threads = int_flag(args.threads, "--threads", minimum=1) if args.threads is not None else None
    return serve(args.bundle, endpoints, name=args.name, max_batch=int_flag(args.max_batch, "--max-batch", minimum=1),
                 instances=int_flag(args.instances, "--instances", minimum=1), threads=threads,
                 log=lambda line: print(line, flush=True))
