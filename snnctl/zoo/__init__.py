"""Model zoo: builders found through the `snnctl.models` entry points.

A builder is `build(act, **config) -> nn.Module`, mapping `[N, ...]` to logits `[N, classes]`.
`act()` returns a fresh activation: ReLU for the ANN twin, a spiking neuron for the SNN twin, so both
come from the same definition.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from snnctl import registry
from snnctl.data.encoders import encode
from snnctl.errors import UserError
from snnctl.nn import SpikingActivation, activation_factory, neuron_factory


class Network(nn.Module):
    """A classifier with one interface for both twins: static input `[B, ...]` in, logits out.

    The SNN twin encodes the input to `[T, B, ...]`, runs the body with time folded into the batch
    and reads out the mean of its output over time.
    """

    def __init__(self, body: nn.Module, kind: str, encoding: str = "direct", T: int = 1) -> None:
        super().__init__()
        self.body = body
        self.kind = kind
        self.encoding = encoding
        self.T = T
        self.generator: torch.Generator | None = None  # set for reproducible stochastic encodings
        # Logic-gated SNNs fold their last layer's weight scale out of the synapses; it multiplies the
        # logits once here (None: nothing to do).
        self.register_buffer("readout_scale", None)

    @property
    def spiking(self) -> bool:
        return self.kind != "ann"

    def forward(self, x: Tensor) -> Tensor:
        if not self.spiking:
            return self.body(x)
        return self.forward_sequence(encode(x, self.T, self.encoding, self.generator)).mean(0)

    def forward_sequence(self, seq: Tensor) -> Tensor:
        """`[T, B, ...]` in, per-step logits `[T, B, classes]` out."""
        if seq.ndim < 2:
            raise ValueError(f"expected a sequence [T, B, ...]; got shape {tuple(seq.shape)}")
        T, B = seq.shape[:2]
        for module in self.modules():
            if isinstance(module, SpikingActivation):
                module.T = T
        out = self.body(seq.reshape(T * B, *seq.shape[2:]))
        out = out.reshape(T, B, *out.shape[1:])
        return out if self.readout_scale is None else out * self.readout_scale


def build_body(name: str, config: dict[str, Any], neuron: dict[str, Any] | None) -> nn.Module:
    builder = registry.load("models", name)
    act = activation_factory(neuron_factory(neuron) if neuron is not None else None)
    try:
        return builder(act, **config)
    except TypeError as err:
        raise UserError(f"model '{name}': {err}", hint="check [model.config] in the recipe") from None


def build_network(
    name: str,
    config: dict[str, Any],
    kind: str = "ann",
    neuron: dict[str, Any] | None = None,
    encoding: str = "direct",
    T: int = 1,
) -> Network:
    """Build the ANN (`kind='ann'`) or the SNN twin of a zoo model."""
    if kind not in ("ann", "snn"):
        raise UserError(f"unknown model kind '{kind}'", hint="use 'ann' or 'snn'")
    body = build_body(name, config, neuron if kind == "snn" else None)
    return Network(body, kind=kind, encoding=encoding, T=T)
