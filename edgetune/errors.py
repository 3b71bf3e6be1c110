"""User-facing errors.

An `EdgetuneError` is a mistake the user can fix (bad data, flags or files). The CLI
prints it as one line and exits 2; anything else is our bug and keeps its traceback.
Messages say what was wrong, what is allowed, and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgetuneError(Exception):
    """A user error: shown as one line, exit code 2."""


class ConfigError(EdgetuneError):
    """A flag or config value is not allowed."""


class DataError(EdgetuneError):
    """The dataset on disk cannot be used as given."""


class BundleError(EdgetuneError):
    """A bundle or artifact is missing, tampered with, or of an unknown format."""


class InputError(EdgetuneError):
    """An image or array handed to the runtime is not what the model expects."""


class MissingDependencyError(EdgetuneError):
    """An optional dependency is needed for this command."""


class EdgetuneWarning(UserWarning):
    """Something the user should know that does not stop the run: the CLI prints it as
    one line, `edgetune: warning: …`; library callers filter or record it as usual."""


class DataWarning(EdgetuneWarning):
    """The dataset is usable, but not as given: files left out, classes too small to judge."""


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest allowed value, or ''."""
    close = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_few(items, shown: int = 3) -> str:
    """'a, b, c and 4 more': a message names the first few and counts the rest."""
    items = [str(x) for x in items]
    text = ", ".join(items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise a one-line install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}' ({exc}); install it with: "
            f"pip install 'edgetune[{extra}]'"
        ) from None
