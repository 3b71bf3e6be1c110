"""Tests of edgetune.tune."""
