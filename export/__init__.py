"""torch → ONNX, fp16 graphs and engine builders. Installed as `edgetune.export`."""
