"""Neurons, surrogate gradients and the multi-step glue shared by every spiking model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from snnctl import registry
from snnctl.errors import UserError
from snnctl.nn.layers import SpikingActivation, activation_factory
from snnctl.nn.neurons import IF, LIF, AdaptiveLIF, GradedLIF, LearnableLIF, SpikingNeuron

__all__ = [
    "IF",
    "LIF",
    "AdaptiveLIF",
    "GradedLIF",
    "LearnableLIF",
    "SpikingActivation",
    "SpikingNeuron",
    "activation_factory",
    "neuron_factory",
]


def _accepted(cls: type, spec: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys some constructor in the class hierarchy accepts (a recipe lists them all)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if issubclass(klass, SpikingNeuron):
            names |= set(inspect.signature(klass.__init__).parameters)
    return {k: v for k, v in spec.items() if k in names and v is not None}


def neuron_factory(spec: dict[str, Any]) -> Callable[[], SpikingNeuron]:
    """A factory of neurons from a recipe's [neuron] table; `type` names a registered neuron."""
    spec = dict(spec)
    name = spec.pop("type", "lif")
    cls = registry.load("neurons", name)
    kwargs = _accepted(cls, spec)
    try:
        cls(**kwargs)  # fail now, with the recipe's words, rather than deep inside a model builder
    except (TypeError, ValueError) as err:
        raise UserError(f"neuron '{name}': {err}", where="[neuron]") from None
    return lambda: cls(**kwargs)
