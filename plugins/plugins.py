"""`snnctl plugins`: what is installed (commands, models, neurons, datasets, targets, recipes, bundle
kinds), and every name two packages claim."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from snnctl import config, registry, ui


def plugin_rows() -> list[dict[str, Any]]:
    """One row per claim, the ignored side of a clash included (`used` false), each clash described."""
    config.available_recipes()  # recipe files clash by name across folders: look them up too
    clashes = {(c.kind, c.name): c for c in registry.clashes()}
    rows = []
    for kind in registry.GROUPS:
        for e in registry.entries(kind).values():
            clash = clashes.get((kind, e.name))
            claims = [e, *(clash.ignored if clash else ())]
            rows += [{"kind": kind.rstrip("s"), "name": e.name, "package": c.package, "entry_point": c.value,
                      "used": c is e, "clash": clash.line() if clash else None} for c in claims]
    for clash in clashes.values():
        if clash.kind not in registry.GROUPS:
            rows += [{"kind": clash.kind.rstrip("s"), "name": clash.name, "package": c.package,
                      "entry_point": c.value, "used": c is clash.used, "clash": clash.line()}
                     for c in (clash.used, *clash.ignored)]
    return rows


def command(json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """List every installed command, model, neuron, dataset, compile target, recipe folder and bundle kind.

    A name that two packages claim is a clash: the built-in one is used (else the first installed), the
    other is listed as not used, and the clash column says so.

    Example: snnctl plugins --json
    """
    rows = plugin_rows()
    if json_out:
        ui.print_json(rows)
        return
    table = Table(title="Installed plugins")
    for col in ("kind", "name", "package", "entry point", "used", "clash"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["name"], r["package"], r["entry_point"], "yes" if r["used"] else "no",
                      r["clash"] or "")
    ui.out(json_out).print(table)
