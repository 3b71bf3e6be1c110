"""Calibration: a sample of the user's own images → activation ranges (computed once,
cached) → one QDQ graph per target. Installed as `edgetune.calib`."""
