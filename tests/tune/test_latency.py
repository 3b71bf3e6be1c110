"""A trial's latency timed here: the fp32 graph of its model and size, exported once (traced),
timed, and remembered in OUT/latency.json for every later trial of that pair."""

from __future__ import annotations

import json

from edgetune.tune.latency import GRAPHS, MEMO, LatencyBook


def test_a_pair_is_exported_and_timed_once(tmp_path):
    lines: list[str] = []
    book = LatencyBook(tmp_path, None, num_classes=3, log=lines.append)
    p50, where = book.of("mobilenet_v3_small", 32)
    assert where == "here" and p50 > 0
    assert (tmp_path / GRAPHS / "mobilenet_v3_small-32.onnx").is_file()
    assert not lines  # traced, and the trace agreed: nothing to say
    assert json.loads((tmp_path / MEMO).read_text()) == {"mobilenet_v3_small-32": p50}
    (tmp_path / GRAPHS / "mobilenet_v3_small-32.onnx").unlink()
    again = LatencyBook(tmp_path, None, num_classes=3, log=lines.append)  # a resumed study
    assert again.of("mobilenet_v3_small", 32) == (p50, "here")
    assert not (tmp_path / GRAPHS / "mobilenet_v3_small-32.onnx").exists()  # read from the memo, not timed again
