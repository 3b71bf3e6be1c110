"""`edgetune choose`: LogME against the authors' formulation, a trained backbone ranked above
the same one at random initialisation on real digits, the device's times taken from a real
`bench --json` file, the features and times from an exported graph where no file times it, and
the one-line errors.

The "pretrained" backbone is the session's `trained_run` (a resnet18 trained on all ten digits
at 32 px): its features separate the classes; random initialisation's barely do."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgetune.choose.choose import choose
from edgetune.choose.scores import linear_probe, logme
from edgetune.config import ChooseConfig
from edgetune.errors import ConfigError
from tests.support.cli import assert_user_error, edgetune


def _reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """LogME as the paper's code (github.com/thuml/LogME, first version) computes it: an
    eigendecomposition of F^T F, all D eigenvalues."""
    n, d = f.shape
    v, s, vh = np.linalg.svd(f.T @ f)
    out = []
    for c in np.unique(y):
        yc = (y == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        tmp = vh @ (f.T @ yc)
        for _ in range(11):
            gamma = (s / (s + alpha / beta)).sum()
            m = v @ (tmp * beta / (alpha + beta * s))
            mm = (m * m).sum()
            res = ((yc - f @ m) ** 2).sum()
            new = (gamma / (mm + 1e-5), (n - gamma) / (res + 1e-5))
            converged = abs(new[0] / new[1] - alpha / beta) / (alpha / beta) < 0.01
            alpha, beta = new
            if converged:
                break
        m = v @ (tmp * beta / (alpha + beta * s))
        mm, res = (m * m).sum(), ((yc - f @ m) ** 2).sum()
        out.append((d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
                    - beta / 2 * res - alpha / 2 * mm - n / 2 * np.log(2 * np.pi)) / n)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d", [(200, 24), (40, 100)])
def test_logme_matches_the_reference_and_orders_signal_above_noise(n, d):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 4, n)
    signal = rng.standard_normal((n, d)) + 2 * np.eye(4)[y] @ rng.standard_normal((4, d))
    noise = rng.standard_normal((n, d))
    for f in (signal, noise):
        assert logme(f, y) == pytest.approx(_reference_logme(f, y), rel=1e-6, abs=1e-6)
    assert logme(signal, y) > logme(noise, y) + 0.5
    if n > d:
        assert linear_probe(signal, y) > 0.9 > 0.5 > linear_probe(noise, y)
    # Features that are all zero (a random MobileNetV3's, stored as float16) score, not crash.
    assert np.isfinite(logme(np.zeros((n, d)), y)) and logme(np.zeros((n, d)), y) < logme(signal, y)


@pytest.fixture(scope="module")
def device_times(trained_run, tmp_path_factory):
    """A real `bench --json` report of the trained bundle (resnet18, 32 px), as a device writes it."""
    from edgetune.bench import benchmark

    path = tmp_path_factory.mktemp("bench") / "device.json"
    report = benchmark(trained_run[0], artifacts=["model.onnx", "model.int8.cpu.onnx"], batches=(1,),
                       warmup=2, runs=5)
    path.write_text(json.dumps(report.to_dict()))
    return path, {r.precision: r.p50 for r in report.rows}


def test_choose_ranks_the_trained_backbone_first_with_the_devices_times(
        trained_run, small_digits, device_times, tmp_path):
    weights = str(trained_run[0] / "model.pt")
    bench_file, p50 = device_times
    lines: list[str] = []
    cfg = ChooseConfig(data=str(small_digits), models=f"resnet18@{weights},resnet18@none", image_sizes="32",
                       latency_budget=1000, latency_from=str(bench_file), batch_size=16)
    rows = choose(cfg, tmp_path, log=lines.append)
    trained, scratch = rows
    assert (trained.weights, scratch.weights) == (weights, "none")
    assert trained.logme > scratch.logme
    # --latency-from overrides local timing: the device's fastest precision, and no graph exported.
    assert trained.p50_ms == scratch.p50_ms == min(p50.values())
    assert trained.latency_from == bench_file.name
    assert not (tmp_path / "graphs").exists()
    # Same latency, lower score: the scratch model is dominated; the trained one is the Pareto set.
    assert (trained.pareto, scratch.pareto) == (True, False)
    table = [ln for ln in lines if ln.startswith(("1 ", "2 "))]
    assert table[0].split()[1] == "resnet18@model.pt" and table[0].split()[-2:] == ["*", "yes"]
    assert table[1].split()[-1] == "yes" and "*" not in table[1]
    assert lines[-1] == (f"next: edgetune run --data {small_digits} --model resnet18 --weights {weights} "
                         f"--image-size 32 --out runs/resnet18-32")
    with open(tmp_path / "ranking.csv", newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["candidate"] for r in saved] == [trained.candidate, scratch.candidate]
    assert json.loads((tmp_path / "ranking.json").read_text())["settings"]["latency_budget"] == 1000
    # `tune --models top:K:DIR` seeds its search from this ranking: each model once.
    from edgetune.tune.space import top_models

    assert top_models(f"top:2:{tmp_path}") == ["resnet18"]
    # A budget nothing meets: one line naming the fastest, after the ranking is written (the
    # features come from the cache this time).
    tight = ChooseConfig(**{**cfg.__dict__, "latency_budget": 0.0001})
    with pytest.raises(ConfigError, match=r"no candidate meets it; the fastest is resnet18@model.pt at 32 px"):
        choose(tight, tmp_path, log=lines.append)
    assert any("cache: reusing probe-train" in ln for ln in lines)
    assert json.loads((tmp_path / "ranking.json").read_text())["ranking"][0]["within_budget"] is False


def test_choose_refuses_a_bench_file_of_another_version(small_digits, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "edgetune-bench", "version": 99, "rows": []}))
    with pytest.raises(ConfigError, match="version 99, not 'edgetune-bench' version 1"):
        choose(ChooseConfig(data=str(small_digits), models="resnet18", weights="none", image_sizes="32",
                            latency_from=str(old)), tmp_path / "out")


def test_choose_unknown_model_is_one_line(small_digits, tmp_path):
    proc = edgetune("choose", "--data", small_digits, "--models", "resnet18,mobilenet_v3_smal",
                    "--weights", "none", "--out", tmp_path)
    assert_user_error(proc, "unknown model 'mobilenet_v3_smal'", "mobilenet_v3_small")


def test_the_default_candidates_offline_are_the_lite_models_and_the_rest_are_named():
    """Without --models: EfficientNet-Lite0/1/2's ImageNet weights come with the lite extra (installed
    by `make install`), so they are candidates offline; every default left out is named in one line."""
    from edgetune.choose.candidates import LITE_EDGE, default_models, edge_models

    lines: list[str] = []
    pairs = default_models("DEFAULT", lines.append)
    assert [a for a, _ in pairs[:3]] == list(LITE_EDGE) and {w for _, w in pairs} == {"DEFAULT"}
    left_out = [a for a in edge_models() if a not in dict(pairs)]
    assert all(a in lines[0] for a in left_out) if left_out else not lines
    assert default_models("none", lines.append) == [(a, "none") for a in edge_models()]


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "mobilenet_v3_small"])
def test_the_graph_features_come_from_is_the_model_and_its_pooled_features(arch):
    """choose exports `WithFeatures`: the model's own logits, and the head's input beside them (for
    timm's Lite the trunk ends in a spatial map, pooled by its own forward_head), so the graph it
    times, with the features output dropped, is the model as it ships."""
    import torch

    from edgetune.choose.features import WithFeatures
    from edgetune.train.model import create_model

    torch.manual_seed(0)
    model = create_model(arch, "none", 5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, features = WithFeatures(model, arch)(x)
        assert torch.allclose(logits, model(x), atol=1e-5)
        assert features.shape == (2, 1280 if arch.startswith("efficientnet") else 576)


def test_timed_here_the_features_come_from_the_graph_that_ships(trained_run, small_digits, tmp_path):
    """Without --latency-from, choose exports each network once (traced, checked against
    PyTorch), and gives its other sizes the same graph with the input resized, where that
    graph agrees with PyTorch at the new size. The features run through those graphs in ONNX
    Runtime (the same as PyTorch's through the cache, at the resized size too), and the graph, its
    features output dropped, is what is timed and left in OUT/graphs for the device."""
    import onnx

    from edgetune.choose.candidates import Candidate
    from edgetune.choose.features import extract
    from edgetune.data.scan import scan

    weights = str(trained_run[0] / "model.pt")
    cfg = ChooseConfig(data=str(small_digits), models=f"resnet18@{weights},resnet18@none", image_sizes="32,40",
                       batch_size=16)
    logs: list[str] = []
    rows = choose(cfg, tmp_path / "out", log=logs.append)
    assert all(r.latency_from == "here" and r.p50_ms > 0 for r in rows) and len(rows) == 4
    assert not any("torch.export" in line for line in logs), logs  # both networks' traces agreed
    resized = [line for line in logs if "40 px: the 32 px graph, its input set to 40x40" in line]
    assert len(resized) == 2, logs
    assert not any("exported: the" in line for line in logs), logs
    for size in (32, 40):
        shipped = onnx.load(tmp_path / "out" / "graphs" / f"resnet18-{size}.onnx")
        assert [o.name for o in shipped.graph.output] == ["logits"]
        assert [d.dim_value for d in shipped.graph.input[0].type.tensor_type.shape.dim][2:] == [size, size]
    # The resized graph's features against PyTorch's through the feature cache (float32): LogME agrees.
    row = next(r for r in rows if r.size == 40 and r.weights == "none")
    splits = scan(str(small_digits), cfg.val_fraction, cfg.seed)
    torch_side = extract(Candidate("resnet18", "none", 40), splits, str(small_digits), tmp_path / "cache", None,
                         16, lambda *_: None)
    assert row.logme == pytest.approx(logme(torch_side.features, torch_side.labels), rel=0.02, abs=1e-3)
