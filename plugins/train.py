"""`snnctl train --recipe NAME`: train an SNN (surrogate gradients through time) or its ANN twin."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from snnctl import config, ui


def command(
    recipe: str = typer.Option(..., "--recipe", "-r", help="Recipe name (see `snnctl recipes list`) or path."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.lr=3e-4."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (bundle, checkpoints, metrics)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (settings default)."),
    kernel: str | None = typer.Option(
        None, "--kernel", help="Neuron kernel: auto (fused, default), c, torch, or reference (readable loop)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the final metrics as JSON on stdout."),
) -> None:
    """Train a model from a TOML recipe and write a bundle (model.safetensors + snnctl.json).

    Metrics are appended to OUT/metrics.jsonl; a checkpoint is kept in OUT/checkpoints.

    Examples:

      snnctl train --recipe digits-snn --out runs/digits-snn

      snnctl train --recipe digits-snn --set train.epochs=5 --set encoding.T=8

      snnctl train --recipe digits-snn --out runs/digits-snn --resume
    """
    from snnctl.training.progress import train_with_progress

    spec = config.load_recipe(recipe, overrides)
    run_device = config.prepare_runtime(device, kernel)
    out = out or Path("runs") / spec.name
    result = train_with_progress(spec, out, f"train {spec.name} ({spec.model.kind})", resume=resume,
                                 device=run_device)

    summary = {"recipe": spec.name, "kind": spec.model.kind, "out": str(result.out), **result.metrics}
    if json_out:
        ui.print_json(summary)
        return
    table = Table(title=f"Trained {spec.name}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    ui.out(json_out).print(table)
