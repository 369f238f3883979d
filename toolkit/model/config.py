"""What decides a training run, and what it produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights."""

    arch: str = "mlp"
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    limit: int | None = None


@dataclass
class TrainResult:
    """What a training run produced, for the CLI summary and training/metrics.json."""

    model: object
    history: dict[str, list[float]]
    test_probabilities: np.ndarray
    metrics: dict = field(default_factory=dict)
