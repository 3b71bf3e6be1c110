"""tools/faults.py, which the README and BENCHMARKS.md name, still runs and judges: two quick cases."""

import subprocess
import sys

from tests.support import REPO

TOOL = REPO / "tools" / "faults.py"


def test_fault_tool_runs_cases_and_writes_its_table(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), "-k", "one class", "-k", "non-empty --out",
                           "--markdown", str(tmp_path / "faults.md")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (tmp_path / "faults.md").read_text()
    assert "| one class | 2: one class | 2: error: " in table
    assert "| non-empty --out | 2: is not empty | 2: error: " in table
    assert "2/2 pass" in table and "FAIL" not in table
