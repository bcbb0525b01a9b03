"""Spike encoders: turn a static input `[B, ...]` into a time-major sequence `[T, B, ...]`.

- direct: the analogue value is the input current at every step (the first layer acts as encoder).
- rate: Bernoulli spikes with probability equal to the intensity in [0, 1].
- poisson: Poisson spike counts with mean equal to the intensity (can exceed one per step).
- latency: one spike per input, earlier for stronger intensity; zero intensity never fires.
- frames: inputs that carry their own time axis `[B, T, ...]` (event frames, e.g. N-MNIST binned into T
  steps), made time-major; the model's T must be the data's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def direct(x: Tensor, T: int) -> Tensor:
    return x.unsqueeze(0).expand(T, *x.shape)


def rate(x: Tensor, T: int, generator: torch.Generator | None = None) -> Tensor:
    p = x.clamp(0, 1).unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p, generator=generator)


def poisson(x: Tensor, T: int, generator: torch.Generator | None = None) -> Tensor:
    lam = x.clamp(min=0).unsqueeze(0).expand(T, *x.shape).contiguous()
    return torch.poisson(lam, generator=generator)


def latency(x: Tensor, T: int) -> Tensor:
    """Time-to-first-spike: intensity 1 fires at t = 0, intensity -> 0 fires at t = T - 1."""
    x = x.clamp(0, 1)
    t_fire = torch.round((1 - x) * (T - 1)).long()
    steps = torch.arange(T, device=x.device).view(T, *([1] * x.ndim))
    return ((steps == t_fire.unsqueeze(0)) & (x > 0).unsqueeze(0)).to(x.dtype)


def frames(x: Tensor, T: int) -> Tensor:
    if x.ndim < 3 or x.shape[1] != T:
        raise ValueError(f"encoding 'frames' takes inputs [B, T={T}, ...] with their own time axis; "
                         f"got shape {tuple(x.shape)}: set the data's T (e.g. data.options.T) to encoding.T")
    return x.transpose(0, 1)


# The one list of encodings: validators (recipes, manifests) and help texts read it from here.
ENCODERS: dict[str, Callable[[Tensor, int, torch.Generator | None], Tensor]] = {
    "direct": lambda x, T, g: direct(x, T),
    "rate": rate,
    "poisson": poisson,
    "latency": lambda x, T, g: latency(x, T),
    "frames": lambda x, T, g: frames(x, T),
}
ENCODINGS: tuple[str, ...] = tuple(ENCODERS)


def encode(x: Tensor, T: int, kind: str, generator: torch.Generator | None = None) -> Tensor:
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoding '{kind}'; known: {', '.join(ENCODINGS)}")
    return ENCODERS[kind](x, T, generator)
