"""Tests of edgetune.data."""
