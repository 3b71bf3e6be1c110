"""Which libpython Triton's Python backend embeds, and pointing it at this interpreter's own.

Standard library only: `make` runs this file with each candidate Python before anything is
installed (`python edgetune/serve/libpython.py` prints the interpreter when it can serve).

Triton runs a PyTriton model through its Python-backend stub, a program linked against
`libpython3.X.so.1.0` that embeds it; the standard library the embedded interpreter imports
is that of the first `python3` on PATH, which PyTriton sets to the serving environment's. The
dynamic loader finds the library by its own search, not beside the interpreter. Measured on
this project's machines: pyenv's 3.11.7 and 3.12.1 are both built with a shared libpython, yet
the stub found Debian's /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 (3.11.2) for 3.11.7, whose
C code does not match 3.11.7's standard library (the model failed to load: `'_thread.RLock'
object has no attribute '_recursion_count'`), and no libpython3.12.so.1.0 at all for 3.12.1.
With the interpreter's own lib/ first on LD_LIBRARY_PATH both served. So `edgetune serve` puts a
folder holding only a link to this interpreter's libpython first on the search path (nothing
else is shadowed), and a Python built without one (`--disable-shared`) is refused in one line
before Triton starts.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

FIX = ("run it from a Python built with a shared libpython: your distribution's python3 "
       "(apt install python3.X-venv), conda, or pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared")


def own_libpython() -> Path | None:
    """This interpreter's shared library (libpython3.X.so.1.0), or None when it was built without one."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    name, folder = sysconfig.get_config_var("INSTSONAME"), sysconfig.get_config_var("LIBDIR")
    if not name or not folder or not (Path(folder) / name).is_file():
        return None
    return Path(folder) / name


def check() -> tuple[bool, str]:
    """(True, "") when Triton's Python backend can embed this interpreter, else (False, why)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.platform != "linux":
        return False, f"Triton (PyTriton) serves on Linux only, not on {sys.platform}"
    if own_libpython() is None:
        return False, (f"this Python {sys.version.split()[0]} ({sys.executable}) has no shared "
                       f"libpython{version}.so.1.0, which Triton's Python backend embeds; {FIX}")
    return True, ""


def pin(folder: str | os.PathLike) -> Path:
    """Make processes started from here (Triton and its stub) load this interpreter's libpython:
    `folder` gets a link to it and goes first on LD_LIBRARY_PATH. Returns the library."""
    lib = own_libpython()
    if lib is None:
        raise RuntimeError(check()[1])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / lib.name
    if not link.is_symlink():
        link.symlink_to(lib)
    rest = os.environ.get("LD_LIBRARY_PATH", "")
    os.environ["LD_LIBRARY_PATH"] = str(folder) + (os.pathsep + rest if rest else "")
    return lib


def main() -> int:
    ok, why = check()
    if not ok:
        print(why, file=sys.stderr)
        return 1
    print(sys.executable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
