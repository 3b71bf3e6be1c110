"""What each accuracy figure of a bundle measures, named once for the terminal tables, the
closing summary, `edgetune info` and the HTML report. Torch-free; reads the manifest as JSON
(`Manifest.to_dict()` or the file itself).

An artifact's `top1` is top-1 on the source val split, except in a run judged by agreement
(an adapted model, or no source data): there it is the share of unlabelled target images on
which the artifact predicts fp32's class, and fp32's own is 100% by construction. Its
`top1_source` (source val split) and `top1_target` (`--target-val`) are accuracies.
"""

from __future__ import annotations

AGREEMENT = "agreement with fp32"
NAMES = {"top1_source": "source val top-1", "top1_target": "target val top-1"}


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def by_agreement(manifest: dict) -> bool:
    """True when the artifacts' `top1` is agreement with fp32, not top-1 against labels."""
    return (manifest.get("evaluation") or {}).get("split", "val") != "val"


def adapted(manifest: dict) -> bool:
    """True when adaptation changed the model: training's val figures are then of the model before it."""
    return (manifest.get("adaptation") or {}).get("applied", "none") != "none"


def name(key: str, manifest: dict) -> str:
    """What an artifact's `top1`, `top1_source` or `top1_target` is, in a few words."""
    if key == "top1":
        return AGREEMENT if by_agreement(manifest) else "top-1"
    return NAMES.get(key) or key.removeprefix("top1_").replace("_", " ") + " top-1"


def origin(model: dict) -> str:
    """Where the bundle's network started, in a few words: "trained from scratch",
    "pretrained on ImageNet" (torchvision's and the Lite packages' weights are all ImageNet-1k
    classifiers), timm's weights by their tag, or the file it was fine-tuned from."""
    weights, arch = str(model.get("weights")), str(model.get("arch"))
    if weights.lower() == "none":
        return "trained from scratch"
    file = weights.replace("\\", "/")
    if "/" in file or file.lower().endswith((".pth", ".pt", ".safetensors")):
        return f"fine-tuned from {file.rsplit('/', 1)[-1]}"
    if arch.startswith("timm/"):
        return "fine-tuned from timm's pretrained weights" + (f" ({arch.split('.', 1)[1]})" if "." in arch else "")
    return "pretrained on ImageNet" + ("" if weights == "DEFAULT" else f" ({weights})")


def fp32_artifact(manifest: dict) -> dict | None:
    return next((a for a in manifest.get("artifacts", []) if a.get("precision") == "fp32"), None)


def accuracy_key(manifest: dict) -> str | None:
    """The artifact field a run is summed up by: `top1`, unless that is agreement; then the
    source val top-1, else the target val top-1; None when no labelled image was measured."""
    if not by_agreement(manifest):
        return "top1"
    fp32 = fp32_artifact(manifest) or {}
    return next((k for k in ("top1_source", "top1_target") if fp32.get(k) is not None), None)


def measured_on(key: str, manifest: dict) -> str:
    """The images behind an artifact field, for the small print."""
    ev = manifest.get("evaluation") or {}
    if key == "top1_source":
        source = ev.get("source_val") or {}
        before = source.get("top1_before_adaptation")
        images = f"{source['images']} source val images" if "images" in source else "the source val split"
        return (f"{images}, adapted model"
                + (f"; {pct(before)} before adaptation (training's best epoch)" if before is not None else ""))
    if key == "top1_target":
        return f"{(ev.get('target_val') or {}).get('images', '?')} labelled target images (--target-val)"
    if by_agreement(manifest):
        return f"{ev.get('images', '?')} unlabelled target images, fp32's own predictions as labels"
    return f"{ev.get('images', '?')} validation images"


def headline(manifest: dict) -> tuple[str, str, str] | None:
    """The figure a run is summed up by, as (name, fp32's value, what it was measured on):
    never fp32's agreement with itself."""
    fp32 = fp32_artifact(manifest)
    if fp32 is None or fp32.get("top1") is None:
        return None
    key = accuracy_key(manifest)
    if key is None:
        return ("top-1 (fp32)", "not measured",
                "no labelled images: --data gives the source val split, --target-val labelled target images")
    title = "val top-1" if key == "top1" else name(key, manifest)
    return f"{title} (fp32)", pct(fp32[key]), measured_on(key, manifest)


def describe(artifact: dict, manifest: dict) -> str:
    """An artifact's figures, each named: "top-1 82.50%", or in a run judged by agreement
    "agreement with fp32 96.20%, source val top-1 79.10%"."""
    keys = ["top1"] + (["top1_source", "top1_target"] if by_agreement(manifest) else [])
    shown = [f"{name(k, manifest)} {pct(artifact.get(k))}" for k in keys if artifact.get(k) is not None]
    return ", ".join(shown) or "top-1 ?"


def agreement_note(manifest: dict) -> str | None:
    """One sentence on what agreement means, for a table's caption; None when `top1` is top-1."""
    if not by_agreement(manifest):
        return None
    n = (manifest.get("evaluation") or {}).get("images", "?")
    return (f"{AGREEMENT}: the share of {n} unlabelled target images on which an artifact predicts "
            "fp32's class; not accuracy (fp32 is 100% by construction)")
