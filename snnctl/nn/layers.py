"""Glue that lets one network definition serve as an ANN and as its SNN twin.

Inside an SNN the stateless layers (conv, linear, norm, pooling) see `[T*B, ...]`: time folded into
the batch, so each runs as one big kernel over all T steps (the synaptic GEMM hoisted out of the time
loop). Only the neurons unfold time again, through `SpikingActivation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from snnctl.nn.neurons import SpikingNeuron


class SpikingActivation(nn.Module):
    """Unfold `[T*B, ...]` to `[T, B, ...]`, run the neuron over time, fold back.

    Each call starts from the initial state, unless `carry_state` is set (streaming, see
    `snnctl.nn.events.Streamer`): then the state left by one call is where the next one starts.
    """

    def __init__(self, neuron: SpikingNeuron) -> None:
        super().__init__()
        self.neuron = neuron
        self.T = 1
        self.carry_state = False
        self.state: Any = None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.T:
            raise ValueError(f"batch of {x.shape[0]} rows is not T={self.T} steps of equal batches")
        seq = x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])
        if not self.carry_state:
            return self.neuron(seq).reshape(x.shape)
        spikes, self.state = self.neuron.run(seq, self.state)
        return spikes.reshape(x.shape)


ActivationFactory = Callable[[], nn.Module]


def activation_factory(neuron_factory: Callable[[], SpikingNeuron] | None) -> ActivationFactory:
    """ReLU for the ANN twin; a fresh spiking neuron per layer for the SNN twin."""
    if neuron_factory is None:
        return nn.ReLU
    return lambda: SpikingActivation(neuron_factory())


class Synapse(nn.Module):
    """A CubaLIF's synaptic current: I_t = decay * I_{t-1} + gain * x_t over the time steps folded into
    the batch, from zero at the start of every sequence. Linear, so it has no spikes of its own."""

    needs_T = True

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.register_buffer("decay", torch.zeros(()))
        self.register_buffer("gain", torch.ones(shape))
        self.T = 1

    def forward(self, x: Tensor) -> Tensor:
        steps = (x * self.gain).reshape(self.T, x.shape[0] // self.T, *x.shape[1:])
        current = torch.zeros_like(steps[0])
        out = []
        for xt in steps.unbind(0):
            current = self.decay * current + xt
            out.append(current)
        return torch.stack(out).reshape(x.shape)


class TokenSpikes(nn.Module):
    """A spiking neuron run along the tokens of a sequence: `[B, L, D]` in, spikes `[B, L, D]` out.

    In a text model the tokens are the time steps (one token per step, as on a chip fed a stream),
    so the membrane carries what came before. `keep` (`[B, L]`, False at padding) zeroes the spikes
    of padding positions; right padding comes after every real token, so it never reaches them.
    """

    def __init__(self, neuron: SpikingNeuron) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, y: Tensor, keep: Tensor) -> Tensor:
        spikes = self.neuron(y.transpose(0, 1).contiguous()).transpose(0, 1)
        return spikes * keep.unsqueeze(-1).to(spikes.dtype)
