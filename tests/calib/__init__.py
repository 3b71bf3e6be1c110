"""Tests of edgetune.calib (calib/): calibration, QDQ recipes, candidates, the TensorRT pre-flight."""
