"""What a training run's unset flags resolve to: the batch, the learning rate and the epochs,
each rule with the measurement behind it. `TrainConfig.batch_for`, `lr_for` and `epochs_for`
apply them where the user set nothing; torch-free."""

from __future__ import annotations

# The batch, unless --batch-size sets it: 32 images a step, fewer (never under MIN_BATCH) where the
# training set would make fewer than MIN_STEPS_PER_EPOCH steps an epoch. At one step an epoch a
# new head is undertrained after 10 epochs: pretrained EfficientNet-Lite0, 5 photographs a class,
# head only, 82.5% val top-1 at batch 32 against 93.0% at batch 8 (BENCHMARKS.md).
DEFAULT_BATCH, MIN_BATCH, MIN_STEPS_PER_EPOCH = 32, 8, 4
# The head's learning rate, unless --lr sets it: HEAD_ONLY_LR where a new head alone, started at
# random (--head-init random), trains on pretrained features, DEFAULT_LR where blocks train too
# (and from scratch). Pretrained EfficientNet-Lite0 on 5-20 photographs a class, a random head
# alone, three seeds: 3e-3 against 1e-3 was
# never worse in nine rows and better in four (+1.75 to +7.0 points); 1e-2 was unstable
# (BENCHMARKS.md, "Transfer from ImageNet on few photographs").
DEFAULT_LR, HEAD_ONLY_LR = 1e-3, 3e-3
# A head imprinted from the class means (edgetune.train.imprint) starts where training would
# take a random one; on very few images a class (under TINY_IMAGES) the means are the best it
# has, and a larger rate walks it off them: there it trains at TINY_IMPRINTED_LR, elsewhere at
# DEFAULT_LR. Pretrained EfficientNet-Lite0 on the shipped photographs, twelve seeds, mean val
# top-1 at 5 / 10 / 20 a class: imprinted at 3e-4 90.35 / 92.25 / 93.42 %, at 1e-3 89.77 /
# 92.25 / 94.45 %, a random head at 3e-3 88.60 / 91.08 / 93.27 % (BENCHMARKS.md, "Transfer from
# ImageNet on few photographs").
TINY_IMPRINTED_LR = 3e-4
# The epochs, unless --epochs sets them: TINY_HEAD_EPOCHS where a new head alone trains on
# pretrained features of very few images a class (each epoch a fresh augmented view of them),
# DEFAULT_EPOCHS otherwise. The same photographs and model, six seeds, head alone: at 5 images a
# class 20 epochs beat 10 in all six (+1.75 to +5.3 points, mean +2.9); at 10 and 20 a class they
# did not (mean -0.9 and -0.3), so the rule stops where `--unfreeze auto` stops taking the head
# alone without a probe (BENCHMARKS.md, "Transfer from ImageNet on few photographs").
DEFAULT_EPOCHS, TINY_HEAD_EPOCHS = 10, 20


def batch(share: int) -> int:
    """DEFAULT_BATCH, shrunk (to MIN_BATCH at least) so that a process's `share` of the
    training images makes MIN_STEPS_PER_EPOCH steps an epoch."""
    return max(MIN_BATCH, min(DEFAULT_BATCH, share // MIN_STEPS_PER_EPOCH))


def lr(new_head_alone_on_pretrained: bool, head_init: str, tiny_data: bool) -> float:
    """A new head alone on pretrained features takes larger steps than a head whose blocks
    train beside it (or one trained from scratch), unless it starts imprinted; imprinted on
    very few images a class (`tiny_data`), smaller ones still."""
    if not new_head_alone_on_pretrained:
        return DEFAULT_LR
    if head_init == "random":
        return HEAD_ONLY_LR
    return TINY_IMPRINTED_LR if tiny_data else DEFAULT_LR


def epochs(new_head_alone_on_tiny_pretrained: bool) -> int:
    """More for a new head alone on pretrained features of very few images a class, where
    each epoch is one more augmented view of them."""
    return TINY_HEAD_EPOCHS if new_head_alone_on_tiny_pretrained else DEFAULT_EPOCHS
