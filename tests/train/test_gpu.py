"""CUDA training with autocast: runs where a GPU is (make test-gpu), skips here with why."""

import pytest
import torch

from edgetune.config import TrainConfig
from edgetune.train import checkpoint, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU visible to PyTorch; run `make test-gpu` on a GPU host"),
]


def test_cuda_autocast_training_matches_cpu_accuracy(small_digits, tmp_path):
    common = dict(data=str(small_digits), model="resnet18", weights="none", image_size=32,
                  unfreeze="all", epochs=3, batch_size=16, lr=3e-3, augment="none")
    gpu = train(TrainConfig(device="cuda", **common), tmp_path / "gpu", log=lambda *_: None)
    cpu = train(TrainConfig(device="cpu", **common), tmp_path / "cpu", log=lambda *_: None)
    # fp16 autocast changes rounding, not what the model learns.
    assert abs(gpu.best_top1 - cpu.best_top1) <= 0.15
    state = checkpoint.load(gpu.best)["model"]
    assert all(t.device.type == "cpu" for t in state.values())  # loadable anywhere


def test_cuda_cached_and_compiled_paths(small_digits, tmp_path):
    """The feature cache filled on the GPU, bf16/fp16 autocast on the suffix, torch.compile."""
    common = dict(data=str(small_digits), model="mobilenet_v3_small", weights="none", image_size=64,
                  unfreeze="1", epochs=2, batch_size=16, augment="light", device="cuda")
    logs = []
    cached = train(TrainConfig(cache_views=2, **common), tmp_path / "cached", log=logs.append)
    assert all(h["cached"] for h in cached.history) and any("cache on" in line for line in logs)
    compiled = train(TrainConfig(compile=True, cache="off", **common), tmp_path / "compiled",
                     log=lambda *_: None)
    assert compiled.history[-1]["train_loss"] == compiled.history[-1]["train_loss"]  # not NaN
    assert abs(cached.best_top1 - compiled.best_top1) <= 0.3
