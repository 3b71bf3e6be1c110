"""Tests of edgetune.report."""
