"""Converted bundles: the manifest they carry, the data they were calibrated on, the tables they print."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from snnctl.artifact import make_manifest
from snnctl.conversion.graph import Report, neurons
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
    levels = {n.graded_levels for _, n in neurons(model.body)}
    return "binary" if levels == {None} else f"graded (up to {max(x or 1 for x in levels)} spikes per step)"


def manifest_for(
    model: Network, source: dict[str, Any], info: dict[str, Any], metrics: dict[str, Any], parent: str | None
) -> dict[str, Any]:
    name = source["name"] if source["type"] == "zoo" else f"hf:{source['config'].get('architectures', ['?'])[0]}"
    config = source.get("config", {}) if source["type"] == "zoo" else {}
    graded = {n.graded_levels for _, n in neurons(model.body)} - {None}
    neuron = {"type": "graded" if graded else "if", "reset": "subtract", "threshold": "per channel (theta buffers)",
              "v_init": "per channel (v0 buffers, default 0.5)", **({"levels": graded.pop()} if graded else {})}
    manifest = make_manifest(zoo_name=name, zoo_config=config, kind="converted", neuron=neuron, T=model.T,
                             encoding="direct", parent=parent, metrics=metrics)
    manifest["conversion"] = {"source": source, "readout_delay": model.readout_delay, "spikes": spike_kind(model),
                              **info}
    return manifest


def print_report(console: Console, report: Report, weights: str, spikes: str) -> None:
    d = report.as_dict()
    console.print(f"[bold]Conversion report[/bold] (weights: {weights}; spikes: {spikes})")
    console.print(f"  converted: {len(d['converted'])}  passed through: {len(d['passed_through'])}  "
                  f"unsupported: {len(d['unsupported'])}  BatchNorm folded: {len(d['folded_batchnorm'])}  "
                  f"max pools moved: {len(d['maxpool_moved_before_neuron'])}")
    table = Table(show_header=True, header_style="bold")
    for col in ("class", "op", "note"):
        table.add_column(col)
    for row in d["converted"]:
        table.add_row("converted", row["op"], f"-> {row['as']}")
    counts: dict[tuple[str, str], int] = {}
    for row in d["passed_through"]:
        counts[(row["op"].split(" '")[0], row["why"])] = counts.get((row["op"].split(" '")[0], row["why"]), 0) + 1
    for (op, why), n in counts.items():
        table.add_row("passed", f"{op} x{n}", why)
    for row in d["unsupported"]:
        table.add_row("[red]unsupported[/red]", row["op"], f"{row['why']} ({row['where']})")
    console.print(table)


def print_T_table(console: Console, title: str, ann: float | None, rows: dict[str, dict[int, float]]) -> None:
    """Accuracy against T: one column per T, one row per model (ANN first)."""
    Ts = sorted({T for r in rows.values() for T in r})
    table = Table(title=title)
    table.add_column("model")
    for T in Ts:
        table.add_column(f"T={T}", justify="right")
    if ann is not None:
        table.add_row("ANN", *[f"{100 * ann:.2f}"] * len(Ts))
    for name, row in rows.items():
        table.add_row(name, *[f"{100 * row[T]:.2f}" if T in row else "-" for T in Ts])
    console.print(table)
