"""The frozen-prefix feature cache: same training as the uncached path, on disk when memory is
short, reused when valid, rebuilt when stale or corrupt, and bad flags refused in one line."""

import json
import shutil

import numpy as np
import pytest

from edgetune.config import TrainConfig
from edgetune.train import train
from tests.support.cli import FAST, assert_user_error, edgetune


def _cfg(data, **kw):
    base = dict(data=str(data), model="resnet18", weights="none", image_size=32, unfreeze="1",
                epochs=2, batch_size=16, augment="none", workers=0)
    return TrainConfig(**{**base, **kw})


def _losses(result):
    return [h["train_loss"] for h in result.history], [h["val_loss"] for h in result.history]


def test_cached_and_uncached_train_alike(small_digits, tmp_path):
    """--augment none, a fixed seed: the suffix sees the same inputs in the same order, so the
    per-epoch losses agree to float tolerance (fp32 storage) and closely with fp16 storage."""
    logs = []
    cached = train(_cfg(small_digits, cache_dtype="float32"), tmp_path / "a", log=logs.append)
    uncached = train(_cfg(small_digits, cache="off"), tmp_path / "b", log=lambda *_: None)
    half = train(_cfg(small_digits), tmp_path / "c", log=lambda *_: None)
    assert all(h["cached"] for h in cached.history) and not any(h["cached"] for h in uncached.history)
    assert any("cache on" in line for line in logs)
    # --unfreeze 1 from scratch is honoured, with a warning: the blocks below never learn
    assert any("warning: 4 of 5 blocks stay frozen at their random initialisation" in line for line in logs)
    np.testing.assert_allclose(_losses(cached), _losses(uncached), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_losses(half), _losses(uncached), rtol=2e-2, atol=2e-2)


def test_small_memory_budget_goes_to_disk_and_estimate_holds(small_digits, tmp_path):
    logs = []
    cfg = _cfg(small_digits, augment="light", cache_views=2, cache_memory="0", epochs=1)
    result = train(cfg, tmp_path / "run", log=logs.append)
    assert result.epochs == 1
    fills = [line for line in logs if line.startswith("cache: filling")]
    assert fills and all("memory-mapped file" in line for line in fills), fills
    written = {p.parent.name: p.stat().st_size for p in (tmp_path / "run" / "cache").rglob("features.npy")}
    metas = [json.loads(p.read_text()) for p in (tmp_path / "run" / "cache").rglob("meta.json")]
    assert len(written) == len(metas) == 2  # train (2 views) and val
    for meta in metas:
        estimate = int(np.prod(meta["shape"])) * np.dtype(meta["dtype"]).itemsize
        actual = written[meta["key"]]
        assert abs(actual - estimate) <= 0.1 * estimate, (actual, estimate)


def test_rerun_reuses_and_corrupt_cache_is_rebuilt(small_digits, tmp_path):
    cache = tmp_path / "shared-cache"
    cfg = _cfg(small_digits, epochs=1, cache_dir=str(cache))
    first = train(cfg, tmp_path / "a", log=lambda *_: None)
    logs = []
    again = train(cfg, tmp_path / "b", log=logs.append)
    assert sum("cache: reusing" in line for line in logs) == 2, logs
    assert again.history[0]["train_loss"] == first.history[0]["train_loss"]
    # Flip bytes in the middle of one cache file: its checksum no longer matches.
    victim = next(cache.rglob("features.npy"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    logs = []
    third = train(cfg, tmp_path / "c", log=logs.append)
    assert any("checksum" in line and "rebuilding" in line for line in logs), logs
    assert third.history[0]["train_loss"] == first.history[0]["train_loss"]
    # Another run's features (other weights, same folder) are never taken for these.
    other = _cfg(small_digits, epochs=1, cache_dir=str(cache), seed=1)
    logs = []
    train(other, tmp_path / "d", log=logs.append)
    assert not any("reusing" in line for line in logs)


def test_unfreeze_all_does_not_cache(small_digits, tmp_path):
    logs = []
    result = train(_cfg(small_digits, unfreeze="all", epochs=1), tmp_path / "o", log=logs.append)
    assert not result.history[0]["cached"]
    assert any("cache off: nothing is frozen" in line for line in logs)


@pytest.mark.parametrize("args,needles", [
    (["--cache-views", "0"], ["--cache-views 0", "at least 1"]),
    (["--cache-views", "3", "--augment", "none"], ["identical views"]),
    (["--cache-memory", "lots"], ["--cache-memory", "4GB"]),
    (["--cache", "maybe"], ["--cache", "auto, off"]),
    (["--unfreeze-schedule", "head:2,9", "--epochs", "3"], ["more blocks than resnet18 has", "1..5"]),
    (["--unfreeze-schedule", "head2"], ["DEPTH:EPOCHS"]),
    (["--unfreeze-schedule", "head:1,2:1,1", "--epochs", "3"], ["increasing order"]),
    (["--unfreeze-schedule", "head:4,1"], ["--epochs 1"]),
    (["--device", "cuda"], ["--device cuda", "no CUDA GPU", "--device cpu"]),
])
def test_bad_cache_and_schedule_flags(small_digits, tmp_path, args, needles):
    flags = FAST + args if "--epochs" not in args else [f for f in FAST if f not in ("--epochs", "1")] + args
    assert_user_error(edgetune("train", "--data", small_digits, "--out", tmp_path / "o", *flags), *needles)


def test_unwritable_cache_dir_is_one_line(small_digits, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_user_error(edgetune("train", "--data", small_digits, "--out", tmp_path / "o", *FAST,
                               "--unfreeze", "head", "--cache-dir", blocker / "cache"),
                      "--cache-dir", "not writable", "--cache off")


def test_cuda_missing_under_torchrun_env_is_one_line(small_digits, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    proc = edgetune("train", "--data", small_digits, "--out", tmp_path / "o", *FAST, "--device", "cuda",
                    env={"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert_user_error(proc, "no CUDA GPU", "torchrun")
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_default_memory_budget_respects_a_container_limit(tmp_path, monkeypatch):
    # A cgroup v2 folder as a container sees it: 1 GiB allowed, 600 MiB already in use.
    from edgetune import limits
    from edgetune.train.cache import memory_budget

    (tmp_path / "memory.max").write_text(f"{1 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{600 << 20}\n")
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    room = limits.available_memory()
    assert room <= (1 << 30) - (600 << 20)  # the container's room, not the host's MemAvailable
    assert memory_budget(None) == int(0.4 * room)  # --cache-memory's default: 40% of that room
    assert memory_budget("2GB") == 2 << 30  # an explicit budget is the user's word
    (tmp_path / "memory.max").write_text("max\n")  # no limit: the host's available memory
    assert limits.available_memory() > (1 << 30) - (600 << 20)


# -- pruning to --cache-max ------------------------------------------------------------------

def _fake_entry(folder, name, nbytes, used):
    """A complete cache entry of `nbytes` features, last used at `used` (seconds)."""
    import os

    from edgetune.train.cache_folder import FORMAT

    place = folder / name
    place.mkdir(parents=True)
    np.save(place / "features.npy", np.zeros(nbytes, np.uint8))
    (place / "meta.json").write_text(json.dumps({"format": FORMAT, "key": name}))
    os.utime(place / "meta.json", (used, used))
    return place


def _key(i: int) -> str:
    return f"{i:024x}"


def test_prune_removes_least_recently_used_first_down_to_the_cap(tmp_path):
    from edgetune.train.cache_folder import entries, prune

    folder = tmp_path / "cache"
    # Created in one order, last used in another: the order of use decides.
    used = {_key(1): 300.0, _key(2): 100.0, _key(3): 400.0, _key(4): 200.0}
    for name, t in used.items():
        _fake_entry(folder, name, 10_000, 1e9 + t)
    size = sum(e.size for e in entries(folder))
    one = size // 4
    pruned = prune(folder, cap=size - one - 1)  # one entry too many: two must go
    assert [e.place.name for e in pruned.removed] == [_key(2), _key(4)]
    assert pruned.size == sum(e.size for e in entries(folder)) == 2 * one
    assert sorted(p.name for p in folder.iterdir()) == [_key(1), _key(3)]
    assert not prune(folder, cap=2 * one).removed  # at the cap: nothing to do
    assert prune(folder, cap=0).size == 0


def test_prune_keeps_fills_in_progress_and_what_is_not_a_cache_entry(tmp_path):
    import os
    import time

    from edgetune.train.cache_folder import DEBRIS_AGE_S, prune

    folder = tmp_path / "cache"
    busy = folder / _key(1)  # another worker's fill: features being written, no meta yet
    busy.mkdir(parents=True)
    (busy / ".features.4242.npy").write_bytes(b"\0" * 5000)
    dead = folder / _key(2)  # a killed fill's leftovers, untouched for longer than a fill takes
    dead.mkdir()
    (dead / ".features.99.npy").write_bytes(b"\0" * 5000)
    old = time.time() - DEBRIS_AGE_S - 60
    for p in (dead / ".features.99.npy", dead):
        os.utime(p, (old, old))
    (folder / "notes").mkdir()  # a --cache-dir shared with other things: not ours
    (folder / "notes" / "keep.txt").write_text("mine")
    (folder / "README").write_text("mine too")
    live = _fake_entry(folder, _key(3), 1000, time.time())
    tomb = folder / f".pruned-{_key(4)}-77"  # a removal a killed prune left half done
    tomb.mkdir()
    (tomb / "features.npy").write_bytes(b"\0" * 100)

    pruned = prune(folder, cap=1 << 30)  # far under the cap: only the dead fill goes
    assert [e.place.name for e in pruned.removed] == [_key(2)] and not pruned.removed[0].complete
    assert not dead.exists() and not tomb.exists() and busy.is_dir() and live.is_dir()
    pruned = prune(folder, cap=0)
    assert [e.place.name for e in pruned.removed] == [_key(3)]
    assert busy.is_dir() and (folder / "notes" / "keep.txt").is_file() and (folder / "README").is_file()
    assert pruned.size == 5000  # the fill in progress, kept above the cap


def _tiny_cache(data, folder):
    """A FeatureCache whose prefix is an 8x8 average pool: real fills, in milliseconds."""
    import torch
    from torch import nn

    from edgetune.data.scan import scan
    from edgetune.preprocess import Preprocess
    from edgetune.train.cache import CacheSettings, FeatureCache, Request
    from edgetune.train.data import eval_transform

    splits = scan(data)
    pre = Preprocess(size=(8, 8), resize=8)
    prefix = nn.AvgPool2d(4)
    settings = CacheSettings(folder, 1 << 30, "float32", 16, 0, torch.device("cpu"), seed=0)
    cache = FeatureCache(prefix, {"split": "test"}, settings, log=lambda *_: None)

    def get(role, samples):
        return cache.get(Request(role, samples, eval_transform(pre), 1, "none"), (3, 2, 2))
    return get, splits


def test_prune_never_removes_what_this_process_reads_and_reuse_counts_as_use(small_digits, tmp_path):
    import gc
    import os

    from edgetune.train.cache_folder import entries, prune

    folder = tmp_path / "cache"
    get, splits = _tiny_cache(small_digits, folder)
    train_features, val_features = get("train", splits.train), get("val", splits.val)
    assert len(splits.train) > len(splits.val)
    by_role = dict(zip(("val", "train"), sorted(entries(folder), key=lambda e: e.size)))
    assert len(by_role) == 2
    for e in by_role.values():  # both filled long ago
        os.utime(e.place / "meta.json", (1e9, 1e9))

    pruned = prune(folder, cap=0)
    assert not pruned.removed and pruned.size > 0  # both are read by this process
    del train_features, val_features
    gc.collect()
    assert get("val", splits.val) is not None  # a reuse: val's last use is now, train's long ago
    val = by_role["val"].place
    assert {e.place: e.used for e in entries(folder)}[val] > 1e9 + 3600
    pruned = prune(folder, cap=by_role["val"].size)
    assert [e.place for e in pruned.removed] == [by_role["train"].place]
    held = get("val", splits.val)
    assert not prune(folder, cap=0).removed  # in use again
    del held
    assert [e.place for e in prune(folder, cap=0).removed] == [val]


def test_cache_max_default_is_the_lesser_of_a_fixed_size_and_half_the_room(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from edgetune.train import cache_folder as cachemod

    folder = tmp_path / "cache"
    place = _fake_entry(folder, _key(1), 10, 1e9)
    with open(place / "features.npy", "r+b") as f:  # 1 GiB that the disk does not hold (sparse)
        f.truncate(1 << 30)
    free = {"bytes": 3 << 30}
    monkeypatch.setattr(cachemod.shutil, "disk_usage",
                        lambda p: SimpleNamespace(total=100 << 30, used=0, free=free["bytes"]))
    room = (3 << 30) + sum(e.size for e in cachemod.entries(folder))
    assert cachemod.disk_cap(None, folder) == room // 2  # what the cache holds counts as its room
    free["bytes"] = 500 << 30
    assert cachemod.disk_cap(None, folder) == cachemod.CAP == 50 << 30
    assert cachemod.disk_cap("2GB", folder) == 2 << 30  # the user's word, whatever the disk
    assert cachemod.disk_cap(None, tmp_path / "not-yet") == cachemod.CAP  # before the first fill


@pytest.mark.parametrize("settings,head_only,epochs,views,why", [
    (dict(cache="off"), False, 8, 0, "--cache off"),
    (dict(augment="none"), False, 8, 1, "one view serves every epoch"),
    (dict(cache_views=3), False, 8, 3, "--cache-views 3"),
    # blocks train: a fresh view every epoch, so caching would run the prefix as often as uncached
    (dict(), False, 8, 0, "nothing to save"),
    (dict(), False, 20, 8, "each serves 2.5 epochs"),
    (dict(cache_seed=0), False, 8, 8, "shared with other runs"),  # a search's trials reuse the views
    (dict(), True, 8, 1, "head only"),  # a linear head: reused views cost nothing measurable
    (dict(), True, 30, 4, "at most 4"),
    # few images a class: the head's augmentation is worth a fill every epoch
    (dict(per_class=5), True, 10, 10, "a fresh view every epoch"),
    (dict(per_class=20), True, 10, 10, "a fresh view every epoch"),
    (dict(per_class=27), True, 10, 1, "head only"),
    (dict(per_class=5, cache_views=2), True, 10, 2, "--cache-views 2"),
])
def test_auto_cache_draws_enough_views_or_stays_off(settings, head_only, epochs, views, why):
    from edgetune.train.prepare import plan_cache

    settings = dict(settings)  # the parameters are shared between reruns
    per_class = settings.pop("per_class", None)
    plan = plan_cache(TrainConfig(weights="none", image_size=32, epochs=epochs, **settings), 4, head_only, epochs,
                      per_class)
    assert (plan.views, why in plan.why) == (views, True), plan.why
    assert plan_cache(TrainConfig(weights="none", image_size=32), 0, False, 8).views == 0  # nothing frozen
