"""CPU seconds per test, printed beside pytest's --durations.

Wall time on a shared 2-core machine says as much about the neighbours as about the test: the
same suite took 9 minutes idle and 36 under a load average of 9. CPU time (this process and the
subprocesses a test waited for: the CLI runs, torchrun and its workers, Triton) barely moves
with load, so it is what tells where the suite's 10-minute budget goes. Under pytest-xdist each
worker measures its own tests and the figure travels to the controller with the test's report.
"""

from __future__ import annotations

import json
import os
import resource

import pytest

KEY = "cpu_seconds"
_spent: dict[str, float] = {}


def _cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = _cpu_now()
    item.user_properties.append((KEY, start))  # replaced by the spend before teardown's report
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "teardown":  # setup (session fixtures included), call and teardown so far
        props = dict(item.user_properties)
        if KEY in props:
            item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != KEY]
            item.user_properties.append((KEY, _cpu_now() - props[KEY]))
    yield


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        for key, value in report.user_properties:
            if key == KEY:
                _spent[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
    if not _spent:
        return
    slowest = sorted(_spent.items(), key=lambda kv: -kv[1])[:10]
    terminalreporter.write_sep("=", f"most CPU (this process and waited-for children): {sum(_spent.values()):.0f} s "
                                    "in all")
    for nodeid, seconds in slowest:
        terminalreporter.write_line(f"{seconds:8.1f}s cpu  {nodeid}")
    if os.environ.get("EDGETUNE_CPU_REPORT"):  # every test's figure, for finding the next cut
        from edgetune.atomic import write_text

        write_text(os.environ["EDGETUNE_CPU_REPORT"], json.dumps(dict(sorted(_spent.items(), key=lambda kv: -kv[1])),
                                                                 indent=1))
