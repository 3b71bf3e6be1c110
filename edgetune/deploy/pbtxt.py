"""Protocol-buffer text format, written: Triton's config.pbtxt from plain Python values.

Enough of the format for a model configuration: messages as dicts, repeated messages as
lists of dicts, repeated scalars as lists, enum values as `Enum`, `#` comments. The tests
parse every file this writes with Triton's own schema (tritonclient's model_config_pb2), so a
misspelt field fails there, not on a user's server.
"""

from __future__ import annotations

import json


class Enum(str):
    """An enum value, written bare (KIND_CPU, TYPE_FP32), not quoted."""


def text(message: dict, comments: dict[str, str] | None = None) -> str:
    """`message` in text format; `comments` puts a `# why` line above a top-level field."""
    return "".join(_field(key, value, 0, (comments or {}).get(key)) for key, value in message.items())


def _field(key: str, value, depth: int, comment: str | None = None) -> str:
    pad = "  " * depth
    lead = "".join(f"{pad}# {line}\n" for line in comment.splitlines()) if comment else ""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return lead + "".join(_field(key, v, depth) for v in value)
    if isinstance(value, dict):
        inner = "".join(_field(k, v, depth + 1) for k, v in value.items())
        return f"{lead}{pad}{key} {{\n{inner}{pad}}}\n"
    if isinstance(value, list):
        return f"{lead}{pad}{key}: [{', '.join(_scalar(v) for v in value)}]\n"
    return f"{lead}{pad}{key}: {_scalar(value)}\n"


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # \" \\ \n escapes, as text format reads them
    raise TypeError(f"cannot write {type(value).__name__} {value!r} in text format")
