"""Model zoo: builders found through the `snnctl.models` entry points.

A builder is `build(act, **config) -> nn.Module`, mapping `[N, ...]` to logits `[N, classes]`.
`act()` returns a fresh activation: ReLU for the ANN twin, a spiking neuron for the SNN twin, so both
come from the same definition.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from snnctl import contracts, registry
from snnctl.data import Dataset
from snnctl.data.encoders import encode
from snnctl.errors import UserError
from snnctl.nn import SpikingActivation, activation_factory, neuron_factory
from snnctl.nn.layers import ActivationFactory
from snnctl.nn.qcfs import QCFS


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
        self.readout_delay = 0  # steps skipped before the readout averages (converted SNNs' transient)
        # Logic-gated SNNs fold their last layer's weight scale out of the synapses; it multiplies the
        # logits once here (None: nothing to do).
        self.register_buffer("readout_scale", None)

    @property
    def spiking(self) -> bool:
        return self.kind != "ann"

    def forward(self, x: Tensor) -> Tensor:
        if not self.spiking:
            return self.body(x)
        out = self.forward_sequence(encode(x, self.T, self.encoding, self.generator))
        return out[min(self.readout_delay, self.T - 1):].mean(0)

    def forward_sequence(self, seq: Tensor) -> Tensor:
        """`[T, B, ...]` in, per-step logits `[T, B, classes]` out."""
        if seq.ndim < 2:
            raise ValueError(f"expected a sequence [T, B, ...]; got shape {tuple(seq.shape)}")
        T, B = seq.shape[:2]
        for module in self.modules():
            if isinstance(module, SpikingActivation) or getattr(module, "needs_T", False):
                module.T = T
        out = self.body(seq.reshape(T * B, *seq.shape[2:]))
        out = out.reshape(T, B, *out.shape[1:])
        return out if self.readout_scale is None else out * self.readout_scale


def ann_activation(spec: dict[str, Any] | None) -> ActivationFactory:
    """The ANN twin's activation: ReLU, or QCFS (`{"type": "qcfs", "levels": L}`) for conversion-aware
    training."""
    if not spec or spec.get("type", "relu") == "relu":
        return nn.ReLU
    if spec["type"] == "qcfs":
        levels, init = int(spec.get("levels", 8)), float(spec.get("init", 4.0))
        return lambda: QCFS(levels, init)
    raise UserError(f"unknown ANN activation '{spec['type']}'", hint="use relu or qcfs")


def build_body(
    name: str, config: dict[str, Any], neuron: dict[str, Any] | None, activation: dict[str, Any] | None = None
) -> nn.Module:
    builder = registry.load("models", name)
    if contracts.task_of(builder) == "lm":
        raise UserError(f"model '{name}' is a language model, not a classifier",
                        hint="train it with a recipe of task = \"lm\", e.g. small-ssm")
    act = activation_factory(neuron_factory(neuron)) if neuron is not None else ann_activation(activation)
    try:
        return builder(act, **config)
    except TypeError as err:  # torch's messages can run to a C++ stack trace: keep the first line
        first = (str(err).strip().splitlines() or ["bad arguments"])[0]
        raise UserError(f"model '{name}': {first}", hint="check [model.config] in the recipe") from None


def build_network(
    name: str,
    config: dict[str, Any],
    kind: str = "ann",
    neuron: dict[str, Any] | None = None,
    encoding: str = "direct",
    T: int = 1,
    activation: dict[str, Any] | None = None,
) -> Network:
    """Build the ANN (`kind='ann'`, with `activation`) or the SNN twin of a zoo model."""
    if kind not in ("ann", "snn"):
        raise UserError(f"unknown model kind '{kind}'", hint="use 'ann' or 'snn'")
    body = build_body(name, config, neuron if kind == "snn" else None, activation if kind == "ann" else None)
    return Network(body, kind=kind, encoding=encoding, T=T)


def fill_shape_defaults(name: str, config: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    """Give the builder the dataset's input size and class count unless the recipe set them."""
    params = inspect.signature(registry.load("models", name)).parameters
    filled = dict(config)
    if "num_classes" in params:
        filled.setdefault("num_classes", ds.num_classes)
    if "in_channels" in params:
        filled.setdefault("in_channels", ds.step_shape[0])
    if "in_features" in params:
        filled.setdefault("in_features", math.prod(ds.step_shape))
    for key, value in ds.info.items():  # e.g. a text dataset's vocab_size
        if key in params:
            filled.setdefault(key, value)
    return filled
