"""Noise models: corrupt inputs, spike trains or weights at a level p in [0, 1], one level per example.

| model          | acts on                      | at level p                                             |
|----------------|------------------------------|--------------------------------------------------------|
| `bitflip`      | binary inputs                | each bit flipped with probability p (0.5: no signal)   |
| `salt_pepper`  | real inputs in [0, 1]        | each value set to 0 or 1 (even odds) with probability p |
| `gaussian`     | real inputs                  | add N(0, p^2) (p in units of the [0, 1] input range)   |
| `dropout`      | any input                    | each feature set to 0 with probability p               |
| `spike_delete` | binary spike trains [T,B,..] | each spike removed with probability p                  |
| `spike_insert` | binary spike trains          | each silent slot fires with probability p              |
| `spike_jitter` | binary spike trains          | each spike moved one step earlier or later with prob. p |
| `weight`       | synaptic weights             | w * (1 + p * N(0, 1)) per weight (device variability)  |

Every function takes a generator, so an evaluation is reproducible and never shares draws with
training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnctl.data.encoders import encode
from snnctl.errors import UserError

InputNoise = Callable[[Tensor, Tensor, torch.Generator], Tensor]


def _per_example(level: Tensor, x: Tensor, batch_dim: int) -> Tensor:
    """Broadcast a [B] vector of levels against x, whose batch axis is `batch_dim`."""
    shape = [1] * x.ndim
    shape[batch_dim] = -1
    return level.to(x.device, x.dtype).view(shape)


def _mask(x: Tensor, p: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device) < p


def require_binary(x: Tensor, model: str) -> None:
    if not bool(((x == 0) | (x == 1)).all()):
        raise UserError(
            f"noise model '{model}' needs binary inputs (0/1) but the data has other values",
            hint="binarise the data (e.g. --set data.options.binarize=true for digits) or use "
                 f"{' or '.join(names(kind='input', binary=False))}",
        )


def bitflip(x: Tensor, level: Tensor, g: torch.Generator, batch_dim: int = 0) -> Tensor:
    flip = _mask(x, _per_example(level, x, batch_dim), g)
    return torch.where(flip, 1 - x, x)


def salt_pepper(x: Tensor, level: Tensor, g: torch.Generator, batch_dim: int = 0) -> Tensor:
    hit = _mask(x, _per_example(level, x, batch_dim), g)
    salt = (torch.rand(x.shape, generator=g, device=x.device) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def gaussian(x: Tensor, level: Tensor, g: torch.Generator, batch_dim: int = 0) -> Tensor:
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return x + noise * _per_example(level, x, batch_dim)


def dropout(x: Tensor, level: Tensor, g: torch.Generator, batch_dim: int = 0) -> Tensor:
    drop = _mask(x, _per_example(level, x, batch_dim), g)
    return x.masked_fill(drop, 0.0)


def spike_delete(seq: Tensor, level: Tensor, g: torch.Generator) -> Tensor:
    return seq * ~_mask(seq, _per_example(level, seq, 1), g)


def spike_insert(seq: Tensor, level: Tensor, g: torch.Generator) -> Tensor:
    return torch.where(_mask(seq, _per_example(level, seq, 1), g), torch.ones_like(seq), seq)


def spike_jitter(seq: Tensor, level: Tensor, g: torch.Generator) -> Tensor:
    """Move each chosen spike one step earlier or later (kept inside [0, T)); spikes that land on the
    same slot merge, as they would on a binary event line."""
    T = seq.shape[0]
    move = _mask(seq, _per_example(level, seq, 1), g) & (seq > 0)
    shift = torch.where(torch.rand(seq.shape, generator=g, device=seq.device) < 0.5, -1, 1)
    t = torch.arange(T, device=seq.device).view(T, *([1] * (seq.ndim - 1)))
    target = (t + shift).clamp(0, T - 1)
    out = seq * ~move
    moved = torch.zeros_like(seq).scatter_add_(0, target.expand_as(seq) * move + t * ~move, seq * move)
    return (out + moved).clamp(max=1)


@dataclass(frozen=True)
class NoiseModel:
    name: str
    kind: str  # "input", "spikes" or "weights"
    fn: Callable[..., Tensor] | None
    binary: bool  # needs binary inputs / spike trains
    description: str


NOISE_MODELS: dict[str, NoiseModel] = {
    m.name: m
    for m in (
        NoiseModel("bitflip", "input", bitflip, True, "bit flips on binary inputs"),
        NoiseModel("salt_pepper", "input", salt_pepper, False, "salt-and-pepper on inputs in [0, 1]"),
        NoiseModel("gaussian", "input", gaussian, False, "additive Gaussian noise, std = level"),
        NoiseModel("dropout", "input", dropout, False, "features dropped to 0"),
        NoiseModel("spike_delete", "spikes", spike_delete, True, "spikes deleted"),
        NoiseModel("spike_insert", "spikes", spike_insert, True, "spurious spikes inserted"),
        NoiseModel("spike_jitter", "spikes", spike_jitter, True, "spikes moved by one step"),
        NoiseModel("weight", "weights", None, False, "multiplicative weight noise (device variability)"),
    )
}


def names(kind: str | None = None, binary: bool | None = None) -> list[str]:
    """Noise model names from the one table, optionally only one kind or binary-ness."""
    return [n for n, m in NOISE_MODELS.items()
            if (kind is None or m.kind == kind) and (binary is None or m.binary == binary)]


def noise_model(name: str) -> NoiseModel:
    if name not in NOISE_MODELS:
        raise UserError(f"unknown noise model '{name}'", hint=f"use one of: {', '.join(NOISE_MODELS)}")
    return NOISE_MODELS[name]


def check_level(value: float, what: str = "noise level") -> float:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{what} {value} is outside [0, 1]", hint="noise levels are probabilities, e.g. 0:0.45")
    return value


def parse_range(text: str) -> tuple[float, float]:
    """'0:0.45' -> (0.0, 0.45); a single number p means (p, p)."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"noise range '{text}' is not LOW:HIGH", hint="e.g. --noise 0:0.45") from None
    if len(values) not in (1, 2):
        raise UserError(f"noise range '{text}' is not LOW:HIGH", hint="e.g. --noise 0:0.45")
    lo, hi = values[0], values[-1]
    check_level(lo), check_level(hi)
    if lo > hi:
        raise UserError(f"noise range '{text}' runs backwards", hint="give LOW:HIGH with LOW <= HIGH")
    return lo, hi


def parse_levels(text: str) -> list[float]:
    """'0,0.1,0.2' -> [0.0, 0.1, 0.2]."""
    try:
        levels = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"noise levels '{text}' are not comma-separated numbers", hint="e.g. 0,0.1,0.2") from None
    if not levels:
        raise UserError("no noise levels given", hint="e.g. --noise 0,0.1,0.2,0.3,0.4,0.5")
    return [check_level(v) for v in levels]


def noisy_logits(network: nn.Module, x: Tensor, noise: NoiseModel, level: Tensor, g: torch.Generator) -> Tensor:
    """Logits of `network` (an snnctl Network) on `x` corrupted by `noise`, one level per example
    (weight noise uses the batch's first level for the whole batch)."""
    if noise.kind == "input":
        if noise.binary:
            require_binary(x, noise.name)
        return network(noise.fn(x, level, g))
    if noise.kind == "spikes":
        if not getattr(network, "spiking", False):
            raise UserError(f"noise model '{noise.name}' acts on spike trains; this model is an ANN",
                            hint=f"use an input noise model ({', '.join(names(kind='input'))})")
        seq = encode(x, network.T, network.encoding, network.generator)
        require_binary(seq, noise.name)
        return network.forward_sequence(noise.fn(seq, level, g)).mean(0)
    with noisy_weights(network, float(level[0]), g):
        return network(x)


@contextmanager
def noisy_weights(model: nn.Module, level: float, g: torch.Generator) -> Iterator[None]:
    """Perturb every Linear/Conv weight by w * (1 + level * N(0, 1)) inside the block, restore after."""
    saved = []
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                w = module.weight
                saved.append((w, w.detach().clone()))
                w.mul_(1 + level * torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for w, original in saved:
                w.copy_(original)
