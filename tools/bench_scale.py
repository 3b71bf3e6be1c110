"""Data at scale: `edgetune run` at 224 px on synthetic ImageFolders of 1k, 10k and 100k images.

Per size: peak resident memory (the whole run, and per stage), wall time per stage and
images/s. Stages are told apart by the run's own log lines; resident memory is sampled from
/proc every 0.2 s and the whole run's peak taken from the kernel (wait4's ru_maxrss).
Alone, in this process: the scan and decode+preprocess throughput on the same folders.

The images: scikit-learn's 8×8 digits drawn at 64×64 with a random shift, rotation, scale,
stroke and background colour and sensor noise, saved as JPEG (quality 90): real-looking, not
blank, every one different. Ten classes, one folder each; edgetune splits 80/20.

The run is chosen to be cheap and to scale the way a real one does: mobilenet_v3_small from
scratch (no internet here for pretrained weights) at 224 px, head only with the feature
cache, 1 epoch, the cpu target.

    flock /work/bench.lock nice -n 0 .venv/bin/python tools/bench_scale.py --sizes 1000 10000
    flock /work/bench.lock nice -n 0 .venv/bin/python tools/bench_scale.py --sizes 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RUN_FLAGS = ["--model", "mobilenet_v3_small", "--weights", "none", "--image-size", "224",
             "--unfreeze", "head", "--epochs", "1", "--targets", "cpu", "--workers", "0"]
# The first log line of each stage (a regex on the line) and the stage's name.
STAGES = [
    (r"^cache: filling .* train images", "cache fill (train)"),
    (r"^cache: filling .* val images", "cache fill (val)"),
    (r"^cache: val filled", "train epoch"),
    (r"^export: ONNX", "export ONNX"),
    (r"^evaluate: ", "parity + evaluate fp32"),
    # Calibration runs inside the first INT8 build (ONNX Runtime computes the ranges there).
    (r"^calibrate: ", "calibrate + INT8 candidates"),
    (r"^(recommended|chosen|cpu:)", "report"),
]


def make_folder(root: Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """`n` jittered digit images in `root/<class>/`, written once (a marker says it is whole)."""
    done = root / f".complete-{n}"
    if done.is_file():
        return root
    from PIL import Image
    from sklearn.datasets import load_digits

    shutil.rmtree(root, ignore_errors=True)
    digits = load_digits()
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        rng = np.random.default_rng(seed * 1_000_003 + i)
        k = int(rng.integers(len(digits.images)))
        glyph = Image.fromarray((digits.images[k] * 255 / 16).astype(np.uint8), "L")
        scale = rng.uniform(0.6, 0.9) * size
        glyph = glyph.resize((int(scale), int(scale)), Image.Resampling.BICUBIC)
        glyph = glyph.rotate(rng.uniform(-15, 15), Image.Resampling.BILINEAR, expand=True)
        mask = np.asarray(glyph, np.float32)[..., None] / 255.0
        ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        canvas = np.broadcast_to(paper, (size, size, 3)).copy()
        h, w = mask.shape[:2]
        top, left = rng.integers(0, max(1, size - h)), rng.integers(0, max(1, size - w))
        h, w = min(h, size - top), min(w, size - left)
        region = canvas[top:top + h, left:left + w]
        canvas[top:top + h, left:left + w] = region * (1 - mask[:h, :w]) + ink * mask[:h, :w]
        canvas += rng.normal(0, rng.uniform(2, 12), canvas.shape)
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
        image.save(root / str(digits.target[k]) / f"{i:06d}.jpg", quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(write, range(n), chunksize=256))
    done.write_text(f"{n}\n")
    return root


def throughput_alone(folder: Path, n_decode: int = 2000) -> dict:
    """Scan images/s (headers read) and decode+preprocess images/s at 224 px, in this process."""
    from edgetune.data.reader import ChunkReader
    from edgetune.data.scan import scan
    from edgetune.preprocess import Preprocess

    t = time.perf_counter()
    splits = scan(folder)
    scan_s = time.perf_counter() - t
    n = len(splits.train) + len(splits.val)
    paths = [s.path for s in splits.train[:n_decode]]
    pre = Preprocess(size=(224, 224), resize=224)
    out = {"scan_s": scan_s, "scan_ips": n / scan_s}
    for workers in (1, os.cpu_count() or 1):
        t = time.perf_counter()
        for _ in ChunkReader(paths, pre, workers=workers):
            pass
        out[f"decode_ips_{workers}"] = len(paths) / (time.perf_counter() - t)
    return out


def run_once(folder: Path, out: Path) -> dict:
    """One `edgetune run`; wall time and peak RSS per stage, the run's peak RSS."""
    shutil.rmtree(out, ignore_errors=True)  # its feature cache too: every run fills its own
    cmd = [sys.executable, "-m", "edgetune.cli", "run", "--data", str(folder), *RUN_FLAGS,
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[str, float]] = [("start: imports, scan, model", 0.0)]
    rss: dict[str, int] = {}
    lines: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            try:
                text = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            kb = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) if "VmRSS" in text else 0
            stage = marks[-1][0]
            rss[stage] = max(rss.get(stage, 0), kb * 1024)

    threading.Thread(target=sample, daemon=True).start()
    for line in proc.stdout:
        lines.append(f"{time.perf_counter() - t0:8.1f} {line.rstrip()}")
        for pattern, name in STAGES:
            if re.search(pattern, line) and name not in (m[0] for m in marks):
                marks.append((name, time.perf_counter() - t0))
    _, status, usage = os.wait4(proc.pid, 0)
    out.with_suffix(".log").write_text("\n".join(lines) + "\n")
    total = time.perf_counter() - t0
    stop.set()
    if status != 0:
        sys.exit("edgetune run failed:\n" + "\n".join(lines[-30:]))
    ends = [t for _, t in marks[1:]] + [total]
    stages = {name: {"s": end - start, "peak_rss": rss.get(name, 0)}
              for (name, start), end in zip(marks, ends)}
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall_s": total, "peak_rss": usage.ru_maxrss * 1024, "stages": stages,
            "evaluation": manifest["evaluation"], "log": lines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--work", default="/tmp/edgetune-bench-scale", help="where folders and runs go")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--stop-by", help="UTC HH:MM: a size whose run, extrapolated linearly from the "
                    "previous one, would end later is still run, but the estimate is printed first")
    args = ap.parse_args()
    work = Path(args.work)
    results = {}
    for n in args.sizes:
        if results:
            last = max(results)
            guess = results[last]["wall_s"] * n / last
            print(f"{n} images: about {guess / 60:.0f} min, extrapolated linearly from {last}", flush=True)
            if args.stop_by:
                import datetime as dt

                now = dt.datetime.now(dt.timezone.utc)
                hh, mm = map(int, args.stop_by.split(":"))
                end = now.replace(hour=hh, minute=mm, second=0)
                if now + dt.timedelta(seconds=guess) > end:
                    print(f"  that ends after {args.stop_by} UTC; running it anyway", flush=True)
        t = time.perf_counter()
        folder = make_folder(work / f"data-{n}", n)
        print(f"{n} images ready in {folder} ({time.perf_counter() - t:.0f} s)", flush=True)
        alone = throughput_alone(folder)
        print(f"  scan {alone['scan_s']:.1f} s ({alone['scan_ips']:.0f} img/s); decode+preprocess "
              + ", ".join(f"{v:.0f} img/s ({k.rsplit('_', 1)[1]} thread(s))"
                          for k, v in alone.items() if k.startswith("decode")), flush=True)
        r = run_once(folder, work / f"run-{n}")
        r["alone"] = alone
        results[n] = r
        if args.json:  # after every size: a later one may not finish
            Path(args.json).write_text(json.dumps({str(k): {kk: vv for kk, vv in v.items() if kk != "log"}
                                                   for k, v in results.items()}, indent=1))
        print(f"  run: {r['wall_s']:.0f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB", flush=True)
        for name, s in r["stages"].items():
            print(f"    {name:20s} {s['s']:8.1f} s  peak RSS {s['peak_rss'] / 2**30:5.2f} GiB", flush=True)
    print(table(results))


def table(results: dict) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    rows = [f"machine: {cpu}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU",
            "| images | wall s | peak RSS GiB | scan img/s | decode+pre img/s (1 / all threads) | "
            + " | ".join(next(iter(results.values()))["stages"]) + " |"]
    for n, r in results.items():
        a = r["alone"]
        decode = [v for k, v in a.items() if k.startswith("decode")]
        rows.append(f"| {n} | {r['wall_s']:.0f} | {r['peak_rss'] / 2**30:.2f} | {a['scan_ips']:.0f} | "
                    + " / ".join(f"{v:.0f}" for v in decode) + " | "
                    + " | ".join(f"{s['s']:.0f} s, {s['peak_rss'] / 2**30:.2f} GiB"
                                 for s in r["stages"].values()) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
