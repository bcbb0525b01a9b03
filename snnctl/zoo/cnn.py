"""A small VGG-style CNN sized for small images (8x8 digits up to 32x32)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from snnctl.nn.layers import ActivationFactory


def conv_bn(c_in: int, c_out: int, act: ActivationFactory) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act()]


def build(
    act: ActivationFactory,
    in_channels: int = 1,
    channels: Sequence[int] = (16, 32, 64),
    num_classes: int = 10,
    pool: str = "avg",
) -> nn.Module:
    """conv-bn-act per width, 2x2 pooling after every stage but the last, global average pool."""
    if pool not in ("avg", "max"):
        raise TypeError(f"pool must be 'avg' or 'max', got {pool!r}")
    pooling = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, c in enumerate(channels):
        layers += conv_bn(c_in, c, act)
        if i < len(channels) - 1:
            layers.append(pooling(2))
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)
