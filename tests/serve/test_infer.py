"""What a served request runs, without Triton: bounded image decoding, one error naming the bad
image, and the libpython Triton's Python backend is pointed at."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgetune import runtime
from edgetune.errors import InputError
from edgetune.preprocess import decode_image
from edgetune.serve import infer, libpython
from tests.support import REPO


def png(w: int, h: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (w, h)).save(buffer, "PNG")
    return buffer.getvalue()


def test_images_are_bounded_before_they_are_decoded():
    assert decode_image(png(40, 30)).size == (40, 30)
    with pytest.raises(InputError, match="over the 10-byte limit"):
        decode_image(png(40, 30), max_bytes=10)
    bomb = png(5000, 5000)  # 25 MP of zeros: a few kB on the wire
    assert len(bomb) < 50_000
    with pytest.raises(InputError, match="5000x5000 pixels is over"):
        decode_image(bomb, max_pixels=1_000_000)
    with pytest.raises(InputError, match="not a format Pillow reads"):
        decode_image(b"GIF89a but not really")
    with pytest.raises(InputError, match="bytes, not str"):
        decode_image("/etc/passwd")  # nothing a request sends is taken for a file name


def test_classify_images_names_the_image_that_fails(tiny):
    model = runtime.load(tiny.bundle)
    rows = np.array([[tiny.images[0].read_bytes()], [b"garbage"]], dtype=object)
    with pytest.raises(InputError, match="image 1: cannot decode"):
        infer.classify_images(model, rows)
    out = infer.classify_images(model, rows[:1])
    top = model.predict(tiny.images[0], topk=1)[0]
    assert out[infer.LABEL][0, 0].decode() == top[0]
    assert out[infer.SCORE][0, 0] == pytest.approx(top[1], abs=1e-6)


def test_this_python_can_serve_and_is_pointed_at_its_own_libpython(tmp_path, monkeypatch):
    assert libpython.check() == (True, "")  # this project's interpreters are built with a shared libpython
    monkeypatch.setenv("LD_LIBRARY_PATH", "/somewhere/else")
    lib = libpython.pin(tmp_path / "pin")
    assert (tmp_path / "pin" / lib.name).resolve() == lib.resolve()
    assert os.environ["LD_LIBRARY_PATH"] == f"{tmp_path / 'pin'}:/somewhere/else"
    # make runs the file with a bare interpreter, before anything is installed
    found = subprocess.run([sys.executable, REPO / "edgetune" / "serve" / "libpython.py"], capture_output=True,
                           text=True, timeout=60)
    assert found.returncode == 0 and found.stdout.strip() == sys.executable
