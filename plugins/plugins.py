"""`snnctl plugins`: what is installed (commands, models, neurons, datasets, targets, recipes)."""

from __future__ import annotations

import typer
from rich.table import Table

from snnctl import registry, ui


def command(json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """List every installed command, model, neuron, dataset, compile target and recipe folder.

    Example: snnctl plugins --json
    """
    rows = [
        {"kind": kind.rstrip("s"), "name": e.name, "package": e.package, "entry_point": e.value}
        for kind in registry.GROUPS
        for e in registry.entries(kind).values()
    ]
    if json_out:
        ui.print_json(rows)
        return
    table = Table(title="Installed plugins")
    for col in ("kind", "name", "package", "entry point"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["name"], r["package"], r["entry_point"])
    ui.out(json_out).print(table)
