"""The bundle: a folder with `manifest.json` and the artifacts it lists.

Torch-free: deployment code reads bundles. Every artifact carries its sha256, measured
top-1 and latency; a tampered file, a path leaving the bundle, or a manifest of an
unknown format version is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from edgetune.atomic import sha256_file, write_json
from edgetune.errors import BundleError, ConfigError
from edgetune.files import MANIFEST
from edgetune.preprocess import Preprocess

FORMAT = "edgetune-bundle"
# 2: the cpu target's artifacts may be run by any CPU engine (`backend`), each names the pip
# extra its engine needs (`extra`) and the candidate it ships (`candidate`), and the cpu
# recommendation lists the fallbacks (`order`). Version 1 bundles still load.
# 3: an artifact whose bytes another artifact's file holds names that file (`graph`) instead of
# shipping a second copy. Older bundles still load.
VERSION = 3


@dataclass
class Artifact:
    file: str
    backend: str  # the engine that runs it: "onnxruntime" | "openvino" | "tensorrt"
    target: str  # "cpu" | "tensorrt" | "gpu" ("openvino" in version 1 bundles)
    precision: str  # "fp32" | "bf16" (OpenVINO's bf16 inference of the fp32 graph) | "fp16" | "int8"
    sha256: str
    size_bytes: int
    top1: float | None = None
    latency_ms: dict | None = None  # {"batch", "p50", "p90", "p99", "mean", "device", "threads"}
    parity: dict | None = None  # vs PyTorch: {"max_abs_diff", "top1_agreement", "images", "tolerance"}
    calibration: dict | None = None  # {"method", "samples", "recipe", "excluded_nodes"}
    notes: str = ""
    # TensorRT engines only: {"tensorrt", "gpu", "compute_capability", "device", "profile",
    # "build_seconds", ...}, the same record as the engine's sidecar <engine>.json
    engine: dict | None = None
    # Graphs for TensorRT: the CPU pre-flight per TensorRT family, {"8.6": "passed", ...}
    preflight: dict | None = None
    top1_target: float | None = None  # on --target-val (labelled target images): measured, never selects
    top1_source: float | None = None  # on the source val split, when `top1` was judged on target images
    # ONNX Runtime options the latency was measured with and `load` opens it with:
    # {"graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads", "allow_spinning"}
    session: dict | None = None
    extra: str | None = None  # the pip extra its engine needs: pip install 'edgetune[EXTRA]'
    candidate: str | None = None  # the cpu candidate it ships, as `candidates["cpu"]` names it
    # Written at an older opset for the TensorRT the device runs (--tensorrt-version 8.6):
    # {"opset", "from", "for", "parity"}, parity against the graph at the exporter's opset
    opset: dict | None = None
    # The bundle file holding its bytes when another artifact's file already does (OpenVINO's
    # bf16 run of model.onnx; an INT8 graph both engines run): one copy ships. None: `file`.
    graph: str | None = None


@dataclass
class Manifest:
    model: dict  # {"arch", "weights", "classes", "num_classes"}
    input: dict  # Preprocess.to_dict() plus "name"
    artifacts: list[Artifact] = field(default_factory=list)
    # target -> {"file", "why"}; cpu also "order": the shipped CPU artifacts within budget, best first
    recommended: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)  # target -> rows: candidate, top1, p50_ms, size, verdict
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    evaluation: dict = field(default_factory=dict)  # {"split", "images"}
    adaptation: dict = field(default_factory=dict)  # domain adaptation: method, what it did, target data
    calibration: dict = field(default_factory=dict)  # which images calibrated INT8: domain, root, images
    # Graphs with the preprocessing folded in (--fold-preprocessing): file -> {"source", "layout",
    # "pixels", "precision", "sha256", "size_bytes", "parity"}. Kept apart from `artifacts`: they
    # take pixels, not the float tensors every Session, bench and evaluation feed.
    folded: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    created: str = ""
    format: str = FORMAT
    version: int = VERSION

    @property
    def classes(self) -> list[str]:
        return list(self.model["classes"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.input)

    def artifact(self, file: str) -> Artifact:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise BundleError(
            f"no artifact named {file!r} in the bundle; it holds: "
            + ", ".join(a.file for a in self.artifacts)
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        # Keep the reader's landmarks first.
        return {"format": d.pop("format"), "version": d.pop("version"), **d}


_SERVING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def serving_name(bundle: str | Path, name: str | None = None) -> str:
    """The name a model server knows the bundle by: `name` when given (checked), else the
    bundle folder's name made safe (a Triton model is a folder of that name in its repository)."""
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(bundle).resolve().name).lstrip("_.-") or "classifier"
    if not _SERVING_NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r} is not allowed: a model name is letters, digits, '_', '.' and '-', "
                          "starting with a letter or digit")
    return name


def artifact_record(bundle: Path, file: str, graph: str | None = None, sha256: str | None = None,
                    **fields) -> Artifact:
    """Describe a file already inside `bundle` (or `graph`, the file holding its bytes), with
    its hash (`sha256` when the caller hashed those bytes already) and size."""
    path = bundle / (graph or file)
    return Artifact(file=file, sha256=sha256 or sha256_file(path), size_bytes=path.stat().st_size, graph=graph,
                    **fields)


def write_manifest(bundle: str | Path, manifest: Manifest) -> Path:
    path = Path(bundle) / MANIFEST
    write_json(path, manifest.to_dict())
    return path


def read_manifest(bundle: str | Path) -> Manifest:
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{bundle} is not a bundle: {MANIFEST} is missing; pass the folder that "
            "`edgetune run` or `edgetune export` wrote"
        )
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); re-run `edgetune export`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgetune manifest (format {raw.get('format')!r})")
    version = raw.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BundleError(
            f"{path} has bundle format version {version!r}; this edgetune reads versions up to "
            f"{VERSION}; upgrade edgetune (pip install -U edgetune) to load it"
        )
    try:
        artifacts = [Artifact(**a) for a in raw.pop("artifacts", [])]
        manifest = Manifest(artifacts=artifacts, **raw)
    except TypeError as exc:
        raise BundleError(f"{path} is malformed ({exc}); re-run `edgetune export`") from None
    for a in manifest.artifacts:
        safe_member(bundle, a.file)
        artifact_path(bundle, a)
    if manifest.checkpoint:
        safe_member(bundle, manifest.checkpoint)
    return manifest


def safe_member(bundle: Path, name: str) -> Path:
    """The path of `name` inside `bundle`; refuse absolute paths and anything leaving it."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise BundleError(
            f"manifest names {name!r}: artifact paths must be relative and stay inside the bundle"
        )
    path = (bundle / pure).resolve()
    if not path.is_relative_to(bundle.resolve()):
        raise BundleError(f"manifest names {name!r}, which resolves outside the bundle")
    return path


def artifact_path(bundle: str | Path, artifact: Artifact) -> Path:
    """Where the artifact's bytes are: its own file, or the file it shares (`graph`)."""
    return safe_member(Path(bundle), artifact.graph or artifact.file)


def verify_artifact(bundle: str | Path, artifact: Artifact) -> Path:
    """The artifact's path, after checking it exists and matches its recorded sha256."""
    path = artifact_path(bundle, artifact)
    shared = f" (its bytes are {artifact.graph}'s)" if artifact.graph else ""
    if not path.is_file():
        raise BundleError(f"artifact {artifact.file}{shared} listed in the manifest is missing from {bundle}")
    digest = sha256_file(path)
    if digest != artifact.sha256:
        raise BundleError(
            f"artifact {artifact.file}{shared} fails its integrity check (sha256 {digest[:12]}… != "
            f"manifest {artifact.sha256[:12]}…); the file was changed or corrupted: "
            "re-copy the bundle or re-run `edgetune export`"
        )
    return path


def verify_checkpoint(bundle: str | Path, manifest: Manifest) -> Path:
    """The bundle's PyTorch checkpoint, after the same integrity check as any artifact."""
    if not manifest.checkpoint:
        raise BundleError(f"{bundle} records no checkpoint")
    path = safe_member(Path(bundle), manifest.checkpoint)
    if not path.is_file():
        raise BundleError(f"checkpoint {manifest.checkpoint} listed in the manifest is missing from {bundle}")
    if manifest.checkpoint_sha256 and sha256_file(path) != manifest.checkpoint_sha256:
        raise BundleError(
            f"checkpoint {manifest.checkpoint} fails its integrity check (sha256 differs from the "
            "manifest); re-copy the bundle or re-run `edgetune export`"
        )
    return path
