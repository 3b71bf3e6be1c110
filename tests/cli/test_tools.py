"""`edgetune config --dump`, `--config` for every command, `edgetune info`, and the end-of-run
summary whose commands must run as printed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from tests.support.cli import assert_user_error, edgetune, edgetune_without_torch, python


def test_config_dump_prints_the_effective_run_config_and_reads_back(tmp_path):
    proc = edgetune("config", "--dump", "--epochs", "3", "--targets", "cpu,gpu")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    # the demo preset (no --data), the flags over it, every field of both stages
    assert cfg["epochs"] == 3 and cfg["weights"] == "none" and cfg["targets"] == ["cpu", "gpu"]
    assert {"lr", "calib_samples", "max_drop", "bn_adapt_batches"} <= set(cfg)
    saved = tmp_path / "run.yaml"
    saved.write_text(proc.stdout)
    again = edgetune("config", "--dump", "--config", saved)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == cfg
    over = yaml.safe_load(edgetune("config", "--dump", "--config", saved, "--epochs", "5").stdout)
    assert over["epochs"] == 5  # flags override the file


def test_one_config_file_serves_every_command(tmp_path, trained_run):
    out, _ = trained_run
    shared = tmp_path / "all.yaml"
    shared.write_text("epochs: 2\nlr: 0.01\nbatch: [1]\nruns: 3\nwarmup: 1\nartifact: model.onnx\ntopk: 1\n")
    cfg = yaml.safe_load(edgetune("config", "--dump", "--config", shared).stdout)
    assert cfg["epochs"] == 2 and cfg["lr"] == 0.01  # bench's keys are left to bench
    proc = edgetune("bench", out, "--config", shared, "--json", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["artifact"], r["batch"], r["runs"]) for r in rows] == [("model.onnx", 1, 3)]


def test_unknown_or_bad_config_keys_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    assert_user_error(edgetune("config", "--dump", "--config", bad), "unknown key 'epoch'",
                      "did you mean 'epochs'?")
    bad.write_text("batchh: 1\n")
    assert_user_error(edgetune("bench", tmp_path, "--config", bad), "did you mean 'batch'?")
    bad.write_text("verify_images: 3\n")
    assert_user_error(edgetune("config", "--dump", "--config", bad), "use true or false")
    assert_user_error(edgetune("config"), "pass --dump")


def test_info_table_and_json_without_torch(trained_run):
    out, manifest = trained_run
    proc = edgetune_without_torch("info", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in ("classes", "10: 0, 1, 2", "3×32×32", "recommended for cpu", "onnxruntime",
                 *(a.file for a in manifest.artifacts)):
        assert text in proc.stdout, text
    proc = edgetune_without_torch("info", out, "--json", timeout=60)
    info = json.loads(proc.stdout)
    assert info["classes"] == manifest.classes
    by_file = {a["file"]: a for a in info["artifacts"]}
    rec = manifest.recommended["cpu"]["file"]
    assert by_file[rec]["recommended_for"] == ["cpu"] and by_file[rec]["p50_ms"] > 0
    assert by_file["model.int8.tensorrt.onnx"]["p50_ms"] is None
    assert info["versions"] == manifest.versions


def test_summary_next_commands_run_as_printed(trained_run):
    from edgetune.report.summary import summary_lines

    out, manifest = trained_run
    lines, steps = summary_lines(out, manifest)
    assert lines[0].startswith("model     resnet18 trained from scratch, 10 classes")
    assert any(ln.startswith("cpu ") and manifest.recommended["cpu"]["file"] in ln for ln in lines)
    assert any(str(out / "report.html") in ln for ln in lines)
    predict = shlex.split(steps[0])
    assert predict[:2] == ["edgetune", "predict"] and Path(predict[3]).is_file()
    proc = edgetune(*predict[1:])
    assert proc.returncode == 0, proc.stderr
    assert steps[1].startswith("edgetune bench ")
    snippet = [s.strip() for s in steps[3:]]
    assert len(snippet) == 3
    proc = python("\n".join(snippet), torch_free=True, timeout=60)  # deployment code: no PyTorch
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("[(")
