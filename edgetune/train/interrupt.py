"""Ctrl-C during training: stop at the next step boundary, save, and name the resume command."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune.files import CHECKPOINT_LAST as LAST


class Interrupted(EdgetuneError):
    """Ctrl-C: the state was saved; the message says how to resume."""


class SaveOnInterrupt:
    """Ctrl-C stops training at the next step boundary, saves, and names the resume command.

    Only between steps do the weights, step count, RNG and BatchNorm statistics agree (a batch
    half drawn or a forward half run has moved some of them), so the signal is held until then
    and the resume is exact. A second Ctrl-C stops at once and keeps the last checkpoint.
    """

    def __init__(self, save, out: Path, command: str):
        self.save, self.out, self.command = save, out, command
        self.requested = self.forced = self.anytime = False
        self.previous = None

    def __enter__(self):
        # Only the main thread can take signals; a SIGINT the caller ignores or handles stays theirs.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, *_):
        if self.anytime:
            raise KeyboardInterrupt
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Stop here if Ctrl-C was pressed: call only where the state is consistent."""
        if self.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def at_once(self):
        """A block that changes no training state: Ctrl-C stops it immediately."""
        self.check()
        self.anytime = True
        try:
            yield
        finally:
            self.anytime = False

    def __exit__(self, exc_type, exc, tb):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if exc_type is not KeyboardInterrupt:
            return False
        resume = f"resume with: edgetune {self.command} --resume --out {self.out}"
        if self.forced:
            kept = (f"{self.out / LAST} keeps the last checkpoint" if (self.out / LAST).is_file()
                    else "no checkpoint was written yet")
            raise Interrupted(f"interrupted twice: stopped without saving, {kept}; {resume}") from None
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C must not cut the save
        try:
            self.save()
        finally:  # a notebook's kernel must still answer the next Ctrl-C
            signal.signal(signal.SIGINT, previous)
        raise Interrupted(f"interrupted; state saved to {self.out / LAST}; {resume}") from None
