"""What the report shows, as plain JSON-able data.

Gathered at export time, when the validation images and the training checkpoint are at
hand, and cached in OUT/report.json: `edgetune report OUT` rebuilds the page from that
cache plus the bundle as it is now (an engine added by build-engine, a search's trials),
without the data set and without torch.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from edgetune import __version__, host
from edgetune.atomic import write_json
from edgetune.bundle import MANIFEST
from edgetune.files import CONFIG, FP32, IMPORTANCES, PARETO_CSV, REPORT_JSON, TRIALS_CSV
from edgetune.report import figures

CACHE = REPORT_JSON
WORST = 12  # thumbnails of the worst-classified validation images
THUMB = 96  # their longest side, in pixels


def command_line() -> str:
    """The command as the user typed it (or the Python program that called us)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    # The installed script, `python -m edgetune` or `python -m edgetune.cli`: the user typed edgetune.
    if prog == "edgetune" or sys.argv[0].endswith(("edgetune/__main__.py", "edgetune/cli/__main__.py")):
        return shlex.join(["edgetune", *sys.argv[1:]])
    return shlex.join([Path(sys.executable).name, *sys.argv])


def read_manifest_raw(out: Path) -> dict:
    """The manifest as JSON: the report shows fields newer or older code added, as they are."""
    from edgetune.bundle import FORMAT, VERSION
    from edgetune.errors import BundleError

    path = out / MANIFEST
    if not path.is_file():
        raise BundleError(f"{out} is not a bundle: {MANIFEST} is missing; pass the folder that "
                          "`edgetune run` or `edgetune export` wrote")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); re-run `edgetune export`") from None
    # Not through the Manifest dataclass: fields another edgetune added are shown, not refused.
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("version"), int):
        raise BundleError(f"{path} is not an edgetune manifest")
    if raw["version"] > VERSION:
        raise BundleError(f"{path} has bundle format version {raw['version']}; upgrade edgetune to read it")
    return raw


def gather(out: Path, val=None, history: list[dict] | None = None, command: str | None = None) -> dict:
    """Fresh data from an export (`val`: its labelled val EvalSet, None when it had none;
    `history`: the training run's per-epoch records, which the export read from its checkpoint),
    or, with neither, the cached data refreshed with what the run folder holds now. Torch-free:
    the report never opens a checkpoint."""
    fresh = val is not None or history is not None
    cached = {} if fresh else load_cache(out)  # a new export owes nothing to an older one
    manifest = read_manifest_raw(out)
    data = {
        "made_by": cached.get("made_by") or command or command_line(),
        "made_at": cached.get("made_at") or _now(),
        "host": cached.get("host") or host.describe(),
        "edgetune": __version__,
        "history": history if history is not None else cached.get("history") or [],
        "evaluation": labelled(manifest, cached.get("evaluation")),
    }
    if data["evaluation"] is None:
        val = val if fresh else val_from_run(out, manifest)
        data["evaluation"] = evaluate(out, manifest, val) if val is not None else None
    write_json(out / CACHE, data)
    if cached:
        data["rebuilt_by"], data["rebuilt_at"] = command or command_line(), _now()
    data["trials"] = trials(out)
    return data


def load_cache(out: Path) -> dict:
    try:
        cached = json.loads((out / CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def labelled(manifest: dict, ev: dict | None) -> dict | None:
    """`ev` when its labels are real. In a run judged by agreement, an older edgetune drew the
    confusion matrix from fp32's own predictions (every fp32 answer "right"): such data is dropped."""
    if ev and figures.by_agreement(manifest) and ev.get("split") != "val":
        return None
    return ev


def evaluate(out: Path, manifest: dict, val) -> dict:
    """Confusion matrix and worst-classified images of the artifact recommended for the CPU,
    on `val`: labelled source val images, never fp32's own predictions."""
    from edgetune.bundle import Artifact, artifact_path
    from edgetune.evaluate import logits_of
    from edgetune.runtime import backends
    from edgetune.runtime.classifier import softmax

    file = (manifest.get("recommended", {}).get("cpu") or {}).get("file") or FP32
    art = next((a for a in manifest["artifacts"] if a["file"] == file), {})
    # In the engine and precision it runs in (an OpenVINO artifact in OpenVINO, bf16 in bf16).
    path = artifact_path(out, Artifact(**art)) if art else out / file  # a shared graph: the file holding it
    session = backends.open_session(art.get("backend", "onnxruntime"), path, "cpu",
                                    precision=art.get("precision"))
    probs = softmax(logits_of(session, val, desc=f"report: evaluate {file}"))
    y, pred = np.asarray(val.y), probs.argmax(1)
    n = len(manifest["model"]["classes"])
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    p_true = probs[np.arange(len(y)), y]
    # Wrong ones first, the most confidently wrong first; then the least sure right ones.
    order = sorted(range(len(y)), key=lambda i: (pred[i] == y[i], p_true[i]))
    worst = [{"path": str(val.paths[i]), "label": int(y[i]), "pred": int(pred[i]),
              "p_pred": round(float(probs[i, pred[i]]), 4), "p_true": round(float(p_true[i]), 4),
              "thumb": thumbnail(val.paths[i])} for i in order[:WORST]]
    right = [i for i in order if pred[i] == y[i]]
    return {"artifact": file, "split": "val", "images": int(len(y)), "top1": round(float((pred == y).mean()), 4),
            "confusion": confusion.tolist(), "worst": worst,
            "example_image": str(val.paths[right[-1]]) if right else str(val.paths[0])}


def thumbnail(path) -> str | None:
    """A small PNG of the image as stored (not as preprocessed), base64; None if unreadable."""
    from PIL import Image

    from edgetune.preprocess import load_image

    try:
        image = load_image(path)
    except Exception:  # noqa: BLE001 - a missing thumbnail must not cost the report
        return None
    if max(image.size) > THUMB:
        image.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def val_from_run(out: Path, manifest: dict):
    """The validation split the run used, from OUT/config.yaml; None when it cannot be found."""
    from edgetune.data.scan import scan
    from edgetune.errors import EdgetuneError
    from edgetune.evaluate import EvalSet, eval_subset
    from edgetune.preprocess import Preprocess

    cfg = out / CONFIG
    if not cfg.is_file():
        return None
    import yaml

    c = yaml.safe_load(cfg.read_text()) or {}
    data = c.get("data")
    if data is None:
        from edgetune.data.demo import default_dir

        data = default_dir()
    try:
        splits = scan(data, c.get("val_fraction", 0.2), c.get("seed", 0),
                      verify_images=bool(c.get("verify_images")), skip_bad_images=bool(c.get("skip_bad_images")))
    except EdgetuneError:
        return None
    if splits.classes != manifest["model"]["classes"]:
        return None
    # The images the run judged its artifacts on: the same seeded subset when it used one.
    ev = manifest.get("evaluation") or {}
    eval_max = (ev.get("source_val") or ev).get("eval_max")  # source_val: a run judged by agreement
    picked, _ = eval_subset(splits.val, eval_max if isinstance(eval_max, int) else
                            0 if eval_max == "all" else None)
    return EvalSet(picked, Preprocess.from_dict(manifest["input"]))


def trials(out: Path) -> dict | None:
    """A search's trials (Optuna's `trials_dataframe()` written as trials.csv), when present."""
    import csv

    found = sorted(p for pattern in (TRIALS_CSV, f"*/{TRIALS_CSV}") for p in out.glob(pattern))
    if not found:
        return None
    with open(found[0], newline="") as f:
        rows = list(csv.DictReader(f))
    importances = None
    imp = found[0].parent / IMPORTANCES
    if imp.is_file():
        try:
            importances = {str(k): float(v) for k, v in json.loads(imp.read_text()).items()}
        except (ValueError, AttributeError, TypeError):
            importances = None
    front = found[0].parent / PARETO_CSV  # a search of top-1 and latency
    pareto = None
    if front.is_file():
        with open(front, newline="") as f:
            pareto = list(csv.DictReader(f))
    return {"file": str(found[0].relative_to(out)), "rows": rows, "importances": importances, "pareto": pareto}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
