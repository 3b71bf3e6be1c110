"""Data at scale: the streaming reader, evaluation streamed vs held in memory, --eval-max,
and runs refused up front when they cannot fit."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from edgetune.data.reader import ChunkReader, read_all
from edgetune.data.scan import Sample, scan
from edgetune.evaluate import AUTO_EVAL_MAX, EvalSet, eval_subset, logits_of, top1
from edgetune.preprocess import Preprocess
from tests.support.cli import FAST, assert_user_error, edgetune

PRE = Preprocess(size=(48, 48), resize=48)


def test_streamed_evaluation_equals_held_in_memory(trained_run, digits_dir):
    """Every logit and the top-1, streamed in chunks vs the whole val split preprocessed at once."""
    from edgetune.runtime.ort_backend import OrtSession

    out, manifest = trained_run
    pre = Preprocess.from_dict(manifest.input)
    val = scan(digits_dir).val
    session = OrtSession(out / "model.onnx", device="cpu")
    held = pre.batch([s.path for s in val])  # the old way: every image in memory
    expected = np.concatenate([session.run(held[i:i + 64]) for i in range(0, len(held), 64)])
    data = EvalSet(val, pre)
    assert np.array_equal(read_all(data.paths, pre, chunk=7, workers=3), held)
    assert np.array_equal(logits_of(session, data), expected)
    y = np.asarray([s.label for s in val])
    assert top1(session, data) == round(float((expected.argmax(1) == y).mean()), 4)
    assert top1(session, data) == manifest.artifacts[0].top1  # what the run recorded for fp32


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_reader_holds_a_bounded_number_of_chunks(digits_dir, prefetch):
    paths = [s.path for s in scan(digits_dir).train][:400]
    reader = ChunkReader(paths, PRE, chunk=16, prefetch=prefetch, workers=2)
    tracemalloc.start()
    try:
        seen = 0
        for start, x in reader:
            assert start == seen and x.shape == (min(16, 400 - start), 3, 48, 48)
            seen += len(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 400 and reader.chunks_read == 25
    assert reader.peak_chunks == prefetch + 1
    # numpy reports its buffers to tracemalloc: the peak is a few chunks, not 400 images.
    assert peak < (prefetch + 2) * reader.chunk_bytes() + (2 << 20) < 400 * 3 * 48 * 48 * 4


def test_reader_names_an_unreadable_image(tmp_path):
    from edgetune.errors import InputError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png"):
        list(ChunkReader([bad], PRE))


def _samples(per_class: dict[int, int]) -> list[Sample]:
    from pathlib import Path

    return [Sample(Path(f"/d/{k}/{i}.png"), k) for k, n in per_class.items() for i in range(n)]


def test_eval_max_is_a_seeded_stratified_subset():
    samples = _samples({0: 600, 1: 300, 2: 100})
    picked, record = eval_subset(samples, 90)
    assert len(picked) == 90 and Counter(s.label for s in picked) == {0: 30, 1: 30, 2: 30}
    assert record == {"of": 1000, "eval_max": 90, "subset": "stratified, seed 0"}
    assert eval_subset(samples, 90)[0] == picked  # seeded: the same images every run
    assert eval_subset(samples, 0) == (samples, {"of": 1000, "eval_max": "all", "subset": "all"})
    assert eval_subset(samples, None)[1]["subset"] == "all"  # auto: exact below the threshold
    big = _samples({0: AUTO_EVAL_MAX, 1: AUTO_EVAL_MAX // 2})
    auto, record = eval_subset(big, None)
    assert len(auto) == AUTO_EVAL_MAX and record["eval_max"] == f"auto ({AUTO_EVAL_MAX})"


def test_eval_max_is_recorded_in_the_manifest(reexported_run, digits_dir):
    m, logs, copy = reexported_run.manifest, reexported_run.log, reexported_run.out
    val = scan(digits_dir).val
    assert m.evaluation["images"] == 40 and m.evaluation["of"] == len(val)
    assert m.evaluation["subset"] == "stratified, seed 0" and m.evaluation["eval_max"] == 40
    assert json.loads((copy / "manifest.json").read_text())["evaluation"]["images"] == 40
    assert any(f"40 of {len(val)} val images" in line for line in logs), logs


def test_a_run_that_cannot_fit_is_refused_up_front(small_digits, tmp_path):
    proc = edgetune("run", "--data", small_digits, *FAST, "--memory-limit", "50MB",
                    "--out", tmp_path / "out")
    assert_user_error(proc, "training needs about", "--memory-limit allows 50.0 MB",
                      "lower --batch-size or --image-size")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_calibration_beyond_the_machine_is_refused_up_front(small_digits, tmp_path):
    # resnet152 at 1024 px: ~1 GB of layer outputs per image, all kept by the entropy calibrator.
    proc = edgetune("run", "--data", small_digits, "--model", "resnet152", "--weights", "none",
                    "--image-size", "1024", "--batch-size", "1", "--calib-samples", "5000",
                    "--calib-method", "entropy",
                    "--out", tmp_path / "out")
    assert_user_error(proc, "INT8 calibration needs about", "lower --calib-samples")


def test_limits_name_the_disk_and_memory(tmp_path):
    import shutil

    from edgetune.limits import ResourceError, available_memory, require_disk, require_memory

    with pytest.raises(ResourceError, match="more memory .* available; lower it"):
        require_memory("a stage", available_memory() * 2, "twice the machine", "lower it")
    require_memory("a stage", 1 << 20, "1 MB", "lower it")  # fits
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ResourceError, match="of disk under"):
        require_disk("a stage", free * 2, tmp_path / "not" / "yet", "twice the disk", "free some")
