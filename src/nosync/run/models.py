"""The built-in models: a small MLP and a small 2-conv CNN (with BatchNorm, so buffers matter)."""

from __future__ import annotations

import math

import torch
from torch import nn

from nosync.errors import UserError

MODELS = ("mlp", "cnn")


def build_model(name: str, input_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    """A fresh model, initialised from ``seed`` (same seed, same weights)."""
    torch.manual_seed(seed)
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, classes),
        )
    if name == "cnn":
        channels, height, width = input_shape
        return nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (height // 4) * (width // 4), 64),
            nn.ReLU(),
            nn.Linear(64, classes),
        )
    raise UserError(f"model: unknown model {name!r} (choose from {', '.join(MODELS)})")
