"""A settings file in YAML (`--config FILE`, a run's saved config.yaml, `tune --space FILE`):
flag names to values, read as the flags would give them. The settings themselves and their
checks are `edgetune.config`'s."""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import ConfigError, did_you_mean


def yaml_word(value):
    """A YAML value given to a flag that takes words: YAML 1.1 reads a bare `off` or `no` as
    False (`cache: off`, `qat: off`), and `on` or `yes` as True; the word comes back."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def load_yaml(path: str | Path, allowed: set[str] | None = None) -> dict:
    """A YAML file of flag names (dashes or underscores) -> settings; keys outside `allowed`
    are refused (None: every key is kept, for a file whose keys were checked already)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file; pass a YAML file of flag: value lines")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--config {path} is not valid YAML ({first})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path} must be a mapping of flag: value lines")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if allowed is not None and name not in allowed:
            raise ConfigError(
                f"--config {path}: unknown key {key!r}{did_you_mean(name, allowed)}; "
                "keys are the command's flag names"
            )
        out[name] = value
    return out
