"""Count what a forward pass does: multiply-accumulates, spike-driven accumulates, spikes per layer.

A synaptic layer (Conv, Linear) whose input holds only non-negative integers (binary or graded
spikes) is event-driven: each spike costs one accumulate per outgoing synapse, so its synaptic
operations are MACs * (spikes / inputs). Any other input (pixels, pooled averages) costs dense MACs.
Logic-gated layers (ternary weights) do no multiplications at all: one add or subtract per synapse
of a non-zero input, counted as synaptic operations.

Text models (`pads_tokens`) pad their token rows with id 0: rows of padding are not work, so every
count over `[B, L, ...]` tensors is taken over the real tokens only. What such a model does outside
its `nn.Linear` layers (a recurrence, attention products) it tallies itself in `extra_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from snnctl.nn.layers import SpikingActivation, TokenSpikes
from snnctl.robust.ternary import _LogicGated

SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def dense_macs(module: nn.Module, x: Tensor, y: Tensor) -> int:
    """MACs of one call over the whole batch, as an ANN would do them."""
    if isinstance(module, nn.Linear):
        return x.numel() // x.shape[-1] * module.in_features * module.out_features
    assert isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    per_output = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
    return y.numel() * per_output


def is_spike_tensor(x: Tensor) -> bool:
    return bool((x >= 0).all() and (x == torch.round(x)).all())


@dataclass
class LayerCount:
    name: str
    macs: float = 0.0
    sops: float = 0.0
    spikes: float = 0.0
    neuron_steps: float = 0.0  # neuron updates (SNN) or activations computed (ANN)
    spike_fed_macs: float = 0.0  # dense MACs of the synapses that spikes drive (what an ANN does there)


@dataclass
class Activity:
    layers: dict[str, LayerCount] = field(default_factory=dict)
    samples: int = 0

    def layer(self, name: str) -> LayerCount:
        return self.layers.setdefault(name, LayerCount(name))

    def total(self, attr: str) -> float:
        return sum(getattr(c, attr) for c in self.layers.values())

    def per_sample(self, attr: str) -> float:
        return self.total(attr) / max(self.samples, 1)


class ActivityMeter:
    """Context manager that attaches counting hooks to a model and removes them on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.activity = Activity()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # Converted SNNs scale spikes by a per-channel threshold (foldable into the next layer's
        # weights): their outputs are still spikes. id -> (tensor, spike count), tensors kept alive.
        self._scaled: dict[int, tuple[Tensor, float]] = {}
        self._last_spikes = 0.0
        self._keep: Tensor | None = None  # [B, L] real-token mask of the text model being run

    def __enter__(self) -> Activity:
        for name, module in self.model.named_modules():
            if getattr(module, "pads_tokens", False):
                self._handles.append(module.register_forward_pre_hook(self._mask_hook))
                self._handles.append(module.register_forward_hook(self._extra_hook(name)))
            if isinstance(module, SYNAPTIC):
                self._handles.append(module.register_forward_hook(self._synapse_hook(name)))
            elif isinstance(module, _LogicGated):
                self._handles.append(module.register_forward_hook(self._gated_hook(name)))
            elif isinstance(module, SpikingActivation | TokenSpikes):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name, spiking=True)))
            elif isinstance(module, nn.ReLU):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name, spiking=False)))
            if getattr(module, "emits_scaled_spikes", False):
                self._handles.append(module.register_forward_hook(self._scaled_hook))
        return self.activity

    def _mask_hook(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        ids = inputs[0]
        self._keep = ids != 0 if isinstance(ids, Tensor) and ids.ndim == 2 else None

    def _extra_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            count = self.activity.layer(f"{name}.internal" if name else "internal")
            for key, value in getattr(module, "extra_ops", {}).items():
                setattr(count, key, getattr(count, key) + value)
            self._keep = None

        return hook

    def _real(self, x: Tensor) -> Tensor:
        """`x` restricted to real tokens when it is a `[B, L, ...]` tensor of the text model being run."""
        keep = self._keep
        if keep is not None and x.ndim >= 3 and tuple(x.shape[:2]) == tuple(keep.shape):
            return x[keep]
        return x

    def _scaled_hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._scaled[id(output)] = (output, self._last_spikes)

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._scaled.clear()

    def _synapse_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            scaled = self._scaled.get(id(inputs[0]))  # looked up before masking makes a new tensor
            x, output = self._real(inputs[0]), self._real(output)
            macs = dense_macs(module, x, output)
            count = self.activity.layer(name)
            if scaled is not None:
                count.sops += macs * scaled[1] / x.numel()
                count.spike_fed_macs += macs
            elif is_spike_tensor(x):
                count.sops += macs * float(x.sum()) / x.numel()
                count.spike_fed_macs += macs
            else:
                count.macs += macs

        return hook

    def _gated_hook(self, name: str):
        """Logic-gated layers only add or subtract: one accumulate per synapse of a non-zero input."""

        def hook(module: _LogicGated, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0]
            rows = output.numel() // module.weight_shape[0]
            active = float((x != 0).sum()) / x.numel()
            self.activity.layer(name).sops += module.synapses * rows * active

        return hook

    def _neuron_hook(self, name: str, spiking: bool):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            output = self._real(output)
            count = self.activity.layer(name)
            count.neuron_steps += output.numel()
            if spiking:
                self._last_spikes = float(output.sum())
                count.spikes += self._last_spikes

        return hook
