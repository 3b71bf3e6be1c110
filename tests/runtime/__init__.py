"""Tests of edgetune.runtime."""
