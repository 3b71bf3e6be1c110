"""The search space: which train flags a search varies, and over what.

The default is the space that matters when fine-tuning a pretrained classifier: the head's
learning rate and the smaller one of the unfrozen blocks, weight decay, how deep to unfreeze,
label smoothing, dropout and augmentation. A flag given on the command line is fixed and
leaves the default space. `--space FILE` replaces it: a YAML mapping of train flag names to a
range (`{low: 1e-4, high: 1e-2, log: true}`, optionally `step`) or a list of choices. One
export flag is searchable too, under `--objective int8` (whose trials export): `qat`, a list
of auto, off and always.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from edgetune.config import ExportConfig, Qat, TrainConfig, field_names
from edgetune.config_file import yaml_word
from edgetune.errors import ConfigError, did_you_mean

# Flags a search must not vary: the data and its val split (trials must be judged on the same
# images), the machine, where outputs go, and the seed (each trial derives its own from --seed).
FIXED = {"data", "val_fraction", "device", "workers", "seed", "cache_dir", "cache_seed", "cache_memory",
         "checkpoint_every", "verify_images", "skip_bad_images", "compile"}
# Export flags a search may vary, with their values; a trial's export takes them (tune.search).
EXPORT_FLAGS = {"qat": typing.get_args(Qat)}


@dataclass(frozen=True)
class Param:
    """One searched flag: a numeric range (`low`..`high`, `log`, `step`) or a list of choices."""
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    @property
    def is_grid(self) -> bool:
        return self.choices is not None

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.low:g}..{self.high:g}" + (" log" if self.log else "") + (
            f" step {self.step:g}" if self.step else "")

    def suggest(self, trial):
        """The value an Optuna trial draws for this flag."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if _is_int(self.name):
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


DEFAULT = (
    Param("lr", 1e-4, 1e-2, log=True),
    Param("backbone_lr_scale", 0.01, 1.0, log=True),
    Param("weight_decay", 1e-4, 0.1, log=True),
    Param("unfreeze", choices=("auto", "head", "1", "2", "3")),
    Param("label_smoothing", 0.0, 0.2),
    Param("dropout", 0.0, 0.5),
    Param("augment", choices=("none", "light", "standard")),
)


def default_space(fixed: set[str], from_scratch: bool = False) -> tuple[Param, ...]:
    """The default space less the flags the user fixed on the command line. A fixed
    --unfreeze-schedule decides the depth, so it fixes --unfreeze too. From random weights
    every block must train: head-only or partly frozen trials of a random network score what
    a random feature extractor allows (two of five such trials in a 5-trial study on the
    textures scored 35-38% against 77-87% for the rest), so depth leaves the space."""
    fixed = set(fixed) | ({"unfreeze"} if "unfreeze_schedule" in fixed or from_scratch else set())
    return tuple(p for p in DEFAULT if p.name not in fixed)


def first_trial(params: tuple[Param, ...], base: TrainConfig, export_base: ExportConfig | None = None) -> dict:
    """What a new study runs first: the command's own flags (the defaults, or what the user set)
    for every searched flag whose value lies in its range or choices, the first listed model and
    size; flags outside the space are drawn. A flag the run resolves as it trains (`--lr`: the
    depth `--unfreeze auto` chooses decides it) maps to None: the trial leaves it to the run.
    A search then ends no lower than `edgetune run` with the same flags on the first model
    (judged on the same val split), and the sampler starts from a good point: 6 trials drawn at
    random from the default space on the shipped photographs scored 89.47% where the defaults
    on Lite0 at 160 px scored 96.49% (BENCHMARKS.md)."""
    first = {}
    for p in params:
        if p.name in ("model", "image_size"):
            first[p.name] = p.choices[0]
            continue
        # A flag whose None the config resolves (unfreeze, backbone_lr_scale) as the run resolves it.
        owner = (export_base or ExportConfig()) if p.name in EXPORT_FLAGS else base
        value = getattr(owner, f"resolved_{p.name}", getattr(owner, p.name))
        if value is None:  # resolved by the run itself (lr, from the depth it trains): None here too
            first[p.name] = None
        elif p.choices is not None and value in p.choices:
            first[p.name] = value
        elif p.choices is None and value is not None and p.low <= value <= p.high:
            first[p.name] = value
    return first


def choices_of(name: str, text: str, base: TrainConfig, fixed: set[str]) -> Param:
    """`--models A,B` or `--image-sizes 32,64` as a searched flag, every value checked."""
    flag = "--models" if name == "model" else "--image-sizes"
    if name in fixed:
        raise ConfigError(f"{flag} searches --{name.replace('_', '-')}, which is also given on the command "
                          "line; search it or fix it, not both")
    values = top_models(text) if name == "model" and text.startswith("top:") else [
        v.strip() for v in text.split(",") if v.strip()]
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(f"{flag} {text!r}: give two or more different values separated by commas")
    p = Param(name, choices=tuple(_as_flag_value(name, v) for v in values))
    if name == "model":
        from edgetune.train.model import check_arch

        for v in p.choices:
            check_arch(v)
    _check_values(p, base, flag)
    return p


def load_space(path: str | Path, base: TrainConfig, fixed: set[str]) -> tuple[Param, ...]:
    """`--space FILE`, every range and choice checked against the train flag's own rules."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--space {path}: no such file; pass a YAML file of flag: range or list lines")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"--space {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"--space {path} must map train flags to ranges or lists, e.g. "
                          "'lr: {low: 0.0001, high: 0.01, log: true}' or 'unfreeze: [head, 1, 2]'")
    allowed = (field_names(TrainConfig) - FIXED) | set(EXPORT_FLAGS)
    params = []
    for key, spec in raw.items():
        name = str(key).replace("-", "_")
        where = f"--space {path}: {key}"
        if name not in allowed:
            hint = (" is not something a search varies (each trial derives its seed from --seed; "
                    "data, device and cache placement are fixed)" if name in FIXED
                    else f" is not a train flag{did_you_mean(name, allowed)}")
            raise ConfigError(f"{where}{hint}; searchable flags: {', '.join(sorted(allowed))}")
        if name in fixed:
            raise ConfigError(f"{where} is also given as --{key.replace('_', '-')} on the command line; "
                              "search it or fix it, not both")
        params.append(_param(name, spec, where))
    for p in params:
        _check_values(p, base, f"--space {path}: {p.name}")
    return tuple(params)


def _param(name: str, spec, where: str) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: an empty list; give the values to try, e.g. [head, 1, 2]")
        if len(set(map(str, spec))) != len(spec):
            raise ConfigError(f"{where}: {spec} repeats a value; list each value once")
        return Param(name, choices=tuple(_as_flag_value(name, v) for v in spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where}: {spec!r} is neither a list of values nor a range; use "
                          "{low: A, high: B} (optionally log: true, step: S) or [A, B, C]")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        raise ConfigError(f"{where}: unknown range key {sorted(unknown)[0]!r}; a range has low, high, "
                          "log and step")
    if _kind(name) not in (int, float):
        raise ConfigError(f"{where} takes no numeric range; list its values instead, e.g. [a, b]")
    try:
        low, high = float(spec["low"]), float(spec["high"])
        step = None if spec.get("step") is None else float(spec["step"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: low, high and step must be numbers, not {spec!r}") from None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log: {log!r} is not allowed; use true or false")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{where}: low {low:g} must be below high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, not {low:g}")
    if log and step is not None:
        raise ConfigError(f"{where}: a range is either log or stepped, not both")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step {step:g} must be positive")
    if _kind(name) is int and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: --{name.replace('_', '-')} is a whole number; use whole low and high")
    return Param(name, low, high, log=log, step=step)


def _check_values(p: Param, base: TrainConfig, where: str) -> None:
    """Every choice and both ends of a range must make a valid config with the fixed flags."""
    if p.name in EXPORT_FLAGS:
        wrong = [v for v in p.choices if v not in EXPORT_FLAGS[p.name]]
        if wrong:
            raise ConfigError(f"{where}: {wrong[0]!r} is not allowed; use {', '.join(EXPORT_FLAGS[p.name])}")
        return
    values = p.choices if p.choices is not None else (_cast(p.name, p.low), _cast(p.name, p.high))
    for v in values:
        try:
            dataclasses.replace(base, **{p.name: v})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {v!r} is not allowed ({exc})") from None


def grid(params: tuple[Param, ...], space_path) -> dict[str, list]:
    """The grid sampler's search space: every entry must be a list of values."""
    if space_path is None:
        raise ConfigError("--sampler grid needs a grid: pass --space FILE listing the values of each "
                          "flag, e.g. 'lr: [0.0003, 0.001, 0.003]' and 'unfreeze: [head, 2]'")
    ranges = [p.name for p in params if not p.is_grid]
    if ranges:
        raise ConfigError(f"--sampler grid needs a grid, but --space {space_path} gives {ranges[0]} as a "
                          f"range; list its values instead (e.g. [a, b, c]) or use --sampler tpe|random")
    return {p.name: list(p.choices) for p in params}


def _kind(name: str):
    if name in EXPORT_FLAGS:
        return str
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for kind in (bool, int, float):
        if kind in args:
            return kind
    return str


def _is_int(name: str) -> bool:
    return _kind(name) is int


def _cast(name: str, value):
    return int(value) if _is_int(name) else float(value)


def _as_flag_value(name: str, value):
    """A YAML list item as the flag takes it: '2' for --unfreeze, 0.1 for --dropout."""
    kind = _kind(name)
    if kind is str:
        return str(yaml_word(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"--space: {name}: {value!r} is not allowed; use true or false")
        return value
    try:
        return int(value) if kind is int else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--space: {name}: {value!r} is not a number") from None


def top_models(text: str) -> list[str]:
    """`--models top:K:DIR`: the K best-ranked models of `edgetune choose --out DIR` (its
    ranking.json), each once, skipping those over choose's --latency-budget, so the search
    spends its trials on backbones that transfer."""
    from edgetune.choose.ranking import read
    from edgetune.files import CHOICE_JSON

    k, _, where = text.removeprefix("top:").partition(":")
    path = Path(where) / CHOICE_JSON if where and Path(where).is_dir() else Path(where)
    if not k.isdigit() or int(k) < 2 or not path.is_file():
        raise ConfigError(f"--models {text!r}: use top:K:DIR, K >= 2 and DIR an `edgetune choose --out` folder "
                          "holding ranking.json, e.g. --models top:3:runs/choice")
    archs: list[str] = []
    for row in read(path):
        if row["arch"] not in archs and row.get("within_budget") is not False:
            archs.append(row["arch"])
    return archs[:int(k)]
