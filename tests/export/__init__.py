"""Tests of edgetune.export (export/): the TensorRT plan and builder, on the CPU where they can run."""
