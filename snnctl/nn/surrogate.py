"""Surrogate gradients: a Heaviside step forward, a smooth derivative backward.

Each surrogate is the derivative of a smooth primitive (a soft step from 0 to 1), parametrised by a
width w: the distance from threshold over which the gradient is non-negligible. Keeping the primitive
beside the derivative lets the tests check every hand-written derivative with gradcheck.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class Surrogate(ABC):
    """Base: subclasses give `primitive` (soft step) and `derivative` (its exact derivative)."""

    width: float = 0.5
    name: ClassVar[str] = ""

    @abstractmethod
    def primitive(self, x: Tensor) -> Tensor:
        """A smooth step from 0 to 1 centred on the threshold."""

    @abstractmethod
    def derivative(self, x: Tensor) -> Tensor:
        """The exact derivative of `primitive`: the gradient used in place of Heaviside's."""


@dataclass(frozen=True)
class ATan(Surrogate):
    """SpikingJelly's ATan: width 0.5 matches its default alpha = 2."""

    name: ClassVar[str] = "atan"

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * x / self.width) / math.pi + 0.5

    def derivative(self, x: Tensor) -> Tensor:
        return (0.5 / self.width) / (1 + (math.pi / 2 * x / self.width) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    name: ClassVar[str] = "sigmoid"

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x / self.width)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(x / self.width)
        return s * (1 - s) / self.width


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Zenke & Ganguli's SuperSpike shape, normalised to integrate to one."""

    name: ClassVar[str] = "fast_sigmoid"

    def primitive(self, x: Tensor) -> Tensor:
        a = x / self.width
        return 0.5 * a / (1 + a.abs()) + 0.5

    def derivative(self, x: Tensor) -> Tensor:
        return 0.5 / self.width / (1 + (x / self.width).abs()) ** 2


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Piecewise-linear (Bellec et al.): zero beyond +-width, peak 1/width at threshold."""

    name: ClassVar[str] = "triangle"

    def primitive(self, x: Tensor) -> Tensor:
        w = self.width
        a = x.clamp(-w, w)
        left = (a + w) ** 2 / (2 * w * w)
        right = 1 - (w - a) ** 2 / (2 * w * w)
        return torch.where(a < 0, left, right)

    def derivative(self, x: Tensor) -> Tensor:
        return (1 - x.abs() / self.width).clamp(min=0) / self.width


SURROGATES: dict[str, type[Surrogate]] = {cls.name: cls for cls in (ATan, Sigmoid, FastSigmoid, Triangle)}


def surrogate(name: str, width: float = 0.5) -> Surrogate:
    try:
        return SURROGATES[name](width=width)
    except KeyError:
        raise ValueError(f"unknown surrogate '{name}'; known: {', '.join(SURROGATES)}") from None


class SpikeFunction(torch.autograd.Function):
    """Heaviside(x) forward; surrogate.derivative(x) backward."""

    @staticmethod
    def forward(ctx, x: Tensor, sg: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.sg = sg
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.sg.derivative(x), None


class GradedSpikeFunction(torch.autograd.Function):
    """Multi-threshold spike: k = clamp(floor(h / theta), 0, levels) threshold crossings per step.

    Backward sums the surrogate of each level: d k / d h = sum_j derivative(h - j * theta) / 1.
    """

    @staticmethod
    def forward(ctx, h: Tensor, threshold: Tensor, levels: int, sg: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, threshold)
        ctx.levels, ctx.sg = levels, sg
        return torch.floor(h / threshold).clamp(0, levels)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        h, threshold = ctx.saved_tensors
        total = torch.zeros_like(h)
        for j in range(1, ctx.levels + 1):
            total = total + ctx.sg.derivative(h - j * threshold)
        return grad * total, None, None, None


def spike(x: Tensor, sg: Surrogate) -> Tensor:
    return SpikeFunction.apply(x, sg)


def graded_spike(h: Tensor, threshold: Tensor, levels: int, sg: Surrogate) -> Tensor:
    return GradedSpikeFunction.apply(h, threshold, levels, sg)
