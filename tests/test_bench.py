"""bench: every artifact × batch timed, reported as JSON and a table; bad settings refused."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from rich.console import Console

from edgetune import bench, runtime
from edgetune.atomic import write_json
from edgetune.errors import BundleError, ConfigError
from tests.support.cli import edgetune, edgetune_without_torch
from tests.support.tiny_bundle import CHECKPOINT, FP32, INT8


@pytest.fixture(scope="module")
def report(tiny):
    return bench.benchmark(tiny.bundle, batches=[1, 3], warmup=1, runs=4, compare_torch=True)


def test_json_has_percentiles_for_every_artifact_and_batch(report, tmp_path):
    write_json(tmp_path / "bench.json", report.to_dict())
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["artifact"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {(a, b) for a in (FP32, INT8, CHECKPOINT) for b in (1, 3)}
    for r in rows.values():
        assert 0 < r["p50"] <= r["p90"] <= r["p99"] and r["mean"] > 0 and r["runs"] == 4
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["mean"], rel=0.01, abs=0.06)
    assert rows[(INT8, 1)]["precision"] == "int8" and rows[(FP32, 3)]["backend"] == "onnxruntime"
    assert data["host"]["cores"] and data["versions"]["onnxruntime"] and data["versions"]["torch"]
    assert set(data["cpu_busy"]) == {"before", "after"}  # a busy host is flagged, never hidden
    assert data["settings"] == {"batches": [1, 3], "threads": None, "warmup": 1, "runs": 4,
                                "seconds": None, "device": "auto"}
    # What `choose` and `tune --latency-from` read back: the format, and the model and size timed.
    assert (data["format"], data["version"]) == ("edgetune-bench", 1)
    assert set(data["model"]) == {"arch", "size"}
    times = bench.read_latencies(tmp_path / "bench.json")
    assert times[(data["model"]["arch"], data["model"]["size"], "int8")] == rows[(INT8, 1)]["p50"]


def test_torch_rows_time_the_same_model_as_the_onnx_graph(tiny, report):
    """The PyTorch baseline is built from the bundle's checkpoint: same logits as model.onnx."""
    torch_rows = [r for r in report.rows if r.backend == bench.TORCH_BACKEND]
    assert [(r.batch, r.precision, r.device) for r in torch_rows] == [(1, "fp32", "cpu"), (3, "fp32", "cpu")]
    from edgetune.train.torch_baseline import BACKEND, TorchSession

    assert BACKEND == bench.TORCH_BACKEND
    onnx_model = runtime.load(tiny.bundle, artifact=FP32)
    batch = onnx_model.preprocess.batch(tiny.images)
    ref = TorchSession(tiny.bundle).run(batch)
    np.testing.assert_allclose(onnx_model.run(batch), ref, rtol=1e-3, atol=1e-4)


def test_table_lists_every_row_and_the_host(report):
    console = Console(record=True, width=200)
    console.print(bench.render_table(report))
    text = console.export_text()
    for name in (FP32, INT8, CHECKPOINT, "pytorch eager", "p50", "p99", "img/s", "host:"):
        assert name in text
    assert "1.00x" in text  # the fp32 ONNX Runtime row is the speed-up baseline


def test_skip_reasons_keep_the_extra_they_name():
    """rich would read "[openvino]" as markup and print "pip install 'edgetune'"."""
    report = bench.BenchReport(source="b", host={}, versions={}, settings={"threads": None, "warmup": 1, "runs": 3,
                                                                            "seconds": None},
                               skipped=[{"artifact": "model.int8.openvino.onnx",
                                         "why": "openvino is not installed: pip install 'edgetune[openvino]'"}])
    console = Console(record=True, width=200)
    console.print(bench.render_table(report))
    assert "pip install 'edgetune[openvino]'" in console.export_text()


def test_named_artifacts_time_budget_and_bare_onnx(tiny):
    by_time = bench.benchmark(tiny.bundle, artifacts=[INT8], batches=[2], warmup=0, seconds=0.05)
    assert [(r.artifact, r.batch) for r in by_time.rows] == [(INT8, 2)] and by_time.rows[0].runs >= 3
    bare = bench.benchmark(tiny.bundle / FP32, batches=[1], warmup=0, runs=2)
    assert [(r.artifact, r.precision) for r in bare.rows] == [(FP32, "fp32")]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"artifacts": ["nope.onnx"]}, BundleError, "no artifact named 'nope.onnx'"),
    ({"batches": [1, 0]}, ConfigError, "batch size 0 is not allowed"),
    ({"batches": 8}, ConfigError, "non-empty list"),
    ({"runs": 5, "seconds": 1.0}, ConfigError, "exclusive"),
    ({"runs": 0}, ConfigError, "runs must be a positive integer"),
    ({"warmup": -1}, ConfigError, "warmup must be an integer >= 0"),
    ({"threads": 0}, ConfigError, "threads must be a positive integer"),
    ({"device": "gpu"}, ConfigError, "device 'gpu' is not one of"),
])
def test_bad_settings_fail_before_timing(tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        bench.benchmark(tiny.bundle, **kwargs)


def test_compare_torch_needs_a_checkpoint(tiny):
    with pytest.raises(ConfigError, match="needs a bundle folder with a checkpoint"):
        bench.benchmark(tiny.bundle / FP32, batches=[1], runs=1, warmup=0, compare_torch=True)


def test_cli_bench_writes_json_and_prints_the_table(tiny, tmp_path):
    out = edgetune("bench", str(tiny.bundle), "--batch", "1,2", "--runs", "3", "--warmup", "1",
                       "--json", str(tmp_path / "r.json"), "--threads", "1")
    assert out.returncode == 0, out.stderr
    assert FP32 in out.stdout and INT8 in out.stdout and "p99" in out.stdout
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {(r["artifact"], r["batch"]) for r in rows} == {(a, b) for a in (FP32, INT8) for b in (1, 2)}


@pytest.mark.parametrize("args, message", [
    (["--batch", "1,x"], "--batch '1,x' is not allowed: 'x' is not a batch size"),
    (["--batch", "1,,8"], "--batch '1,,8' is not allowed"),
    (["--runs", "3", "--seconds", "1"], "--runs and --seconds are exclusive"),
    (["--seconds", "-1"], "--seconds '-1' is not allowed"),
    (["--threads", "two"], "--threads 'two' is not allowed: expected an integer >= 1"),
    (["--artifact", "model.onxx"], "no artifact named 'model.onxx'"),
    (["--compare-torch"], "needs the Python package 'torch'"),
])
def test_cli_bench_errors_are_one_line(tiny, args, message):
    out = edgetune_without_torch("bench", tiny.bundle, *args, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("edgetune: error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_gpu_target_graphs_are_skipped_on_cpu_unless_named(tiny, tmp_path):
    """Graphs made for TensorRT or the GPU, timed by ONNX Runtime on a CPU, would mislead."""
    from edgetune.bundle import artifact_record, read_manifest, write_manifest

    bundle = tmp_path / "b"
    bundle.mkdir()
    for f in tiny.bundle.iterdir():
        if f.name != "manifest.json":
            os.link(f, bundle / f.name)  # read-only use: hard links, not 100 MB of copies
    os.link(tiny.bundle / INT8, bundle / "model.int8.tensorrt.onnx")
    os.link(tiny.bundle / FP32, bundle / "model.fp16.onnx")  # stands in for the gpu graph
    manifest = read_manifest(tiny.bundle)
    manifest.artifacts.append(artifact_record(bundle, "model.int8.tensorrt.onnx", backend="onnxruntime",
                                              target="tensorrt", precision="int8"))
    manifest.artifacts.append(artifact_record(bundle, "model.fp16.onnx", backend="onnxruntime",
                                              target="gpu", precision="fp16"))
    write_manifest(bundle, manifest)

    everything = bench.benchmark(bundle, batches=[1], warmup=0, runs=1, device="cpu")
    assert {r.artifact for r in everything.rows} == {FP32, INT8}
    assert everything.skipped == [
        {"artifact": "model.int8.tensorrt.onnx",
         "why": "TensorRT-recipe graph: build an engine and time that on the target"},
        {"artifact": "model.fp16.onnx", "why": "made for the gpu target, which this host cannot run"},
    ]
    named = bench.benchmark(bundle, artifacts=["model.int8.tensorrt.onnx"], batches=[1], warmup=0, runs=1)
    assert [r.artifact for r in named.rows] == ["model.int8.tensorrt.onnx"]
