"""A loaded classifier: preprocessing + one engine session + class names.

`load` accepts a bundle folder (the normal case: preprocessing and classes come from the
manifest, the artifact is chosen for this hardware and checked against its sha256) or a
bare .onnx file (preprocessing guessed from the input shape, with a warning).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from edgetune.atomic import sha256_file
from edgetune.bundle import MANIFEST, Artifact, read_manifest, verify_artifact
from edgetune.errors import BundleError, ConfigError, InputError
from edgetune.preprocess import Preprocess
from edgetune.runtime import backends, choice
from edgetune.runtime.session import InputSpec, Session

_MAX_CHUNK = 32  # images per engine call in predict(); bounds memory, not speed


class Model:
    """Deployment handle: `predict` for images, `run` for ready float32 NCHW batches."""

    def __init__(
        self,
        session: Session,
        preprocess: Preprocess,
        classes: list[str],
        artifact: Artifact,
        source: Path,
        chosen_by: str = "",
    ):
        self._session = session
        self.preprocess = preprocess
        self.classes = list(classes)
        self.artifact = artifact
        self.source = source
        # Why this artifact: named by the caller, this host's choice (devices/<fingerprint>.json),
        # or the export's recommendation (or its best fallback whose engine is installed).
        self.chosen_by = chosen_by

    @property
    def input(self) -> InputSpec:
        return self._session.input

    @property
    def session_options(self) -> dict | None:
        """The engine options this session was opened with (ONNX Runtime), else None."""
        return getattr(self._session, "options", None)

    @property
    def backend(self) -> str:
        return self._session.backend

    @property
    def device(self) -> str:
        return self._session.device

    def __repr__(self) -> str:
        return (
            f"Model({self.source}, artifact={self.artifact.file}, {self.backend}/{self.device}, "
            f"{len(self.classes)} classes)"
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> (N, num_classes) logits, straight from the engine."""
        return self._session.run(batch)

    def predict(self, images, topk: int = 5):
        """Top-k (label, softmax score) pairs, best first, at most `topk` of them.

        `images` is one image (a file path, a PIL image, an HWC uint8 array) or a list of
        them (an N×H×W×C uint8 array counts as a list). One image gives one list of pairs;
        a list gives one such list per image, in order.
        """
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ConfigError(f"topk must be a positive integer, got {topk!r}")
        items, single = _as_items(images)
        k = min(topk, len(self.classes))
        results = []
        fixed = _fixed_batch(self.input)
        chunk = fixed or _MAX_CHUNK
        for start in range(0, len(items), chunk):
            batch = self.preprocess.batch(items[start : start + chunk])
            n = len(batch)
            if fixed and n < fixed:
                # A graph exported with a fixed batch takes exactly that many images: pad.
                batch = np.concatenate([batch, np.zeros((fixed - n, *batch.shape[1:]), np.float32)])
            probs = softmax(self.run(batch))[:n]
            if probs.shape[1] != len(self.classes):
                raise BundleError(
                    f"{self.artifact.file} outputs {probs.shape[1]} scores but the manifest "
                    f"lists {len(self.classes)} classes; re-run `edgetune export`"
                )
            for row in probs:
                order = np.argsort(-row, kind="stable")[:k]
                results.append([(self.classes[i], float(row[i])) for i in order])
        return results[0] if single else results


def load(
    path: str | os.PathLike,
    backend: str = "auto",
    device: str = "auto",
    artifact: str | None = None,
    threads: int | None = None,
    provider: str = "auto",
) -> Model:
    """A ready Model from a bundle folder (or a bare .onnx file) for this machine.
    `provider` picks ONNX Runtime's execution provider: auto, cpu, cuda or tensorrt."""
    choice.check_backend(backend)
    backends.check_device(device)
    check_threads(threads)
    path = Path(path)
    if path.is_dir():
        return _load_bundle(path, backend, device, artifact, threads, provider)
    if path.is_file() and path.suffix == ".onnx":
        if artifact is not None or backend not in ("auto", "onnxruntime"):
            raise ConfigError(
                f"{path.name} is a single ONNX file: it runs on onnxruntime and has no other "
                "artifacts; drop the artifact/backend options or pass a bundle folder"
            )
        return _load_onnx_file(path, device, threads, provider)
    if not path.exists():
        raise BundleError(f"{path} does not exist; pass a bundle folder or an .onnx file")
    raise BundleError(
        f"{path} is neither a bundle folder (with {MANIFEST}) nor an .onnx file; "
        "pass the folder that `edgetune run` or `edgetune export` wrote"
    )


def _load_bundle(path: Path, backend: str, device: str, artifact: str | None, threads,
                 provider: str = "auto") -> Model:
    manifest = read_manifest(path)
    chosen, chosen_by = choice.choose_artifact(manifest, backend, device, artifact, bundle=path)
    file = verify_artifact(path, chosen)
    session = backends.open_session(
        chosen.backend, file, choice.session_device(chosen, device) if provider == "auto" else device,
        threads, provider, precision=chosen.precision,
    )
    preprocess = manifest.preprocess
    _check_size(session.input, preprocess, chosen.file)
    return Model(session, preprocess, manifest.classes, chosen, path, chosen_by)


def _load_onnx_file(path: Path, device: str, threads, provider: str = "auto") -> Model:
    session = backends.open_session("onnxruntime", path, device, threads, provider)
    height, width = session.input.shape[2:4] if len(session.input.shape) == 4 else (None, None)
    if not (isinstance(height, int) and isinstance(width, int)):
        raise BundleError(
            f"{path.name} has input shape {session.input.shape}, so its image size is unknown; "
            "pass a bundle folder, whose manifest records the preprocessing"
        )
    # torchvision's eval presets resize to 256 for a 224 crop; keep that ratio.
    preprocess = Preprocess(size=(height, width), resize=round(min(height, width) * 256 / 224))
    warnings.warn(
        f"{path.name} is a bare ONNX file: its preprocessing is unknown, so ImageNet "
        f"mean/std and a resize to {preprocess.resize} then a {height}x{width} centre crop "
        "are assumed, and classes are numbered; load the bundle folder to use the real ones",
        stacklevel=3,
    )
    batch = _fixed_batch(session.input) or 1
    num_classes = session.run(np.zeros((batch, 3, height, width), np.float32)).shape[1]
    artifact = Artifact(
        file=path.name,
        backend=session.backend,
        target="cpu" if session.device == "cpu" else "gpu",
        precision=_guess_precision(path),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        notes="bare ONNX file, not from a bundle",
    )
    return Model(session, preprocess, [str(i) for i in range(num_classes)], artifact, path)


def _guess_precision(path: Path) -> str:
    """int8 when the graph holds Q/DQ nodes, fp16 when its weights are half; needs `onnx`."""
    try:
        import onnx
    except ImportError:
        return "unknown"
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    if {"QuantizeLinear", "DequantizeLinear", "QLinearConv"} & ops:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
        return "fp16"
    return "fp32"


def _check_size(spec: InputSpec, preprocess: Preprocess, file: str) -> None:
    hw = tuple(spec.shape[2:4])
    if all(isinstance(d, int) for d in hw) and hw != tuple(preprocess.size):
        raise BundleError(
            f"{file} takes {hw[0]}x{hw[1]} images but the manifest's preprocessing crops "
            f"{preprocess.size[0]}x{preprocess.size[1]}; re-run `edgetune export`"
        )


def _as_items(images) -> tuple[list, bool]:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images], True
    if isinstance(images, np.ndarray):
        return (list(images), False) if images.ndim == 4 else ([images], True)
    if isinstance(images, (list, tuple)):
        return list(images), False
    raise InputError(
        f"predict() takes an image or a list of images, got {type(images).__name__}; an image "
        "is a file path, a PIL image or an HWC uint8 numpy array"
    )


def _fixed_batch(spec: InputSpec) -> int | None:
    n = spec.shape[0] if spec.shape else None
    return n if isinstance(n, int) and n > 0 else None


def check_threads(threads) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
