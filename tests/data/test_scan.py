import pytest

from edgetune.data.scan import scan
from edgetune.errors import DataError


def test_train_val_layout(digits_dir):
    s = scan(digits_dir)
    assert s.layout == "train/val" and s.classes == [str(i) for i in range(10)]
    assert len(s.train) + len(s.val) == 1797


def test_single_folder_is_split_stratified_and_seeded(small_digits):
    a = scan(small_digits, val_fraction=0.25, seed=1)
    b = scan(small_digits, val_fraction=0.25, seed=1)
    c = scan(small_digits, val_fraction=0.25, seed=2)
    assert a.layout == "split"
    assert [s.path for s in a.val] == [s.path for s in b.val]
    assert [s.path for s in a.val] != [s.path for s in c.val]
    assert all(n == 6 for n in a.counts("val").values())
    assert not {s.path for s in a.val} & {s.path for s in a.train}


def test_hidden_files_are_skipped(small_digits, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(small_digits, root)
    (root / "0" / ".DS_Store").write_bytes(b"junk")
    assert len(scan(root).train) + len(scan(root).val) == 72


def test_unreadable_image_is_named(small_digits, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(small_digits, root)
    (root / "1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        scan(root)
