"""A device's own choice among a bundle's CPU artifacts: `BUNDLE/devices/<fingerprint>.json`.

The machine that exports a bundle is rarely the one that runs it, and the fastest CPU
artifact differs between them (AMX, VNNI, ARM's SDOT). `edgetune bench --choose` times the
bundle's CPU artifacts on the device and records its choice here; `runtime.load` prefers
the record whose fingerprint is this host's. The fingerprint covers what decides which
kernels run: the CPU model and its instruction-set flags, the cores this process may use,
and the CPU engines with their versions (upgrading one asks for a new choice). A record
names every artifact by its sha256, so one copied from another bundle, or edited, is
refused rather than trusted. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetune import host
from edgetune.atomic import write_json
from edgetune.bundle import Manifest
from edgetune.errors import BundleError, EdgetuneWarning
from edgetune.files import DEVICES, device_choice
from edgetune.runtime import backends

FORMAT = "edgetune-device-choice"
VERSION = 1


def describe_host() -> dict:
    """What the fingerprint is made of, kept in the record so a person can read it."""
    return {"machine": platform.machine(), "cpu": host.cpu_model(), "flags": host.cpu_flags(),
            "cpus": host.usable_cpus(), "engines": backends.cpu_engine_versions()}


def fingerprint(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def host_fingerprint() -> str:
    return fingerprint(describe_host())


@dataclass
class DeviceChoice:
    fingerprint: str
    host: dict  # describe_host() on the device
    chosen: dict  # {"file", "sha256", "why"}
    order: list[str]  # the CPU artifacts within budget, best first on this device
    timings: list[dict] = field(default_factory=list)  # per artifact: file, backend, sha256, top1, latency, verdict
    settings: dict = field(default_factory=dict)  # threads, rounds, runs, max_drop
    created: str = ""
    format: str = FORMAT
    version: int = VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"format": d.pop("format"), "version": d.pop("version"), **d}


def record_name(choice: DeviceChoice) -> str:
    """Its path inside the bundle: devices/<fingerprint>.json."""
    return device_choice(choice.fingerprint)


def write_choice(bundle: str | Path, choice: DeviceChoice) -> Path:
    """Atomically: a reader sees the previous choice or this one."""
    path = Path(bundle) / device_choice(choice.fingerprint)
    write_json(path, choice.to_dict())
    return path


def read_choice(path: Path, manifest: Manifest) -> DeviceChoice:
    """The record at `path`, checked against the bundle: every artifact it names must be in
    the manifest with the same sha256, and its name must be its fingerprint."""
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT or not isinstance(raw.get("version"), int) or raw["version"] > VERSION:
            raise ValueError(f"format {raw.get('format')!r} version {raw.get('version')!r}")
        choice = DeviceChoice(**raw)
        named = [(choice.chosen["file"], choice.chosen["sha256"])]
        named += [(t["file"], t["sha256"]) for t in choice.timings]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BundleError(f"{path} is not a device choice edgetune can read ({exc}); delete it and run "
                          f"`edgetune bench {path.parent.parent} --choose` again") from None
    fix = f"delete it, or run `edgetune bench {path.parent.parent} --choose` on the device again"
    if choice.fingerprint != path.stem:
        raise BundleError(f"{path} records the fingerprint {choice.fingerprint}, not its name: {fix}")
    shipped = {a.file: a.sha256 for a in manifest.artifacts}
    for file, digest in named:
        if file not in shipped:
            raise BundleError(f"{path} names {file}, which this bundle does not hold: it was made for another "
                              f"bundle; {fix}")
        if digest != shipped[file]:
            raise BundleError(f"{path} was made for another bundle or was changed: its {file} has sha256 "
                              f"{digest[:12]}…, the manifest's {shipped[file][:12]}…; {fix}")
    if choice.chosen["file"] not in choice.order:
        raise BundleError(f"{path} was changed: its chosen {choice.chosen['file']} is not among the artifacts "
                          f"it ranked; {fix}")
    return choice


def for_host(bundle: Path, manifest: Manifest) -> DeviceChoice | None:
    """This host's choice, if `edgetune bench --choose` made one here; a record for this
    host that does not match the bundle is refused. Where the bundle holds choices for other
    hosts only, one warning line says the export's recommendation is used instead."""
    folder = bundle / DEVICES
    if not folder.is_dir():
        return None
    others = sorted(folder.glob("*.json"))
    if not others:
        return None
    mine = bundle / device_choice(host_fingerprint())
    if mine.is_file():
        return read_choice(mine, manifest)
    warnings.warn(EdgetuneWarning(
        f"{folder} holds no choice made on this host ({len(others)} for other hosts); using the export's "
        f"recommendation; `edgetune bench {bundle} --choose` makes one here"), stacklevel=4)
    return None


def list_choices(bundle: Path, manifest: Manifest) -> list[dict]:
    """Every device choice in the bundle, for `edgetune info`: the record, whether it is this
    host's, or why it would be refused."""
    folder = bundle / DEVICES
    if not folder.is_dir():
        return []
    here = host_fingerprint()
    out = []
    for path in sorted(folder.glob("*.json")):
        item = {"file": f"{DEVICES}/{path.name}", "this_host": path.stem == here}
        try:
            choice = read_choice(path, manifest)
        except BundleError as exc:
            out.append({**item, "refused": str(exc)})
            continue
        chosen = next((t for t in choice.timings if t["file"] == choice.chosen["file"]), {})
        out.append({**item, "cpu": choice.host.get("cpu"), "cpus": choice.host.get("cpus"),
                    "engines": choice.host.get("engines"), "chosen": choice.chosen["file"],
                    "p50_ms": (chosen.get("latency") or {}).get("p50"), "why": choice.chosen.get("why"),
                    "created": choice.created})
    return out
