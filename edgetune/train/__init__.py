"""The training side: everything here imports torch. Deployment code (`edgetune.runtime`,
`edgetune.bench`) never imports this package; a test proves it with torch made unimportable."""

from edgetune.train.loop import TrainResult, load_splits, train

__all__ = ["TrainResult", "load_splits", "train"]
