"""Converted bundles: the manifest they carry and the data they were calibrated on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnctl.artifact import make_manifest, read_info
from snnctl.conversion.graph import neurons
from snnctl.data import Dataset
from snnctl.errors import UserError
from snnctl.zoo import Network


def calibration_split(ds: Dataset, samples: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded draw of `samples` training examples (the test split stays for measuring)."""
    if samples < 1:
        raise UserError("--calibration-samples must be >= 1")
    order = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(seed))[:samples]
    return ds.x_train[order], ds.y_train[order]


# Conversion's hint for a model that does not fit the data (see snnctl.metrics.bench.check_compatible).
MISFIT_HINT = "pick the dataset the ANN was trained on, or set its zoo config (--set num_classes=..., ...)"


def spike_kind(model: Network) -> str:
    if any(n.signed for _, n in neurons(model.body)):
        return "signed (-1 or +1 per step)"
    levels = {n.graded_levels for _, n in neurons(model.body)}
    return "binary" if levels == {None} else f"graded (up to {max(x or 1 for x in levels)} spikes per step)"


def parent_tokenizer(parent: str | None) -> dict[str, bytes]:
    """The tokenizer file the parent bundle keeps (a text model's), to be copied beside the SNN so
    that bench and chat read it with the tokens it was trained on; empty when it keeps none."""
    if parent is None:
        return {}
    name = read_info(Path(parent)).tokenizer
    return {name: (Path(parent) / name).read_bytes()} if name else {}


def manifest_for(
    model: Network, source: dict[str, Any], info: dict[str, Any], metrics: dict[str, Any], parent: str | None
) -> dict[str, Any]:
    name = source["name"] if source["type"] == "zoo" else f"hf:{source['config'].get('architectures', ['?'])[0]}"
    config = source.get("config", {}) if source["type"] == "zoo" else {}
    graded = {n.graded_levels for _, n in neurons(model.body)} - {None}
    signed = any(n.signed for _, n in neurons(model.body))
    kind = "graded" if graded else "signed-if" if signed else "if"
    neuron = {"type": kind, "reset": "subtract", "threshold": "per channel (theta buffers)",
              "v_init": "per channel (v0 buffers, default 0.5)", **({"levels": graded.pop()} if graded else {})}
    manifest = make_manifest(zoo_name=name, zoo_config=config, kind="converted", neuron=neuron, T=model.T,
                             encoding="direct", parent=parent, metrics=metrics,
                             tokenizer=next(iter(parent_tokenizer(parent)), None))
    manifest["conversion"] = {"source": source, "readout_delay": model.readout_delay, "spikes": spike_kind(model),
                              **info}
    return manifest
