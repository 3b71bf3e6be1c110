"""`edgetune deploy triton`: a Triton Inference Server model repository from a bundle.

Every config.pbtxt is written in full rather than left to Triton's auto-completion, so what the
server runs is what the bundle measured: the batch axis, names, dtypes and dims read from the
graph itself, the dynamic batcher, the instance group, the class names as the output's label
file, and the ONNX Runtime threads the artifact's latency was measured with. One model per
recommended artifact: ONNX graphs as `onnxruntime_onnx` (the openvino target's through ORT's
OpenVINO accelerator, the TensorRT QDQ graph through ORT's TensorRT accelerator in INT8), an
engine from `edgetune build-engine` as `tensorrt_plan`. `raw_images` adds a Python-backend model
that decodes image bytes with the bundle's own preprocessing, and an ensemble that chains it to
the CPU model, for clients that send JPEG or PNG bytes. Torch-free.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_path, write_text
from edgetune.bundle import Artifact, Manifest, read_manifest, serving_name, verify_artifact
from edgetune.deploy import pbtxt, triton_images
from edgetune.deploy.pbtxt import Enum
from edgetune.errors import BundleError, ConfigError
from edgetune.runtime.choice import recommended_file

CONFIG, LABELS = "config.pbtxt", "labels.txt"
VERSION = "1"  # Triton serves version folders; a bundle is one version of a model
QUEUE_DELAY_US = 500  # the most the batcher holds a lone request back, waiting for company
_DTYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(uint8)": "TYPE_UINT8"}
# target -> (instance kind, ORT execution accelerator: (cpu|gpu, name, parameters) or None)
_TARGETS = {
    "cpu": ("KIND_CPU", None),
    "openvino": ("KIND_CPU", ("cpu", "openvino", {})),
    "gpu": ("KIND_GPU", None),  # ORT's CUDA execution provider, Triton's default on a GPU instance
    "tensorrt": ("KIND_GPU", ("gpu", "tensorrt", {"precision_mode": "INT8", "trt_engine_cache_enable": "1"})),
}


@dataclass(frozen=True)
class Model:
    """One model written into the repository."""

    name: str
    source: str  # the bundle file it serves, or what it chains
    kind: str  # onnxruntime_onnx | tensorrt_plan | python | ensemble
    max_batch: int
    output: str = "logits"  # its output tensor, which an ensemble maps


def write_repository(bundle: str | Path, out: str | Path, name: str | None = None, max_batch: int = 32,
                     instances: int = 1, raw_images: bool = False, overwrite: bool = False) -> list[Model]:
    """The bundle's models written into the Triton model repository `out` (created, or added to:
    a repository holds many models; one of ours already there is replaced only with `overwrite`)."""
    bundle, out = Path(bundle), Path(out)
    name = serving_name(bundle, name)
    if max_batch < 1 or instances < 1:
        raise ConfigError(f"--max-batch {max_batch} and --instances {instances} must be at least 1")
    manifest = read_manifest(bundle)
    chosen = _served_artifacts(manifest, bundle)
    models = [(f"{name}_{target}", a) for target, a in chosen]
    if raw_images:
        models += [(f"{name}_preprocess", None), (name, None)]
    existing = [m for m, _ in models if (out / m).exists()]
    if existing and not overwrite:
        raise ConfigError(f"--out {out} already holds model {existing[0]}; pass --overwrite to replace "
                          "this bundle's models, or --name to add them beside it")
    for model, _ in models:  # replaced whole: no file of an earlier version lingers
        shutil.rmtree(out / model, ignore_errors=True)
    written = []
    for model, artifact in models[:len(chosen)]:
        target = artifact.target if artifact.backend != "tensorrt" else "tensorrt"
        written.append(_write_model(out / model, bundle, manifest, artifact, target, max_batch, instances))
    if raw_images:
        primary = written[0]
        written.append(_write_preprocess(out / f"{name}_preprocess", manifest, primary.max_batch, instances))
        written.append(_write_ensemble(out / name, manifest, primary, written[-1]))
    return written


def _served_artifacts(manifest: Manifest, bundle: Path) -> list[tuple[str, Artifact]]:
    """(target, artifact) per recommended ONNX graph or engine, CPU first, each file once."""
    seen, chosen = set(), []
    for target in ("cpu", "openvino", "gpu", "tensorrt"):
        file = recommended_file(manifest, target)
        if file is None or file in seen or not (file.endswith(".onnx") or file.endswith(".engine")):
            continue
        seen.add(file)
        chosen.append((target, manifest.artifact(file)))
    if not any(a.file.endswith(".onnx") for _, a in chosen):
        onnx_files = [a for a in manifest.artifacts if a.file.endswith(".onnx")]
        if not onnx_files:
            raise BundleError(f"{bundle} holds no ONNX artifact for Triton to serve (it has: "
                              f"{', '.join(a.file for a in manifest.artifacts) or 'nothing'}); "
                              "re-run `edgetune export` to write model.onnx")
        chosen.insert(0, ("cpu", onnx_files[0]))
    return chosen


def _write_model(folder: Path, bundle: Path, manifest: Manifest, artifact: Artifact, target: str,
                 max_batch: int, instances: int) -> Model:
    path = verify_artifact(bundle, artifact)
    engine = artifact.backend == "tensorrt"
    io = _engine_io(manifest, artifact) if engine else graph_io(path)
    batch = _max_batch(io, max_batch, artifact)
    kind, accelerator = _TARGETS[target]
    config: dict = {
        "name": folder.name,
        "platform": "tensorrt_plan" if engine else "onnxruntime_onnx",
        "max_batch_size": batch,
        "input": [_tensor(io["input"], batch, nchw=True)],
        "output": [{**_tensor(io["output"], batch), "label_filename": LABELS}],
        "instance_group": [{"count": instances, "kind": Enum(kind)}],
    }
    comments = {"max_batch_size": "the graph's batch axis is dynamic: Triton batches up to this many"
                if batch else "the graph has a fixed batch: Triton does not batch it",
                "output": f"{manifest.model['num_classes']} classes, one per line of {LABELS}"}
    if batch > 1:
        config["dynamic_batching"] = {"preferred_batch_size": preferred_sizes(batch),
                                      "max_queue_delay_microseconds": QUEUE_DELAY_US}
    if accelerator is not None:
        where, accel, params = accelerator
        entry = {"name": accel, **({"parameters": [{"key": k, "value": v} for k, v in params.items()]}
                                   if params else {})}
        config["optimization"] = {"execution_accelerators": {f"{where}_execution_accelerator": [entry]}}
    if not engine:
        threads = ort_threads(artifact.session)
        config["parameters"] = [{"key": k, "value": {"string_value": v}} for k, v in threads.items()]
        comments["parameters"] = (f"the ONNX Runtime threads {artifact.file} was measured with "
                                  "(0: ORT's default); graph optimisation stays at Triton's default, "
                                  "all, as the bundle measured")
    file = "model.plan" if engine else "model.onnx"
    (folder / VERSION).mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / VERSION / file) as tmp:
        shutil.copyfile(path, tmp)
    write_text(folder / LABELS, labels_text(manifest.classes))
    write_text(folder / CONFIG, f"# {artifact.file} from an edgetune bundle ({artifact.precision}, {target})\n"
               + pbtxt.text(config, comments))
    return Model(folder.name, artifact.file, config["platform"], batch, io["output"]["name"])


def graph_io(path: Path) -> dict:
    """The graph's one input and first output: name, element type, shape (dynamic dims as None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def describe(node) -> dict:
        if node.type not in _DTYPES:
            raise BundleError(f"{path.name}: tensor {node.name} is {node.type}, which edgetune does not serve")
        return {"name": node.name, "data_type": _DTYPES[node.type],
                "shape": [d if isinstance(d, int) and d > 0 else None for d in node.shape]}

    return {"input": describe(session.get_inputs()[0]), "output": describe(session.get_outputs()[0])}


def _engine_io(manifest: Manifest, artifact: Artifact) -> dict:
    """An engine's I/O from its record: TensorRT is not needed to write its configuration. Our
    engines are built from graphs whose inputs and outputs stay float32, batch over the profile."""
    profile = (artifact.engine or {}).get("profile") or {}
    top = (profile.get("max") or [None])[0]
    h, w = manifest.preprocess.size
    return {"input": {"name": manifest.input.get("name", "input"), "data_type": "TYPE_FP32",
                      "shape": [None, 3, h, w], "max_batch": top},
            "output": {"name": "logits", "data_type": "TYPE_FP32", "shape": [None, manifest.model["num_classes"]]}}


def _max_batch(io: dict, wanted: int, artifact: Artifact) -> int:
    first = io["input"]["shape"][0]
    if first is not None:  # a fixed batch: Triton passes whole tensors, batch axis included
        return 0
    engine_max = io["input"].get("max_batch")
    return min(wanted, engine_max) if engine_max else wanted


def _tensor(t: dict, batch: int, nchw: bool = False) -> dict:
    dims = t["shape"][1:] if batch else t["shape"]
    out = {"name": t["name"], "data_type": Enum(t["data_type"])}
    if nchw and len(dims) == 3 and dims[0] == 3:
        out["format"] = Enum("FORMAT_NCHW")
    return {**out, "dims": [d if d is not None else -1 for d in dims]}


def preferred_sizes(max_batch: int) -> list[int]:
    """The batch sizes the batcher aims for: the largest powers of two up to `max_batch`."""
    sizes = [b for b in (4, 8, 16, 32, 64, 128, 256) if b <= max_batch]
    return sizes[-3:] or [max_batch]


def ort_threads(session: dict | None) -> dict[str, str]:
    """The artifact's recorded ONNX Runtime threads as the onnxruntime backend's parameters."""
    session = session or {}

    def count(key: str) -> str:
        value = session.get(key, "default")
        return "0" if value in (None, "default") else str(int(value))

    return {"intra_op_thread_count": count("intra_op_num_threads"),
            "inter_op_thread_count": count("inter_op_num_threads")}


def labels_text(classes: list[str]) -> str:
    bad = [c for c in classes if "\n" in c or "\r" in c]
    if bad:
        raise BundleError(f"class name {bad[0]!r} holds a line break; a label file has one class per line")
    return "".join(f"{c}\n" for c in classes)


def _write_preprocess(folder: Path, manifest: Manifest, max_batch: int, instances: int) -> Model:
    h, w = manifest.preprocess.size
    config = {
        "name": folder.name,
        "backend": "python",
        "max_batch_size": max_batch,
        "input": [{"name": triton_images.IMAGE, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
        "output": [{"name": manifest.input.get("name", "input"), "data_type": Enum("TYPE_FP32"), "dims": [3, h, w]}],
        "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}],
        "parameters": [{"key": triton_images.PREPROCESS, "value": {"string_value": json.dumps(manifest.input)}}],
    }
    if max_batch > 1:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": QUEUE_DELAY_US}
    (folder / VERSION).mkdir(parents=True, exist_ok=True)
    write_text(folder / VERSION / "model.py", Path(triton_images.__file__).read_text())
    write_text(folder / CONFIG, "# image bytes -> the bundle's preprocessing (edgetune.preprocess); needs "
               "`pip install edgetune` in Triton's Python backend environment\n" + pbtxt.text(config))
    return Model(folder.name, "edgetune.preprocess", "python", max_batch)


def _write_ensemble(folder: Path, manifest: Manifest, classifier: Model, preprocess: Model) -> Model:
    tensor = manifest.input.get("name", "input")
    config = {
        "name": folder.name,
        "platform": "ensemble",
        "max_batch_size": min(classifier.max_batch, preprocess.max_batch),
        "input": [{"name": triton_images.IMAGE, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
        "output": [{"name": classifier.output, "data_type": Enum("TYPE_FP32"),
                    "dims": [manifest.model["num_classes"]], "label_filename": LABELS}],
        "ensemble_scheduling": {"step": [
            {"model_name": preprocess.name, "model_version": -1,
             "input_map": [{"key": triton_images.IMAGE, "value": triton_images.IMAGE}],
             "output_map": [{"key": tensor, "value": "pixels"}]},
            {"model_name": classifier.name, "model_version": -1,
             "input_map": [{"key": tensor, "value": "pixels"}],
             "output_map": [{"key": classifier.output, "value": classifier.output}]},
        ]},
    }
    (folder / VERSION).mkdir(parents=True, exist_ok=True)  # an ensemble's version folder stays empty
    write_text(folder / LABELS, labels_text(manifest.classes))
    write_text(folder / CONFIG, f"# image bytes -> {preprocess.name} -> {classifier.name}\n" + pbtxt.text(config))
    return Model(folder.name, f"{preprocess.name} -> {classifier.name}", "ensemble", config["max_batch_size"],
                 classifier.output)
