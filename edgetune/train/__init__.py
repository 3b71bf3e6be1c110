"""The training side: everything here imports torch (but for the pure-Python `schedule`).
Deployment code (`edgetune.runtime`, `edgetune.bench`) never imports this package; a test
proves it with torch made unimportable."""

__all__ = ["TrainResult", "load_splits", "train"]


def __getattr__(name: str):
    # Lazy, so that `edgetune.train.schedule` (used to validate flags) does not load torch.
    if name in __all__:
        from edgetune.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'edgetune.train' has no attribute {name!r}")
