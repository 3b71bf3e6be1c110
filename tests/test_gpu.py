"""CUDA training with autocast: runs where a GPU is (make test-gpu), skips here with why."""

import pytest
import torch

from edgetune.train import checkpoint
from edgetune.config import TrainConfig
from edgetune.train import train

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
