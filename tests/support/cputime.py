"""CPU seconds per test, printed beside pytest's --durations.

Wall time on a shared 2-core machine says as much about the neighbours as about the test: the
same suite took 9 minutes idle and 36 under a load average of 9. CPU time (this process and the
subprocesses a test waited for: the CLI runs, torchrun and its workers, Triton) barely moves
with load, so it is what tells where the suite's 10-minute budget goes.
"""

from __future__ import annotations

import resource

import pytest

_spent: dict[str, float] = {}


def _cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = _cpu_now()
    yield
    _spent[item.nodeid] = _cpu_now() - start  # setup (session fixtures included), call, teardown


def pytest_terminal_summary(terminalreporter):
    if not _spent:
        return
    slowest = sorted(_spent.items(), key=lambda kv: -kv[1])[:10]
    terminalreporter.write_sep("=", f"most CPU (this process and waited-for children): {sum(_spent.values()):.0f} s "
                                    "in all")
    for nodeid, seconds in slowest:
        terminalreporter.write_line(f"{seconds:8.1f}s cpu  {nodeid}")
