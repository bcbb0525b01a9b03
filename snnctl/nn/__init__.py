"""Neurons, surrogate gradients and the multi-step glue shared by every spiking model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from snnctl import registry
from snnctl.errors import UserError
from snnctl.nn.layers import SpikingActivation, activation_factory
from snnctl.nn.neurons import IF, LIF, AdaptiveLIF, GradedLIF, LearnableLIF, NoParams, SpikingNeuron

__all__ = [
    "IF",
    "LIF",
    "AdaptiveLIF",
    "GradedLIF",
    "LearnableLIF",
    "NoParams",
    "SpikingActivation",
    "SpikingNeuron",
    "activation_factory",
    "expected_keys",
    "neuron_factory",
    "own_keys",
    "params_model",
]


# The [neuron] keys every neuron shares; the rest are the chosen neuron's own, declared in its `Params`.
COMMON_KEYS = ("type", "threshold", "tau", "decay", "reset", "v_init", "surrogate", "surrogate_width",
               "detach_reset")
# Before neurons declared their own keys, every recipe (and the copy a bundle keeps) carried these for all
# built-in neurons at their defaults; such a copy still loads, the keys its neuron does not take dropped.
LEGACY_DEFAULTS: dict[str, Any] = {"adapt_decay": 0.95, "adapt_scale": 0.2, "levels": 4}


def params_model(cls: type) -> type[BaseModel]:
    """The pydantic model of a neuron class's own recipe keys (none declared: no own keys)."""
    return getattr(cls, "Params", NoParams)


def own_keys(cls: type, spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a [neuron] table that is the neuron's own, without the legacy keys it does not take."""
    declared = params_model(cls).model_fields
    return {k: v for k, v in spec.items() if k not in COMMON_KEYS
            and (k in declared or k not in LEGACY_DEFAULTS or v != LEGACY_DEFAULTS[k])}


def _accepted(cls: type, spec: dict[str, Any]) -> dict[str, Any]:
    """Keep the shared keys some constructor in the class hierarchy accepts (a recipe lists them all)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if issubclass(klass, SpikingNeuron):
            names |= set(inspect.signature(klass.__init__).parameters)
    return {k: v for k, v in spec.items() if k in COMMON_KEYS and k in names and v is not None}


def neuron_factory(spec: dict[str, Any]) -> Callable[[], SpikingNeuron]:
    """A factory of neurons from a recipe's [neuron] table; `type` names a registered neuron, whose own
    keys are validated against its `Params` (an unknown key or a bad value is a user error)."""
    spec = dict(spec)
    name = spec.get("type", "lif")
    cls = registry.load("neurons", name)
    try:
        params = params_model(cls).model_validate(own_keys(cls, spec)).model_dump()
    except ValidationError as err:
        problem = err.errors()[0]
        key = ".".join(str(p) for p in problem["loc"])
        what = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"].lower()
        raise UserError(f"neuron '{name}': {key}: {what}", where="[neuron]",
                        hint="expected one of: " + ", ".join(expected_keys(cls))) from None
    kwargs = {**_accepted(cls, spec), **params}
    try:
        cls(**kwargs)  # fail now, with the recipe's words, rather than deep inside a model builder
    except (TypeError, ValueError) as err:
        raise UserError(f"neuron '{name}': {err}", where="[neuron]") from None
    return lambda: cls(**kwargs)


def expected_keys(cls: type) -> list[str]:
    """Every key a [neuron] table choosing this neuron may hold."""
    return [*COMMON_KEYS, *params_model(cls).model_fields]
