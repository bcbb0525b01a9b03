"""The round-trip check every target ends with: run the compiled form and the PyTorch SNN on the
same encoded inputs and compare spikes layer by layer, outputs, and accuracy when labels are given."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from snnctl.backends.extract import node_name
from snnctl.backends.graphnet import GraphNet
from snnctl.data.encoders import encode
from snnctl.nn import SpikingActivation


@dataclass
class Run:
    """One model's per-step outputs `[T, B, C]` and spikes per neuron layer `[T, B, ...]` (numpy)."""

    outputs: np.ndarray
    spikes: dict[str, np.ndarray] = field(default_factory=dict)


def neuron_layers(body: nn.Module) -> list[tuple[str, SpikingActivation]]:
    """Neuron layers by their NIR node name, in model order (a GraphNet's names are its node keys)."""
    strip = "layers." if isinstance(body, GraphNet) else ""
    return [(node_name(path.removeprefix(strip)), m) for path, m in body.named_modules()
            if isinstance(m, SpikingActivation)]


@contextmanager
def recording(body: nn.Module, into: dict[str, list[Tensor]], T: int):
    def hook(name: str) -> Callable[..., None]:
        def record(_m: nn.Module, _i: Any, out: Tensor) -> None:
            into.setdefault(name, []).append(out.detach().reshape(T, -1, *out.shape[1:]))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in neuron_layers(body)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def encoded(model: nn.Module, x: Tensor, T: int) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    return encode(x, T, getattr(model, "encoding", "direct"), gen)


def run_torch(model: nn.Module, seq: Tensor, batch: int = 256) -> Run:
    """The PyTorch SNN on an encoded sequence `[T, B, ...]`, recording every neuron layer."""
    T = seq.shape[0]
    outs, spikes = [], {}
    with torch.no_grad():
        for start in range(0, seq.shape[1], batch):
            chunk: dict[str, list[Tensor]] = {}
            with recording(model.body, chunk, T):
                outs.append(model.forward_sequence(seq[:, start:start + batch]))
            for name, parts in chunk.items():
                spikes.setdefault(name, []).extend(parts)
    return Run(torch.cat(outs, 1).numpy(), {k: torch.cat(v, 1).numpy() for k, v in spikes.items()})


def compare(reference: Run, compiled: Run, labels: Tensor | None = None, readout_from: int = 0) -> dict[str, Any]:
    """Per-layer spike mismatch (fraction of neuron-steps that differ), output difference, accuracy."""
    layers = []
    total_diff = total = 0
    for name, ref in reference.spikes.items():
        got = compiled.spikes.get(name)
        if got is None:
            layers.append({"layer": name, "mismatch": None, "note": "not recorded by the target"})
            continue
        diff = int(np.count_nonzero(ref != got))
        total_diff, total = total_diff + diff, total + ref.size
        layers.append({"layer": name, "mismatch": diff / ref.size, "rate_reference": float(ref.mean()),
                       "rate_compiled": float(got.mean())})
    report: dict[str, Any] = {
        "samples": int(reference.outputs.shape[1]), "T": int(reference.outputs.shape[0]), "layers": layers,
        "spike_mismatch": total_diff / total if total else None,
        "spike_agreement": 1 - total_diff / total if total else None,
        "output_max_abs_diff": float(np.max(np.abs(reference.outputs - compiled.outputs))),
    }
    if labels is not None:
        y = labels.numpy()

        def acc(out: np.ndarray) -> float:
            return round(100.0 * float((out[readout_from:].mean(0).argmax(-1) == y).mean()), 2)

        report["accuracy"] = {"reference": acc(reference.outputs), "compiled": acc(compiled.outputs)}
    return report
