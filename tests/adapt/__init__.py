"""Tests of edgetune.adapt."""
