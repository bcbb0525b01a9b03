"""A multilayer perceptron: Flatten, then (Linear, act) per hidden layer, then a Linear readout."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from snnctl.nn.layers import ActivationFactory


def build(
    act: ActivationFactory,
    in_features: int = 64,
    hidden: Sequence[int] = (128, 128),
    num_classes: int = 10,
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
