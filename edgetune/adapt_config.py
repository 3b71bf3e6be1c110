"""Settings for domain adaptation: a frozen dataclass, validated before any work starts.

CLI flags map one-to-one to fields, as for the other stages; `config.yaml` holds them, so
`--resume` adapts the way the run was configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from edgetune.errors import ConfigError, did_you_mean

Method = Literal["bn", "tent", "pseudo"]


@dataclass(frozen=True)
class AdaptConfig:
    target_data: str | None = None  # unlabelled deployment-domain images, any layout
    adapt: str | None = None  # bn | tent | pseudo; None: bn when target_data is given
    target_val: str | None = None  # labelled target images: measured only, never selects
    target_labels: str | None = None  # a few labelled target images: trained on beside the source
    adapt_images: int = 2000  # target images adaptation and calibration draw from
    min_shift: float = 0.1  # below this input-statistics shift, keep the source statistics
    tent_lr: float = 1e-3
    pseudo_threshold: float = 0.9
    pseudo_epochs: int = 3

    def __post_init__(self):
        allowed = get_args(Method)
        if self.adapt is not None and self.adapt not in allowed:
            raise ConfigError(f"--adapt {self.adapt!r} is not allowed{did_you_mean(str(self.adapt), allowed)}; "
                              f"choose one of: {', '.join(allowed)}")
        if self.adapt is not None and self.target_data is None:
            raise ConfigError(f"--adapt {self.adapt} needs unlabelled images from the deployment domain: "
                              "add --target-data DIR")
        if self.adapt_images < 1 or self.pseudo_epochs < 1 or self.tent_lr <= 0:
            raise ConfigError("--adapt-images, --pseudo-epochs and --tent-lr must be positive")
        if not 0.0 < self.pseudo_threshold < 1.0:
            raise ConfigError(f"--pseudo-threshold {self.pseudo_threshold} must be between 0 and 1")
        if self.min_shift < 0:
            raise ConfigError(f"--min-shift {self.min_shift} must not be negative (0: always adapt)")

    @property
    def method(self) -> str | None:
        """The adaptation to run: None without target images."""
        if self.target_data is None:
            return None
        return self.adapt or "bn"
