#!/usr/bin/env python
"""Fault injection: break things the way users and machines do, run the real CLI, check the answer.

    python tools/faults.py                          # the whole matrix, a few minutes on 2 cores
    python tools/faults.py -k resume -k nan         # only cases whose name holds a word
    python tools/faults.py --markdown faults.md     # also write the table as Markdown

Every case runs `python -m edgetune.cli` in a subprocess in its own temp folder ($W in the
table), on 3 classes of the embedded digits (24 PNGs each) with a from-scratch resnet18 at
32 px. A case passes
when the exit code is the expected one and the first stderr line says the expected thing;
refusals must be exactly one `edgetune: error:` line, successes may print only
`edgetune: warning:` lines, and nothing may print a traceback. Exit status: 1 if any case fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

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


@dataclass
class Ctx:
    data: Path  # clean data: DIR/<class>/*.png, copied per case
    bundle: Path | None = None  # a real bundle, copied per case
    bundle_proc: subprocess.CompletedProcess | None = None  # the `edgetune run` that built it
    bundle_seconds: float = 0.0


@dataclass
class Result:
    case: Case
    rc: int
    first: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


CASES: list[Case] = []


def case(name: str, rc: int, says: str):
    def register(fn):
        CASES.append(Case(name, rc, says, fn))
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

@case("clean run (the bundle below)", 0, "")
def _(ctx, w):
    return ctx.bundle_proc, []


@case("tampered artifact", 2, "fails its integrity check")
def _(ctx, w):
    b = Path(shutil.copytree(ctx.bundle, w / "b"))
    target = b / "model.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return cli("predict", b, first_png(ctx.data / "0"), "--artifact", "model.onnx"), []


@case("manifest names ../x", 2, "'../x'")
def _(ctx, w):
    return _predict_edited(ctx, w, lambda m: m["artifacts"][0].update(file="../x")), []


@case("newer bundle version", 2, "upgrade edgetune")
def _(ctx, w):
    return _predict_edited(ctx, w, lambda m: m.update(version=99)), []


def _predict_edited(ctx, w, change):
    b = Path(shutil.copytree(ctx.bundle, w / "b"))
    manifest = json.loads((b / "manifest.json").read_text())
    change(manifest)
    (b / "manifest.json").write_text(json.dumps(manifest))
    return cli("predict", b, first_png(ctx.data / "0"))


# ---- running and judging ------------------------------------------------------------------

def judge(c: Case, proc: subprocess.CompletedProcess, extra: list[str], seconds: float,
          root: Path) -> Result:
    lines = proc.stderr.replace(str(root), "$W").strip().splitlines()
    first = lines[0] if lines else ""
    problems = list(extra)
    if proc.returncode != c.rc:
        problems.append(f"exit {proc.returncode}, expected {c.rc}")
    if "Traceback" in proc.stderr:
        problems.append("traceback")
    if c.rc == 2 and (len(lines) != 1 or not first.startswith("edgetune: error: ")):
        problems.append(f"{len(lines)} stderr lines, expected one 'edgetune: error:' line")
    if c.rc == 0 and not all(ln.startswith("edgetune: warning: ") for ln in lines):
        problems.append("stderr holds more than edgetune warnings")
    if c.says and c.says not in first:
        problems.append(f"first line lacks {c.says!r}")
    if not c.says and lines:
        problems.append("expected a silent stderr")
    return Result(c, proc.returncode, first, problems, seconds)


def make_data(root: Path) -> Path:
    from edgetune.data.demo import ensure_digits

    digits = ensure_digits(root / "digits")
    data = root / "small"
    for c in ("0", "1", "7"):
        (data / c).mkdir(parents=True)
        for p in sorted((digits / "train" / c).glob("*.png"))[:24]:
            shutil.copy(p, data / c / p.name)
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", action="append", default=[], help="run only cases whose name holds this word")
    p.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    p.add_argument("--keep", type=Path, help="work here and keep the files (default: a temp folder)")
    args = p.parse_args(argv)
    # Piped to a log, rich would fold the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    cases = [c for c in CASES if not args.k or any(k.lower() in c.name.lower() for k in args.k)]
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgetune-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        ctx = Ctx(make_data(root))
        if any(c.name in _NEEDS_BUNDLE for c in cases):
            console.print("building one real bundle (edgetune run) for the bundle cases …")
            ctx.bundle = root / "bundle"
            start = time.perf_counter()
            ctx.bundle_proc = cli("run", "--data", ctx.data, "--out", ctx.bundle, *FAST,
                                  "--calib-samples", "32", "--bench-runs", "5")
            ctx.bundle_seconds = time.perf_counter() - start
        results = []
        for i, c in enumerate(cases):
            w = root / f"case{i:02d}"
            w.mkdir()
            start = time.perf_counter()
            proc, extra = c.make(ctx, w)
            seconds = ctx.bundle_seconds if c.name.startswith("clean run") else time.perf_counter() - start
            results.append(judge(c, proc, extra, seconds, root))
            r = results[-1]
            console.print(f"[{'green' if r.ok else 'red'}]{'pass' if r.ok else 'FAIL'}[/] {c.name} "
                          f"({r.seconds:.1f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t0
    console.print(table(results, total))
    if args.markdown:
        args.markdown.write_text(markdown(results, total))
    return 0 if all(r.ok for r in results) else 1


_NEEDS_BUNDLE = {"clean run (the bundle below)", "tampered artifact", "manifest names ../x",
                 "newer bundle version"}


def _expected(c: Case) -> str:
    return f"{c.rc}: {c.says}" if c.says else f"{c.rc}: silent stderr"


def _got(r: Result, width: int = 150) -> str:
    text = f"{r.rc}: {r.first}" if r.first else f"{r.rc}: (no stderr)"
    text = text.replace("edgetune: ", "", 1)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: list[Result], total: float) -> Table:
    t = Table(title=f"fault injection: {sum(r.ok for r in results)}/{len(results)} pass in {total:.0f} s",
              title_justify="left", show_lines=False)
    for col in ("case", "expected (exit: first line holds)", "got (exit: first stderr line)", "", "s"):
        t.add_column(col, overflow="fold")
    for r in results:
        t.add_row(r.case.name, _expected(r.case), _got(r) + "".join(f" [{p}]" for p in r.problems),
                  "[green]pass[/]" if r.ok else "[red]FAIL[/]", f"{r.seconds:.1f}")
    return t


def markdown(results: list[Result], total: float) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    rows = ["| case | expected (exit: first line holds) | got (exit: first stderr line) | result | s |",
            "|---|---|---|---|---:|"]
    for r in results:
        got = _got(r, width=200) + "".join(f" [{p}]" for p in r.problems)
        rows.append(f"| {cell(r.case.name)} | {cell(_expected(r.case))} | {cell(got)} | "
                    f"{'pass' if r.ok else '**FAIL**'} | {r.seconds:.1f} |")
    summary = f"{sum(r.ok for r in results)}/{len(results)} pass, {total:.0f} s in all."
    return "\n".join(rows) + "\n\n" + summary + "\n"


if __name__ == "__main__":
    sys.exit(main())
