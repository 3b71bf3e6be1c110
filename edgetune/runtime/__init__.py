"""Torch-free deployment: `load(bundle).predict(images)`.

Imports numpy, pillow and (lazily) onnxruntime, OpenVINO or TensorRT; never torch, torchvision or
the training modules, so a device needs only `pip install 'edgetune[runtime]'`.

    from edgetune import runtime
    model = runtime.load("runs/demo")
    model.predict("cat.jpg", topk=3)   # [("cat", 0.91), ("dog", 0.06), ("fox", 0.02)]
"""

from edgetune.runtime.classifier import Model, load, softmax
from edgetune.runtime.session import InputSpec, Session

__all__ = ["InputSpec", "Model", "Session", "load", "softmax"]
