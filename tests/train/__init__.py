"""Tests of edgetune.train."""
