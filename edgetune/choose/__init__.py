"""`edgetune choose`: rank pretrained backbones by transferability and latency before training."""
