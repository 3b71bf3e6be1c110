"""Tests of edgetune.cli."""
