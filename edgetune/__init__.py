"""edgetune: fine-tune a pretrained image classifier and ship it to the edge.

Training and export need the `train` extra (PyTorch). Deployment code uses
`edgetune.runtime`, which needs only numpy, pillow and onnxruntime.
"""

__version__ = "0.1.0"
