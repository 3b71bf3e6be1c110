"""`edgetune bench --choose`: the device times the bundle's CPU artifacts, writes its choice, and
`runtime.load` takes it on this host only; a record that does not match the bundle is refused."""

from __future__ import annotations

import json
import os

import pytest

from edgetune import runtime
from edgetune.atomic import sha256_file
from edgetune.bundle import read_manifest, write_manifest
from edgetune.device_choice import choose_on_device
from edgetune.errors import BundleError, EdgetuneWarning
from edgetune.files import MANIFEST
from edgetune.runtime import devices
from tests.support.cli import assert_user_error, edgetune_without_torch
from tests.support.tiny_bundle import FP32, INT8


@pytest.fixture
def bundle(tiny, tmp_path):
    """The tiny bundle's files (hard links: only read here) with what an export records for a
    choice: each artifact's top-1 and the budget."""
    b = tmp_path / "bundle"
    b.mkdir()
    for f in tiny.bundle.iterdir():
        if f.is_file() and f.name != MANIFEST:
            os.link(f, b / f.name)
    m = read_manifest(tiny.bundle)
    for a, top1 in zip(m.artifacts, (0.900, 0.895)):
        a.top1 = top1
    m.evaluation = {"split": "val", "images": 200, "max_drop": 1.0}
    write_manifest(b, m)
    return b


def test_choose_names_the_fastest_and_load_takes_it_on_this_host_only(bundle, monkeypatch):
    proc = edgetune_without_torch("bench", bundle, "--choose", "--runs", "30", "--threads", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = list((bundle / "devices").glob("*.json"))
    assert [p.stem for p in records] == [devices.host_fingerprint()]
    rec = json.loads(records[0].read_text())
    assert rec["fingerprint"] == records[0].stem and f"written: {records[0]}" in proc.stdout
    assert rec["host"]["cpu"] and rec["host"]["flags"] and rec["host"]["engines"]["onnxruntime"]
    timings = {t["file"]: t for t in rec["timings"]}
    assert set(timings) == {FP32, INT8} and all(len(t["latency"]["rounds_p50"]) >= 3 for t in timings.values())
    # The fastest it measured, unless the two were tied within the noise (then the rule says why).
    fastest = min(timings, key=lambda f: timings[f]["latency"]["p50"])
    chosen = rec["chosen"]["file"]
    assert chosen == fastest or timings[chosen]["verdict"].startswith("chosen: tied with")
    assert rec["chosen"]["sha256"] == sha256_file(bundle / chosen) and rec["order"][0] == chosen

    model = runtime.load(bundle)
    assert model.artifact.file == chosen and model.chosen_by == f"this host's choice (devices/{records[0].name})"
    monkeypatch.setattr(devices, "host_fingerprint", lambda: "0" * 16)  # as on another host
    with pytest.warns(EdgetuneWarning, match="holds no choice made on this host .* using the export's recommendation"):
        elsewhere = runtime.load(bundle)
    assert (elsewhere.artifact.file, elsewhere.chosen_by) == (INT8, "the export's recommendation")


def test_a_device_choice_changed_or_from_another_bundle_is_refused(bundle, tiny):
    record, path = choose_on_device(bundle, runs=30, log=lambda *_: None)
    raw = record.to_dict()
    raw["chosen"]["sha256"] = "0" * 64
    path.write_text(json.dumps(raw))
    assert_user_error(edgetune_without_torch("predict", bundle, tiny.images[0], timeout=120),
                      f"{path} was made for another bundle or was changed", "--choose")
    raw = record.to_dict()
    raw["timings"][0]["file"] = "model.elsewhere.onnx"
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="names model.elsewhere.onnx, which this bundle does not hold"):
        runtime.load(bundle)


def test_choose_needs_something_to_choose_and_refuses_flags_it_would_ignore(bundle):
    m = read_manifest(bundle)
    m.artifacts = [a for a in m.artifacts if a.file == FP32]
    m.recommended = {"cpu": {"file": FP32, "why": "the only CPU artifact"}}
    write_manifest(bundle, m)
    assert_user_error(edgetune_without_torch("bench", bundle, "--choose", timeout=60),
                      "nothing to choose", f"holds one CPU artifact ({FP32})")
    assert_user_error(edgetune_without_torch("bench", bundle, "--choose", "--batch", "8", timeout=60),
                      "--choose times every CPU artifact at batch 1", "drop --batch")
