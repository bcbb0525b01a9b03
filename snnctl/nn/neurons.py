"""Spiking neuron modules: thin wrappers, holding no state between calls, over `snnctl.nn.functional`.

Every module is multi-step: it takes a whole sequence `[T, B, ...]` and starts each call from its
initial potential, so state is reset between sequences by construction. `run(x, state)` carries
state across calls explicitly, for streaming.

Each class declares the recipe keys of its own in `Params` (a pydantic model, extra keys forbidden);
the keys every neuron shares (threshold, tau/decay, reset, ...) are the recipe's `[neuron]` table
itself. See `snnctl.contracts.Neuron`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from snnctl.nn import functional as F
from snnctl.nn import kernels
from snnctl.nn.kernels import lif as fused
from snnctl.nn.kernels import others as fused_others
from snnctl.nn.surrogate import surrogate as make_surrogate


def decay_from(tau: float | None, decay: float | None, default: float) -> float:
    """One leak per neuron, given either as a time constant (decay = 1 - 1/tau) or directly."""
    if tau is not None and decay is not None:
        raise ValueError("give tau or decay, not both")
    if tau is not None:
        if tau <= 1:
            raise ValueError(f"tau must be > 1 time step, got {tau}")
        return 1.0 - 1.0 / tau
    value = default if decay is None else decay
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {value}")
    return value


def check_sequence(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who} expects a time-major sequence [T, B, ...] with T and B; got shape {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{who} expects a floating-point [T, B, ...] tensor; got dtype {x.dtype}")


class NoParams(BaseModel):
    """A neuron's own recipe keys: none beyond the shared ones. Subclass it to declare some."""

    model_config = ConfigDict(extra="forbid")


class SpikingNeuron(nn.Module, ABC):
    """Shared parameters: threshold (a buffer, saved with the model), reset, surrogate, v_init."""

    Params: ClassVar[type[BaseModel]] = NoParams
    # The threshold stays where the recipe puts it (a logic-gated SNN folds its weight scale into it).
    fixed_threshold: ClassVar[bool] = True

    def __init__(
        self,
        threshold: float = 1.0,
        reset: F.Reset = "subtract",
        v_init: float = 0.0,
        surrogate: str = "atan",
        surrogate_width: float = 0.5,
        detach_reset: bool = False,
        kernel: str | None = None,
    ) -> None:
        super().__init__()
        if kernel is not None and kernel not in kernels.KERNELS:
            raise ValueError(f"unknown kernel '{kernel}'; known: {', '.join(kernels.KERNELS)}")
        self.kernel = kernel  # None: follow snnctl.nn.kernels.default() (what --kernel sets)
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.reset = reset
        self.v_init = float(v_init)
        self.sg = make_surrogate(surrogate, surrogate_width)
        self.detach_reset = detach_reset

    def _kernel(self) -> str:
        return self.kernel or kernels.default()

    def _lif(self, x: Tensor, v: Tensor, decay: Tensor) -> tuple[Tensor, Tensor]:
        """LIF dynamics through the chosen kernel: fused (C or torch) by default, reference on request."""
        kernel = self._kernel()
        if kernel == "reference":
            return F.lif(x, v, decay=decay, threshold=self.threshold, sg=self.sg, reset=self.reset,
                         detach_reset=self.detach_reset)
        return fused.lif(x, v, decay=decay, threshold=self.threshold, sg=self.sg, reset=self.reset,
                         detach_reset=self.detach_reset, kernel=kernel)

    def initial_state(self, x0: Tensor) -> Any:
        """Membrane at t = 0: v_init (a fraction of threshold) everywhere."""
        return torch.ones_like(x0) * (self.v_init * self.threshold)

    @abstractmethod
    def run(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Run the whole sequence from `state` (the initial state if None); return (spikes, state)."""

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, type(self).__name__)
        return self.run(x)[0]

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold.tolist()}, reset={self.reset}, v_init={self.v_init}, "
            f"surrogate={self.sg.name}(width={self.sg.width})"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire: h = decay * v + x. Default tau = 2 (decay 0.5)."""

    def __init__(self, tau: float | None = None, decay: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("decay", torch.tensor(decay_from(tau, decay, default=0.5)))

    def run(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.initial_state(x[0]) if state is None else state
        return self._lif(x, v, self.decay)

    def extra_repr(self) -> str:
        return f"decay={self.decay.item():.4g}, " + super().extra_repr()


class IF(LIF):
    """Integrate-and-fire: LIF without leak (decay = 1), the neuron of ANN-to-SNN conversion."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("tau", None)
        kwargs.pop("decay", None)
        super().__init__(decay=1.0, **kwargs)


class AdaptiveLIF(SpikingNeuron):
    """LIF with a spike-triggered threshold that relaxes back (Bellec et al.'s ALIF)."""

    fixed_threshold = False

    class Params(NoParams):
        adapt_decay: float = Field(default=0.95, ge=0, le=1, description="decay of the threshold trace")
        adapt_scale: float = Field(default=0.2, ge=0, description="threshold increase per spike")

    def __init__(
        self,
        tau: float | None = None,
        decay: float | None = None,
        adapt_decay: float = 0.95,
        adapt_scale: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.register_buffer("decay", torch.tensor(decay_from(tau, decay, default=0.5)))
        self.adapt_decay = float(adapt_decay)
        self.adapt_scale = float(adapt_scale)

    def initial_state(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        return super().initial_state(x0), torch.zeros_like(x0)

    def run(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Any]:
        v, a = self.initial_state(x[0]) if state is None else state
        impl = F.adaptive_lif if self._kernel() == "reference" else fused_others.adaptive_lif
        s, v, a = impl(
            x, v, a, decay=self.decay, threshold=self.threshold, adapt_decay=self.adapt_decay,
            adapt_scale=self.adapt_scale, sg=self.sg, reset=self.reset, detach_reset=self.detach_reset,
        )
        return s, (v, a)


class GradedLIF(SpikingNeuron):
    """Multi-threshold neuron: emits up to `levels` spikes (threshold multiples) per step.

    Output is the integer count k per step, not binary: downstream weights see k spikes at once.
    Default decay 1 (a graded IF), the usual choice for conversion at T = 1..4.
    """

    class Params(NoParams):
        levels: int = Field(default=4, ge=1, description="most spikes (threshold multiples) per step")

    def __init__(
        self, levels: int = 4, tau: float | None = None, decay: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.register_buffer("decay", torch.tensor(decay_from(tau, decay, default=1.0)))

    def run(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.initial_state(x[0]) if state is None else state
        impl = F.graded_lif if self._kernel() == "reference" else fused_others.graded_lif
        return impl(
            x, v, decay=self.decay, threshold=self.threshold, levels=self.levels, sg=self.sg,
            reset=self.reset, detach_reset=self.detach_reset,
        )


class LearnableLIF(SpikingNeuron):
    """LIF with a trainable leak (PLIF, Fang et al. 2021): decay = 1 - sigmoid(w), one w per layer."""

    def __init__(self, tau: float | None = None, decay: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        d = decay_from(tau, decay, default=0.5)
        leak = min(max(1.0 - d, 1e-4), 1 - 1e-4)
        self.w = nn.Parameter(torch.tensor(math.log(leak / (1 - leak))))

    @property
    def decay(self) -> Tensor:
        return 1 - torch.sigmoid(self.w)

    def run(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.initial_state(x[0]) if state is None else state
        return self._lif(x, v, self.decay)
