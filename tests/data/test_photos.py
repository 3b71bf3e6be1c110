"""The shipped photographs: every file credited under a license we may redistribute, installed
as package data, small; the split is stratified and fixed; the k-shot subsets nest."""

from __future__ import annotations

import fnmatch
import re

import pytest

from edgetune.data import photos
from edgetune.data.scan import scan
from tests.support import REPO

# What tools/make_photos.py lets through: no share-alike, no copyleft.
REDISTRIBUTABLE = {"Public Domain", "CC0-1.0", "CC-BY-2.0", "CC-BY-3.0", "CC-BY-4.0"}


def test_every_shipped_file_is_credited_with_an_allowed_license():
    files = {f"{cls}/{f.name}" for cls, fs in photos.shipped().items() for f in fs}
    rows = re.findall(r"^\| (\S+\.jpg) \| (.+?) \| (\S+) \| ([^|]+?) \| .* \|$",
                      (photos.SHIPPED / "LICENSES.md").read_text(encoding="utf-8"), re.M)
    assert {r[0] for r in rows} == files and len(rows) == len(files)
    assert {r[3] for r in rows} <= REDISTRIBUTABLE
    assert all(r[1].strip() and r[2].startswith("https://") for r in rows)  # author and source kept
    counts = {cls: len(fs) for cls, fs in photos.shipped().items()}
    assert min(counts.values()) >= 25, counts
    assert sum(f.stat().st_size for f in photos.SHIPPED.rglob("*")) < 3e6


def test_package_data_installs_every_shipped_file():
    """Each photographs folder is a listed (data-only) package whose package-data takes its files:
    setuptools warns about a folder of data it finds importable but not listed."""
    text = (REPO / "pyproject.toml").read_text()  # tomllib is Python 3.11+; we support 3.10
    listed = set(re.findall(r'"(edgetune\.data\.photos[\w.]*)"', text.split("[tool.setuptools]")[1].split("\n[")[0]))
    data = {m[0]: re.findall(r'"([^"]+)"', m[1])
            for m in re.findall(r'^"(edgetune\.data\.photos[\w.]*)" = \[(.*)\]$', text, re.M)}
    folders = {photos.SHIPPED, *(d for d in photos.SHIPPED.iterdir() if d.is_dir())}
    assert listed == set(data) == {"edgetune.data." + ".".join(d.relative_to(photos.SHIPPED.parent).parts)
                                   for d in folders}
    for f in photos.SHIPPED.rglob("*"):
        if f.is_file():
            package = "edgetune.data." + ".".join(f.parent.relative_to(photos.SHIPPED.parent).parts)
            assert any(fnmatch.fnmatch(f.name, p) for p in data[package]), f


def test_split_is_stratified_fixed_and_k_shots_nest(tmp_path):
    root = photos.ensure_photos(tmp_path / "photos")
    splits = scan(root)
    assert splits.classes == sorted(photos.shipped())
    for label in range(len(splits.classes)):
        train, val = splits.counts("train")[label], splits.counts("val")[label]
        assert train >= photos.MIN_TRAIN and val >= round(0.25 * (train + val))
    assert photos.split() == photos.split()  # the same every run
    k5, k10 = photos.ensure_k_shot(5, tmp_path / "k5"), photos.ensure_k_shot(10, tmp_path / "k10")
    names = {k: {p.relative_to(r / "train") for p in (r / "train").rglob("*.jpg")} for k, r in ((5, k5), (10, k10))}
    assert len(names[5]) == 5 * len(splits.classes) and names[5] < names[10]
    assert sorted(p.name for p in (k5 / "val").rglob("*.jpg")) == sorted(p.name for p in (root / "val").rglob("*.jpg"))
    with pytest.raises(Exception, match="1..20"):
        photos.ensure_k_shot(21, tmp_path / "k21")
