"""Latency of a bundle's artifacts on the machine that will run them. Torch-free.

Each artifact is loaded exactly as deployment code loads it (`runtime.load`, sha256
checked) and timed per batch size by `latency.measure_latency`: inputs made before the
clock starts, warm-up excluded, only the engine call timed. `compare_torch=True` adds
PyTorch eager fp32 rows from the bundle's checkpoint; only that path imports torch.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import edgetune
from edgetune import host
from edgetune.bundle import read_manifest
from edgetune.errors import ConfigError
from edgetune.latency import measure_latency
from edgetune.runtime import backends, choice
from edgetune.runtime.classifier import Model, check_threads, load

# `bench --json` files are read back by `choose` and `tune --latency-from`: a change to the
# fields they read is a new version.
FORMAT, VERSION = "edgetune-bench", 1
TORCH_BACKEND = "pytorch eager"  # edgetune.train.torch_baseline.BACKEND, without importing torch
BUSY = 0.25  # above this share of the CPU used by others, the report carries a warning


@dataclass
class BenchRow:
    artifact: str
    backend: str
    precision: str
    device: str
    batch: int
    p50: float  # milliseconds per engine call, like p90, p99 and mean
    p90: float
    p99: float
    mean: float
    throughput: float  # images per second at this batch size
    runs: int
    session: dict | None = None  # engine options it was timed with (ONNX Runtime: ort_backend.session_options)


@dataclass
class BenchReport:
    source: str
    host: dict
    versions: dict
    settings: dict  # {"batches", "threads", "warmup", "runs", "seconds", "device"}
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"artifact", "batch"?, "why"}
    # Share of the CPU other work used just before and just after timing (None off Linux).
    cpu_busy: dict | None = None  # {"before": 0.03, "after": 0.02}
    # What was timed, for `choose` and `tune --latency-from`: {"arch", "size"} from a bundle's
    # manifest; None for a single .onnx file (its name, <arch>-<size>.onnx, says it instead).
    model: dict | None = None
    format: str = FORMAT
    version: int = VERSION

    def busy(self) -> bool:
        """Other work was running: timings on a busy host are pessimistic, and OpenMP
        engines (PyTorch) degrade far more than others when cores are oversubscribed."""
        return bool(self.cpu_busy) and max(self.cpu_busy.values()) > BUSY

    def to_dict(self) -> dict:
        return asdict(self)


def benchmark(
    path: str | os.PathLike,
    artifacts: str | Sequence[str] = "all",
    batches: Sequence[int] = (1, 8),
    threads: int | None = None,
    warmup: int = 10,
    runs: int | None = None,
    seconds: float | None = None,
    device: str = "auto",
    compare_torch: bool = False,
) -> BenchReport:
    """Time every chosen artifact of a bundle (or one .onnx file) at every batch size.

    `runs` timed calls per row (50 when neither `runs` nor `seconds` is given), or as
    many as fit in `seconds`. Artifacts whose engine is missing here are listed in
    `report.skipped` with the reason when `artifacts="all"`, refused when named.
    """
    batches = check_batches(batches)
    check_threads(threads)
    runs = _check_budget(warmup, runs, seconds)
    backends.check_device(device)
    path = Path(path)
    report = BenchReport(
        source=str(path),
        host=host.describe(),
        versions=library_versions(with_torch=compare_torch),
        settings={"batches": batches, "threads": threads, "warmup": warmup, "runs": runs,
                  "seconds": seconds, "device": device},
    )
    # Everything that can fail (names, torch, checkpoint) fails before any timing.
    plan = _plan(path, artifacts, device, report.skipped)
    if path.is_dir():
        manifest = read_manifest(path)
        report.model = {"arch": manifest.model["arch"], "size": int(manifest.input["size"][0])}
    baseline = torch_baseline(path) if compare_torch else None
    before = cpu_busy()
    # One engine alive at a time: an idle ONNX Runtime session beside PyTorch slowed
    # PyTorch by ~25% on 2 cores. PyTorch goes first, before any session exists.
    torch_rows = _time_torch(baseline, batches, threads, warmup, runs, seconds) if baseline else []
    del baseline
    for name in plan:
        model = _open(path, name, device, threads)
        _time_model(model, report, warmup, runs, seconds)
        del model
        gc.collect()  # free the session and its thread pool before the next one starts
    report.rows.extend(torch_rows)
    after = cpu_busy()
    if before is not None and after is not None:
        report.cpu_busy = {"before": before, "after": after}
    return report


def _plan(path: Path, artifacts, device: str, skipped: list[dict]) -> list[str | None]:
    """The artifact names to time (None: the single .onnx file itself), recording in
    `skipped` those this host cannot run when "all" was asked for."""
    if path.is_file():
        if artifacts not in ("all", path.name, [path.name], (path.name,)):
            raise ConfigError(
                f"{path.name} is a single ONNX file with no other artifacts; use --artifact all"
            )
        return [None]
    manifest = read_manifest(path)
    if artifacts != "all":
        names = [artifacts] if isinstance(artifacts, str) else list(artifacts)
        if not names:
            raise ConfigError("no artifacts named; pass artifact file names or 'all'")
        for name in names:
            manifest.artifact(name)  # an unknown name fails before any timing starts
        return names
    names = []
    serves = choice.hardware_targets(device=device)
    for artifact in manifest.artifacts:
        ok, why = backends.is_available(artifact.backend)
        if ok:
            why = _not_for_here(artifact, serves)
        if why:
            skipped.append({"artifact": artifact.file, "why": why})
        else:
            names.append(artifact.file)
    return names


def _not_for_here(artifact, serves: list[str]) -> str:
    """Why timing this artifact here would mislead ('' when it would not). A graph made for
    a GPU target, run by ONNX Runtime on this CPU, is slow for reasons the target never
    sees (s8 activations, fp16 casts). Named explicitly, it is still timed."""
    if artifact.target == "tensorrt" and artifact.backend != "tensorrt":
        return "TensorRT-recipe graph: build an engine and time that on the target"
    if artifact.target in ("gpu", "tensorrt") and artifact.target not in serves:
        return f"made for the {artifact.target} target, which this host cannot run"
    return ""


def _open(path: Path, name: str | None, device: str, threads) -> Model:
    if name is not None:
        return load(path, device=device, artifact=name, threads=threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preprocessing is never used for timing
        return load(path, device=device, threads=threads)


def _time_model(model: Model, report: BenchReport, warmup: int, runs, seconds) -> None:
    chw = (3, *model.preprocess.size)
    fixed = model.input.shape[0] if isinstance(model.input.shape[0], int) else None
    for batch in report.settings["batches"]:
        if fixed is not None and batch != fixed:
            report.skipped.append({"artifact": model.artifact.file, "batch": batch,
                                   "why": f"the graph takes a fixed batch of {fixed}"})
            continue
        lat = measure_latency(model, chw, batch=batch, warmup=warmup, runs=runs, seconds=seconds,
                              desc=f"bench {model.artifact.file} batch {batch}")
        report.rows.append(_row(model.artifact.file, model.backend, model.artifact.precision,
                                model.device, lat, model.session_options))


def _row(artifact: str, backend: str, precision: str, device: str, lat: dict,
         session: dict | None = None) -> BenchRow:
    return BenchRow(artifact=artifact, backend=backend, precision=precision, device=device,
                    batch=lat["batch"], p50=lat["p50"], p90=lat["p90"], p99=lat["p99"],
                    mean=lat["mean"], throughput=lat["throughput"], runs=lat["runs"], session=session)


def torch_baseline(path: Path):
    """The bundle's checkpoint in PyTorch eager fp32, behind the Session interface. The one
    place bench reaches the training side, and only after torch is known to be there."""
    from edgetune.errors import require

    require("torch", "train", "--compare-torch (timing the PyTorch checkpoint)")
    from edgetune.train.torch_baseline import TorchSession

    return TorchSession(path)


def _time_torch(session, batches, threads, warmup, runs, seconds) -> list[BenchRow]:
    with session.threads(threads):
        return [
            _row(session.name, TORCH_BACKEND, "fp32", "cpu",
                 measure_latency(session, session.input.shape[1:], batch=b, warmup=warmup,
                                 runs=runs, seconds=seconds, desc=f"bench {TORCH_BACKEND} batch {b}"))
            for b in batches
        ]


def library_versions(with_torch: bool = False) -> dict:
    """Versions that change latency numbers; tensorrt only when installed."""
    versions = {"edgetune": edgetune.__version__, "python": platform.python_version(),
                "numpy": np.__version__}
    modules = ["onnxruntime", "openvino", "tensorrt"] + (["torch"] if with_torch else [])
    for name in modules:
        if importlib.util.find_spec(name) is not None:
            versions[name] = getattr(__import__(name), "__version__", "unknown")
    return versions


def cpu_busy(window: float = 0.3) -> float | None:
    """Share of all cores busy over `window` seconds while this process sleeps: other work.
    Sampled from /proc/stat; the load average would also count our own previous run."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user … steal
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return round(1.0 - (idle1 - idle0) / total, 2) if total > 0 else None


def check_batches(batches) -> list[int]:
    if isinstance(batches, int) or not isinstance(batches, Sequence) or not batches:
        raise ConfigError(f"batches must be a non-empty list of positive integers, got {batches!r}")
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"batch size {b!r} is not allowed; batch sizes are positive integers")
    return list(batches)


def _check_budget(warmup, runs, seconds) -> int | None:
    """Validate warm-up and the timing budget; returns the number of runs to use."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an integer >= 0, got {warmup!r}")
    if runs is not None and seconds is not None:
        raise ConfigError("runs and seconds are exclusive: give a number of runs or a time budget")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ConfigError(f"seconds must be a positive number, got {seconds!r}")
        return None
    if runs is None:
        return 50
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigError(f"runs must be a positive integer, got {runs!r}")
    return runs


def render_table(report: BenchReport):
    """A rich Table: one row per artifact × batch, speed-up against ONNX Runtime fp32."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"edgetune bench: {report.source} (latency in ms per call)",
                  title_justify="left")
    for name in ("artifact", "backend", "precision", "device"):
        table.add_column(name, no_wrap=True)
    for name in ("batch", "p50", "p90", "p99", "mean", "img/s", "speed-up"):
        table.add_column(name, justify="right", no_wrap=True)
    baseline = {r.batch: r.p50 for r in report.rows
                if r.backend == "onnxruntime" and r.precision == "fp32"}
    for r in report.rows:
        speedup = f"{baseline[r.batch] / r.p50:.2f}x" if r.batch in baseline and r.p50 else ""
        table.add_row(r.artifact, r.backend, r.precision, r.device, str(r.batch),
                      f"{r.p50:.2f}", f"{r.p90:.2f}", f"{r.p99:.2f}", f"{r.mean:.2f}",
                      f"{r.throughput:.1f}", speedup)
    budget = (f"{report.settings['seconds']} s" if report.settings["seconds"]
              else f"{report.settings['runs']} runs")
    notes = [
        f"host: {host.short()}",
        f"threads: {report.settings['threads'] or 'engine default'}, warm-up "
        f"{report.settings['warmup']}, {budget} per row",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "speed-up: p50 of the ONNX Runtime fp32 graph at the same batch / this row's p50",
    ]
    options = next((r.session for r in report.rows if r.session and r.backend == "onnxruntime"), None)
    if options:
        notes.append("onnxruntime session: " + ", ".join(f"{k} {v}" for k, v in options.items()))
    if report.busy():
        notes.append(f"warning: other work used {max(report.cpu_busy.values()):.0%} of the CPU "
                     "around this run: these timings are pessimistic; re-run on an idle machine")
    notes += [f"skipped {s['artifact']}" + (f" at batch {s['batch']}" if "batch" in s else "")
              + f": {s['why']}" for s in report.skipped]
    # As plain text: rich would read "pip install 'edgetune[openvino]'" as markup and print
    # "pip install 'edgetune'", naming the wrong extra.
    table.caption = Text("\n".join(notes))
    table.caption_justify = "left"
    return table


def read_latencies(path: str | os.PathLike) -> dict[tuple[str, int, str], float]:
    """A `bench --json` file as {(arch, input size, precision): p50 ms at batch 1}: the
    device's times for `choose` and `tune --latency-from`. Rows of a single .onnx file are
    keyed by its name, <arch>-<size>.onnx (the graphs `choose` writes)."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--latency-from {path}: cannot read it as JSON ({type(exc).__name__}); pass "
                          "the file `edgetune bench BUNDLE --json FILE` wrote on the device") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        found = (f"format {data.get('format')!r} version {data.get('version')!r}" if isinstance(data, dict)
                 else type(data).__name__)
        raise ConfigError(f"--latency-from {path}: {found}, not {FORMAT!r} version {VERSION}; rerun "
                          "`edgetune bench BUNDLE --json FILE` on the device with this edgetune "
                          f"({edgetune.__version__})")
    out = {}
    for row in data.get("rows", []):
        if row.get("batch") != 1 or row.get("backend") == TORCH_BACKEND:
            continue
        key = _model_of(data.get("model"), row.get("artifact", ""))
        if key is not None:
            out[(*key, row["precision"])] = float(row["p50"])
    return out


def _model_of(model: dict | None, artifact: str) -> tuple[str, int] | None:
    if model:
        return str(model["arch"]), int(model["size"])
    stem, _, size = Path(artifact).name.removesuffix(".onnx").rpartition("-")
    return (stem.replace("+", "/"), int(size)) if stem and size.isdigit() else None
