"""Sizes as users type them: 0, 512MB, 4GB."""

from __future__ import annotations

from edgetune.errors import ConfigError


def parse_size(text: str, flag: str) -> int:
    units = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
             "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}
    s = str(text).strip().upper().replace(" ", "").removesuffix("IB").removesuffix("I")
    num = s.rstrip("KMGTB")
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    unit = s[len(num):]
    if value < 0 or unit not in units:
        raise ConfigError(f"{flag} {text!r} is not a size; use e.g. 0, 512MB, 4GB")
    return int(value * units[unit])
