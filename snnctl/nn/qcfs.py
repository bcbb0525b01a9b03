"""The clip-floor-shift (QCFS) activation: an ANN activation that converts to IF neurons at small T.

It lives in `nn/` because both the zoo (conversion-aware ANN training) and conversion (which reads its
ceilings as thresholds) use it, and neither may import the other.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def floor_ste(x: Tensor) -> Tensor:
    """floor forward, identity backward (straight-through estimator)."""
    return x + (torch.floor(x) - x).detach()


def qcfs(x: Tensor, lam: Tensor, levels: int) -> Tensor:
    """Clip-floor-shift: lam * clip(floor(x * L / lam + 1/2) / L, 0, 1) (Bu et al., ICLR 2022)."""
    return lam * torch.clamp(floor_ste(x * levels / lam + 0.5) / levels, 0, 1)


class QCFS(nn.Module):
    """Conversion-aware ANN activation: L quantisation levels up to a trainable ceiling lam.

    An IF neuron with threshold lam, initial potential lam/2 and reset by subtraction emits, over T = L
    steps, the same count this activation computes, which is why such ANNs convert at T <= 8.
    """

    def __init__(self, levels: int = 8, init: float = 4.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.lam = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return qcfs(x, self.lam, self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
