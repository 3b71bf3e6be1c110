"""`edgetune deploy deepstream`: a DeepStream nvinfer secondary-classifier configuration.

nvinfer normalises with one scalar and per-channel offsets, `y = net-scale-factor * (x - offset)`,
so ImageNet's per-channel std cannot be expressed there. The graph it gets therefore has the
bundle's normalisation folded in (export/fold.py): nvinfer passes the pixel values through
unchanged (scale 1, offsets 0), as float32 RGB NCHW, and the graph divides by 255, subtracts the
mean and divides by the std exactly as `Preprocess.normalize` does, then applies a softmax, since
nvinfer's classifier parser compares probabilities with `classifier-threshold`. The source graph
is the TensorRT QDQ graph when the bundle has one (network-mode INT8: the scales are in the graph,
so no int8-calib-file), else fp16, else fp32. Planned for TensorRT 8.6 (JetPack 6.0, DeepStream
7.0 there) by default, it is written at opset 17, the newest 8.6 documents.

What nvinfer does not reproduce: the bundle resizes the shorter side and centre-crops; nvinfer
scales each object's box to the network size (`maintain-aspect-ratio=0`, stretched). The README
written beside the config says so. Needs `onnx` (pip install 'edgetune[deepstream]'), not torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.atomic import write_text
from edgetune.bundle import Manifest, read_manifest, verify_artifact
from edgetune.errors import BundleError, ConfigError, require
from edgetune.files import FP16, FP32, INT8_TENSORRT, deepstream_graph

CONFIG, LABELS, README = "config_infer_secondary.txt", "labels.txt", "README.md"
SOURCES = (INT8_TENSORRT, FP16, FP32)  # preferred first
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode values
ENGINE_MODE = {"fp32": "fp32", "int8": "int8", "fp16": "fp16"}  # the suffix nvinfer names engines with
SCALING_FILTER = {"nearest": 0, "bilinear": 1, "bicubic": 2}  # NvBufSurfTransform_Inter
SCALE, OFFSETS = 1.0, (0.0, 0.0, 0.0)  # nvinfer hands the pixels over as they are: the graph normalises
PARITY_PIXELS = 16  # seeded random images the folded graph is checked on (a bundle holds no images)


@dataclass(frozen=True)
class DeepStreamConfig:
    folder: Path
    graph: str
    source: str
    precision: str
    opset: int


def write_deepstream(bundle: str | Path, out: str | Path, source: str | None = None, batch: int = 16,
                     threshold: float = 0.5, tensorrt: str | None = "8.6", gie_id: int = 2,
                     operate_on: int = 1, overwrite: bool = False) -> DeepStreamConfig:
    """The nvinfer config, the folded graph, labels and a README written into `out`."""
    if batch < 1:
        raise ConfigError(f"--batch {batch} must be at least 1")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold} is a probability: between 0 and 1")
    require("onnx", "deepstream", "edgetune deploy deepstream (folding the preprocessing into the graph)")
    from edgetune.calib.preflight import support_table
    from edgetune.export.fold import as_layout, check_fold, fold_preprocessing
    from edgetune.export.opset import convert_opset, graph_opset, same_network

    bundle, out = Path(bundle), Path(out)
    manifest = read_manifest(bundle)
    artifact = _source(manifest, bundle, source)
    src = verify_artifact(bundle, artifact)
    graph = deepstream_graph(artifact.file)
    owned = [CONFIG, LABELS, README, graph]
    if out.is_file():
        raise ConfigError(f"--out {out} is a file; pass a folder")
    if any((out / f).exists() for f in owned) and not overwrite:
        raise ConfigError(f"--out {out} already holds a DeepStream config; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    pre = manifest.preprocess
    pixels = np.random.default_rng(0).integers(0, 256, (PARITY_PIXELS, *pre.size, 3), dtype=np.uint8)
    fold_preprocessing(src, out / graph, pre, "NCHW", pixels="float32", softmax=True)
    check_fold(src, out / graph, pre, pixels, "NCHW", artifact.precision, "float32", softmax=True)
    opset = graph_opset(out / graph)
    if tensorrt is not None and opset > support_table()[tensorrt]["opset"]["max"]:
        newest = support_table()[tensorrt]["opset"]["max"]
        newer = out / f".{graph}.opset{opset}"
        (out / graph).replace(newer)
        try:
            convert_opset(newer, out / graph, newest)
            same_network(newer, out / graph, as_layout(pixels, "NCHW", "float32"))
        finally:
            newer.unlink(missing_ok=True)
        opset = newest
    write_text(out / LABELS, labels_line(manifest.classes))
    write_text(out / CONFIG, config_text(manifest, graph, artifact.precision, batch, threshold, gie_id, operate_on))
    write_text(out / README, readme_text(out, manifest, graph, gie_id, operate_on))
    return DeepStreamConfig(out, graph, artifact.file, artifact.precision, opset)


def _source(manifest: Manifest, bundle: Path, source: str | None):
    files = {a.file: a for a in manifest.artifacts}
    if source is not None:
        if source not in files or not source.endswith(".onnx"):
            raise BundleError(f"--source {source!r} is not an ONNX artifact of {bundle}; it holds: "
                              + ", ".join(f for f in files if f.endswith(".onnx")))
        return files[source]
    found = next((files[s] for s in SOURCES if s in files), None)
    if found is None:
        raise BundleError(f"{bundle} holds no graph for DeepStream ({', '.join(SOURCES)}); "
                          "re-run `edgetune export --targets tensorrt`")
    return found


def labels_line(classes: list[str]) -> str:
    """nvinfer's classifier label file: one line per output layer, its labels separated by ';'."""
    bad = [c for c in classes if ";" in c or "\n" in c]
    if bad:
        raise BundleError(f"class name {bad[0]!r} holds ';' or a line break, which nvinfer's label file "
                          "uses as separators; rename that class folder and re-export")
    return ";".join(classes) + "\n"


def config_text(manifest: Manifest, graph: str, precision: str, batch: int, threshold: float,
                gie_id: int, operate_on: int) -> str:
    """The [property] group, a GKeyFile: comments on their own lines (a value runs to the line's end)."""
    pre = manifest.preprocess
    engine = f"{graph}_b{batch}_gpu0_{ENGINE_MODE[precision]}.engine"  # the name nvinfer saves a build as
    rows = [
        ("gpu-id", 0, None),
        ("net-scale-factor", SCALE, "the graph normalises (mean and std folded in): pixels go in as they are"),
        ("offsets", ";".join(map(str, OFFSETS)), None),
        ("model-color-format", 0, "0: RGB, as the model was trained"),
        ("onnx-file", graph, f"{manifest.model['arch']}, float32 RGB NCHW pixels 0..255 in, probabilities out"),
        ("model-engine-file", engine, "nvinfer builds it from onnx-file on the first run and reuses it"),
        ("labelfile-path", LABELS, None),
        ("batch-size", batch, None),
        ("network-mode", NETWORK_MODE[precision],
         f"{precision}" + (": the scales are the graph's Q/DQ nodes, no int8-calib-file" if precision == "int8"
                           else "")),
        ("network-type", 1, "1: classifier"),
        ("process-mode", 2, "2: secondary, on the objects of the detector below"),
        ("gie-unique-id", gie_id, None),
        ("operate-on-gie-id", operate_on, None),
        ("classifier-threshold", threshold, "the softmax probability a label needs"),
        ("output-blob-names", "probabilities", None),
        ("network-input-order", 0, "0: NCHW"),
        ("infer-dims", f"3;{pre.size[0]};{pre.size[1]}", None),
        ("maintain-aspect-ratio", 0,
         f"each object is scaled to {pre.size[1]}x{pre.size[0]}; the bundle's resize-{pre.resize} "
         "centre crop has no nvinfer equivalent"),
        ("scaling-filter", SCALING_FILTER[pre.interpolation], f"{pre.interpolation}, as the bundle resizes"),
    ]
    lines = [f"# {manifest.model['arch']} secondary classifier from an edgetune bundle "
             f"({len(manifest.classes)} classes); nvinfer computes y = net-scale-factor * (x - offsets)",
             "[property]"]
    for key, value, why in rows:
        if why:
            lines.append(f"# {why}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def readme_text(out: Path, manifest: Manifest, graph: str, gie_id: int, operate_on: int) -> str:
    h, w = manifest.preprocess.size
    return f"""# DeepStream secondary classifier ({manifest.model['arch']}, {len(manifest.classes)} classes)

Written by `edgetune deploy deepstream`. `{CONFIG}` runs `{graph}` in nvinfer on the objects
of the primary detector with `gie-unique-id={operate_on}`; its labels attach to each object's
metadata. The graph normalises by itself (ImageNet's per-channel std cannot be expressed with
nvinfer's one scale factor), so the config passes pixels through with scale 1 and offsets 0.

In a pipeline (gst-launch-1.0), after the detector and the tracker:

```
... ! nvstreammux name=m batch-size=1 width=1920 height=1080 \\
    ! nvinfer config-file-path=pgie_config.txt \\
    ! nvtracker ll-lib-file=/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so \\
    ! nvinfer config-file-path={out.name}/{CONFIG} \\
    ! nvvideoconvert ! nvdsosd ! ...
```

In a deepstream-app configuration:

```
[secondary-gie0]
enable=1
gie-unique-id={gie_id}
operate-on-gie-id={operate_on}
config-file={out.name}/{CONFIG}
```

The first run builds the TensorRT engine from the ONNX graph (minutes on a Jetson) and saves it
under the `model-engine-file` name. Each object is scaled to {w}x{h} as a whole: the bundle's
evaluation resized the shorter side and centre-cropped, which nvinfer does not do, so expect
the accuracy of the object crops your detector gives, not the bundle's own figure.
"""
