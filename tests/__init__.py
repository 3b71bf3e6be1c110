"""edgetune's tests: one folder per package (tests/train/ for edgetune/train/, …), the shared
fixtures in conftest.py, the shared helpers in tests/support/."""
