"""The cases tools/faults.py runs: each breaks something the way users and machines do (messy
data, a run killed or interrupted, a file tampered with), runs the real CLI in its own folder and
returns the finished process with any problem it saw beyond the exit code and stderr, which the
runner judges. `@case(name, exit code, what the first stderr line says)` registers one."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FAST = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--workers", "0"]
# Long enough to be stopped part-way: 2 epochs of 7 steps, a checkpoint every 2.
LONG = ["--weights", "none", "--image-size", "32", "--epochs", "2", "--workers", "0",
        "--batch-size", "8", "--checkpoint-every", "2"]
LAST = Path("checkpoints/last.pt")


@dataclass
class Case:
    name: str
    rc: int
    says: str  # in the first stderr line ("" for a clean success: no stderr at all)
    make: Callable  # (Ctx, work dir) -> (CompletedProcess, [extra problems])
    needs_bundle: bool = False  # reads Ctx.bundle: the runner builds one real bundle first


@dataclass
class Ctx:
    data: Path  # clean data: DIR/<class>/*.png, copied per case
    bundle: Path | None = None  # a real bundle, copied per case
    bundle_proc: subprocess.CompletedProcess | None = None  # the `edgetune run` that built it
    bundle_seconds: float = 0.0


CASES: list[Case] = []


def case(name: str, rc: int, says: str, needs_bundle: bool = False):
    def register(fn):
        CASES.append(Case(name, rc, says, fn, needs_bundle))
        return fn
    return register


def cli(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgetune.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def data_copy(ctx: Ctx, w: Path) -> Path:
    return Path(shutil.copytree(ctx.data, w / "data"))


def train(data: Path, w: Path, *flags) -> subprocess.CompletedProcess:
    return cli("train", "--data", data, "--out", w / "out", *FAST, *flags)


def first_png(d: Path) -> Path:
    return sorted(d.glob("*.png"))[0]


# ---- messy data ---------------------------------------------------------------------------

@case("zero-byte image", 2, "(0 bytes)")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "1" / "empty.png").write_bytes(b"")
    return train(d, w), []


@case("not an image, image extension", 2, "(not an image)")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "7" / "page.jpg").write_text("<html>saved from a browser</html>")
    return train(d, w), []


@case("truncated image, headers only", 2, "truncated")
def _(ctx, w):
    d = data_copy(ctx, w)
    good = first_png(d / "0").read_bytes()
    (d / "0" / "torn.png").write_bytes(good[: len(good) // 2])
    return train(d, w), []  # the header passes: the loader names it


@case("truncated image, --verify-images", 2, "torn.png (truncated)")
def _(ctx, w):
    d = data_copy(ctx, w)
    good = first_png(d / "0").read_bytes()
    (d / "0" / "torn.png").write_bytes(good[: len(good) // 2])
    return train(d, w, "--verify-images"), []


@case("bad images, --skip-bad-images", 0, "left out 2 unreadable image(s)")
def _(ctx, w):
    d = data_copy(ctx, w)
    good = first_png(d / "0").read_bytes()
    (d / "0" / "torn.png").write_bytes(good[: len(good) // 2])
    (d / "1" / "empty.png").write_bytes(b"")
    return train(d, w, "--skip-bad-images"), []


@case("non-image files in a class", 0, "left out 2 file(s) that are not images")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "0" / "notes.txt").write_text("who took these")
    (d / "0" / "IMG_0001.heic").write_bytes(b"\x00")
    return train(d, w), []


@case("hidden files, OS droppings", 0, "")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "0" / ".DS_Store").write_bytes(b"\x00")
    (d / "1" / "._0001.png").write_bytes(b"\x00")
    (d / "Thumbs.db").write_bytes(b"\x00")
    (d / "__MACOSX" / "0").mkdir(parents=True)
    return train(d, w), []


@case("class with 3 images", 0, "fewer than 5 training images: 9 (3)")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "9").mkdir()
    for p in sorted((d / "7").glob("*.png"))[:4]:
        shutil.copy(p, d / "9" / p.name)
    return train(d, w), []


@case("empty class folder", 2, "has no images")
def _(ctx, w):
    d = data_copy(ctx, w)
    (d / "9").mkdir()
    return train(d, w), []


@case("one class", 2, "one class")
def _(ctx, w):
    d = data_copy(ctx, w)
    shutil.rmtree(d / "1"), shutil.rmtree(d / "7")
    return train(d, w), []


@case("classes differ train/ vs val/", 2, "only in train/: 7; only in val/: 8")
def _(ctx, w):
    d = _as_train_val(data_copy(ctx, w))
    shutil.move(d / "val" / "7", d / "val" / "8")
    return train(d, w), []


@case("train/ without val/", 2, "train/ but no val/")
def _(ctx, w):
    d = _as_train_val(data_copy(ctx, w))
    shutil.rmtree(d / "val")
    return train(d, w), []


@case("no validation images", 2, "no validation images")
def _(ctx, w):
    d = data_copy(ctx, w)
    for c in ("0", "1", "7"):
        for p in sorted((d / c).glob("*.png"))[1:]:
            p.unlink()
    return train(d, w), []


def _as_train_val(d: Path) -> Path:
    for c in ("0", "1", "7"):
        (d / "train").mkdir(exist_ok=True)
        shutil.move(d / c, d / "train" / c)
        (d / "val" / c).mkdir(parents=True)
        for p in sorted((d / "train" / c).glob("*.png"))[:2]:
            shutil.move(p, d / "val" / c / p.name)
    return d


# ---- nothing lost -------------------------------------------------------------------------

@case("non-empty --out", 2, "is not empty")
def _(ctx, w):
    (w / "out").mkdir()
    (w / "out" / "mine.txt").write_text("keep me")
    proc = train(ctx.data, w)
    kept = (w / "out" / "mine.txt").read_text() == "keep me"
    return proc, [] if kept else ["mine.txt was changed"]


@case("NaN loss (--lr 1e9)", 2, "the loss became nan")
def _(ctx, w):
    proc = train(ctx.data, w, "--lr", "1e9", "--warmup-epochs", "0", "--unfreeze", "all",
                 "--batch-size", "8", "--checkpoint-every", "1")
    problems = [] if (w / "out" / LAST).is_file() else ["no last good checkpoint"]
    return proc, problems


@case("SIGKILL, then --resume", 0, "")
def _(ctx, w):
    out = w / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgetune.cli", "train", "--data", str(ctx.data),
                             "--out", str(out), *LONG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(out / LAST, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = cli("train", "--resume", "--out", out)  # settings come back from out/config.yaml
    return resumed, _finished(out, 2)


@case("Ctrl-C, then the printed command", 2, "interrupted; state saved")
def _(ctx, w):
    out = w / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgetune.cli", "train", "--data", str(ctx.data),
                             "--out", str(out), *LONG], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            # As from a terminal: a background shell job starts with SIGINT ignored.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(out / LAST, proc)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=300)[1]
    stopped = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    if "resume with: " not in stderr:
        return stopped, ["no resume command"]
    command = shlex.split(stderr.strip().split("resume with: ", 1)[1])
    resumed = cli(*command[1:])
    problems = [] if resumed.returncode == 0 else [f"resume exit {resumed.returncode}"]
    return stopped, problems + _finished(out, 2)


@case("corrupt checkpoint, --resume", 2, "cannot be loaded safely")
def _(ctx, w):
    out = w / "out"
    first = train(ctx.data, w, "--checkpoint-every", "1")
    if first.returncode != 0:
        return first, ["the clean run failed"]
    data = (out / LAST).read_bytes()
    (out / LAST).write_bytes(data[: len(data) // 3])
    return cli("train", "--resume", "--out", out), []


@case("checkpoint pickle that runs code", 2, "never runs their code")
def _(ctx, w):
    import torch

    marker = w / "ran"
    torch.save({"format": "edgetune-checkpoint", "version": 1, "x": _RunsCode(marker)}, w / "evil.pt")
    proc = cli("export", w / "evil.pt", "--out", w / "o")
    return proc, ["the pickle ran code"] if marker.exists() else []


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.time() + limit
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def _finished(out: Path, epochs: int) -> list[str]:
    from edgetune.train import checkpoint

    state = checkpoint.load(out / LAST)
    return [] if state["epoch"] == epochs else [f"stopped at epoch {state['epoch']}"]


# ---- nothing trusted blindly --------------------------------------------------------------

@case("clean run (the bundle below)", 0, "", needs_bundle=True)
def _(ctx, w):
    return ctx.bundle_proc, []


@case("tampered artifact", 2, "fails its integrity check", needs_bundle=True)
def _(ctx, w):
    b = Path(shutil.copytree(ctx.bundle, w / "b"))
    target = b / "model.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return cli("predict", b, first_png(ctx.data / "0"), "--artifact", "model.onnx"), []


@case("manifest names ../x", 2, "'../x'", needs_bundle=True)
def _(ctx, w):
    return _predict_edited(ctx, w, lambda m: m["artifacts"][0].update(file="../x")), []


@case("newer bundle version", 2, "upgrade edgetune", needs_bundle=True)
def _(ctx, w):
    return _predict_edited(ctx, w, lambda m: m.update(version=99)), []


def _predict_edited(ctx, w, change):
    b = Path(shutil.copytree(ctx.bundle, w / "b"))
    manifest = json.loads((b / "manifest.json").read_text())
    change(manifest)
    (b / "manifest.json").write_text(json.dumps(manifest))
    return cli("predict", b, first_png(ctx.data / "0"))
