"""Messy data: every case either handled as a user expects (with a one-line warning) or refused
in one line that names the files, exit code 2, no traceback. Real files on disk, real CLI."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pytest

from edgetune.data.image_check import find_unreadable
from edgetune.data.scan import Sample, scan
from edgetune.errors import DataError, DataWarning
from edgetune.train import checkpoint
from edgetune.train.data import ImageDataset
from tests.support.cli import FAST, assert_user_error, edgetune, warning_lines


def copy_of(small_digits: Path, dest: Path) -> Path:
    shutil.copytree(small_digits, dest)
    return dest


def png(data: Path, cls: str = "0") -> bytes:
    return sorted((data / cls).glob("*.png"))[0].read_bytes()


def truncate(path: Path, data: bytes) -> None:
    path.write_bytes(data[: len(data) // 2])  # a valid header, half the pixels


def as_train_val(data: Path) -> Path:
    """The split layout turned into DIR/train/<class> + DIR/val/<class> (two val images each)."""
    for c in [d.name for d in data.iterdir() if d.is_dir()]:
        (data / "train" / c).parent.mkdir(exist_ok=True)
        shutil.move(data / c, data / "train" / c)
        (data / "val" / c).mkdir(parents=True)
        for p in sorted((data / "train" / c).glob("*.png"))[:2]:
            shutil.move(p, data / "val" / c / p.name)
    return data


# Each case: make the mess, the extra flags, what the one error line must say.
def _zero_byte(d):
    (d / "1" / "empty.png").write_bytes(b"")
    return d, [], ["empty.png (0 bytes)", "--skip-bad-images"]


def _not_an_image(d):
    (d / "7" / "photo.jpg").write_text("<html>a web page saved as .jpg</html>")
    return d, [], ["photo.jpg (not an image)"]


def _truncated_verified(d):
    truncate(d / "0" / "torn.png", png(d))
    return d, ["--verify-images"], ["torn.png (truncated)"]


def _truncated_found_while_loading(d):
    truncate(d / "0" / "torn.png", png(d))  # headers pass: the loader finds it
    return d, [], ["torn.png", "--verify-images", "--skip-bad-images"]


def _many_bad_files_are_counted(d):
    for i in range(5):
        (d / "1" / f"bad{i}.png").write_bytes(b"")
    return d, [], ["cannot read 5 image file(s)", "bad0.png", "and 2 more"]


def _bad_files_in_both_splits(d):
    as_train_val(d)
    (d / "train" / "0" / "a.png").write_bytes(b"")
    (d / "val" / "1" / "b.png").write_bytes(b"")
    return d, [], ["cannot read 2 image file(s)", "a.png (0 bytes)", "b.png (0 bytes)"]


def _empty_class_folder(d):
    (d / "9").mkdir()
    return d, [], ["9 has no images", "remove the folder"]


def _single_class(d):
    for c in ("1", "7"):
        shutil.rmtree(d / c)
    return d, [], ["one class (0)", "at least two"]


def _classes_differ(d):
    as_train_val(d)
    shutil.move(d / "val" / "7", d / "val" / "8")
    return d, [], ["only in train/: 7", "only in val/: 8"]


def _train_without_val(d):
    as_train_val(d)
    shutil.rmtree(d / "val")
    return d, [], ["train/ but no val/", f"--data {d / 'train'}"]


def _no_validation_images(d):
    for c in ("0", "1", "7"):
        for p in sorted((d / c).glob("*.png"))[1:]:
            p.unlink()
    return d, [], ["no validation images"]


def _every_image_of_a_class_unreadable(d):
    for p in (d / "7").glob("*.png"):
        p.write_bytes(b"")
    return d, ["--skip-bad-images"], ["7", "no readable images left"]


def _loose_images(d):
    for c in ("0", "1", "7"):
        for p in (d / c).glob("*.png"):
            shutil.move(p, d / f"{c}_{p.name}")
        (d / c).rmdir()
    return d, [], ["no class folders", "72 images directly"]


ERRORS = [_zero_byte, _not_an_image, _truncated_verified, _truncated_found_while_loading,
          _many_bad_files_are_counted, _bad_files_in_both_splits, _empty_class_folder, _single_class, _classes_differ,
          _train_without_val, _no_validation_images, _every_image_of_a_class_unreadable, _loose_images]


@pytest.mark.parametrize("mess", ERRORS, ids=[f.__name__.strip("_") for f in ERRORS])
def test_refused_in_one_line(mess, small_digits, tmp_path):
    data, flags, needles = mess(copy_of(small_digits, tmp_path / "d"))
    proc = edgetune("train", "--data", data, "--out", tmp_path / "o", *FAST, *flags)
    assert_user_error(proc, *needles)


def test_usable_mess_trains_with_one_warning_line_each(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    (d / "0" / "notes.txt").write_text("who took these")
    (d / "0" / "IMG_0001.HEIC").write_bytes(b"\x00")
    (d / "1" / "empty.png").write_bytes(b"")
    truncate(d / "1" / "torn.png", png(d))
    (d / "9").mkdir()  # a class with 4 images: 3 train, 1 val
    for p in sorted((d / "7").glob("*.png"))[:4]:
        shutil.copy(p, d / "9" / p.name)
    (d / "9" / ".DS_Store").write_bytes(b"\x00")  # hidden: skipped silently
    (d / "Thumbs.db").write_bytes(b"\x00")  # an OS dropping: skipped silently
    out = tmp_path / "o"
    lines = warning_lines(edgetune("train", "--data", d, "--out", out, *FAST, "--skip-bad-images"))
    assert len(lines) == 3, lines
    assert "left out 2 file(s) that are not images by extension (.heic ×1, .txt ×1)" in lines[0]
    assert "IMG_0001.HEIC" in lines[0] and "notes.txt" in lines[0]
    assert "left out 2 unreadable image(s)" in lines[1]
    assert "empty.png (0 bytes)" in lines[1] and "torn.png (truncated)" in lines[1]
    assert "fewer than 5 training images: 9 (3)" in lines[2]
    assert ".DS_Store" not in "".join(lines) and "Thumbs" not in "".join(lines)
    # Export re-scans with the checkpoint's settings: the same files are left out again.
    ckpt = checkpoint.load(out / "checkpoints" / "best.pt")
    from edgetune.train import load_splits

    with pytest.warns(DataWarning):
        splits = load_splits(ckpt)
    assert splits.classes == ["0", "1", "7", "9"]
    assert not {"empty.png", "torn.png"} & {s.path.name for s in splits.train + splits.val}


def test_a_class_with_one_image_warns_that_it_is_not_validated(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    (d / "9").mkdir()
    shutil.copy(sorted((d / "7").glob("*.png"))[0], d / "9" / "only.png")
    with pytest.warns(DataWarning) as record:
        s = scan(d)
    messages = [str(w.message) for w in record]
    assert any("no validation image: 9" in m for m in messages), messages
    assert s.counts("train")[3] == 1 and s.counts("val")[3] == 0


def test_header_scan_passes_a_truncated_file_that_verify_finds(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    truncate(d / "0" / "torn.png", png(d))
    assert len(scan(d).train) + len(scan(d).val) == 73  # headers only: cheap, and it passes
    with pytest.raises(DataError, match=r"torn\.png \(truncated\)"):
        scan(d, verify_images=True)
    with pytest.warns(DataWarning, match=r"left out 1 unreadable image"):
        s = scan(d, skip_bad_images=True)
    assert len(s.train) + len(s.val) == 72


def test_broken_link_is_named(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    (d / "0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match=r"gone\.png \(broken link\)"):
        scan(d)


def test_unreadable_reasons(tmp_path, small_digits):
    good = sorted((small_digits / "0").glob("*.png"))[0]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    truncate(tmp_path / "torn.png", good.read_bytes())
    paths = [good, tmp_path / "empty.png", tmp_path / "text.png", tmp_path / "torn.png"]
    assert find_unreadable(paths) == {paths[1]: "0 bytes", paths[2]: "not an image"}
    assert find_unreadable(paths, full=True) == {paths[1]: "0 bytes", paths[2]: "not an image",
                                                 paths[3]: "truncated"}


def test_loader_skips_an_image_that_broke_after_the_scan(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    files = sorted((d / "0").glob("*.png"))[:3]
    samples = [Sample(p, i) for i, p in enumerate(files)]
    files[1].write_bytes(b"")  # after the scan: a network drive hiccup, a file being replaced
    with pytest.raises(DataError, match="--skip-bad-images"):
        ImageDataset(samples, transform=lambda im: im.size)[1]
    ds = ImageDataset(samples, transform=lambda im: im.size, skip_bad=True)
    with pytest.warns(DataWarning, match=re.escape(f"left out {files[1]}")):
        assert ds[1] == (ds[2][0], 2)  # its place taken by the next readable image
    assert ds[0][1] == 0 and len(ds) == 3
    for p in files:
        p.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="none of the 3 images"):
            ds[0]


def test_yaml_can_set_the_flags_and_nonsense_is_refused(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    (d / "1" / "empty.png").write_bytes(b"")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("skip-bad-images: true\n")
    proc = edgetune("train", "--config", cfg, "--data", d, "--out", tmp_path / "o", *FAST)
    assert "left out 1 unreadable image(s)" in "".join(warning_lines(proc))
    cfg.write_text("verify-images: maybe\n")
    assert_user_error(edgetune("train", "--config", cfg, "--data", d, "--out", tmp_path / "p", *FAST),
                      "verify-images: 'maybe' is not allowed", "true or false")


def test_run_scans_twice_but_warns_once(small_digits, tmp_path):
    d = copy_of(small_digits, tmp_path / "d")
    (d / "0" / "notes.txt").write_text("who took these")
    proc = edgetune("run", "--data", d, "--out", tmp_path / "o", *FAST, "--calib-samples", "16",
                    "--bench-runs", "2", "--cpu-engines", "onnxruntime")  # the scan is the point
    lines = warning_lines(proc)  # training's scan and export's re-scan say the same thing
    assert len(lines) == 1 and "notes.txt" in lines[0], lines
