"""`snnctl recipes list | show NAME`: the recipes that are installed, and one resolved in full."""

from __future__ import annotations

import typer
from rich.table import Table

from snnctl import config, ui

app = typer.Typer(help="List recipes and show one resolved (extends and --set applied).", no_args_is_help=True)


@app.command("list")
def list_recipes(json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """List installed recipes. Example: snnctl recipes list"""
    rows = []
    for name, path in config.available_recipes().items():
        recipe = config.load_recipe(str(path))
        rows.append({"name": name, "task": recipe.task, "model": recipe.model.name, "kind": recipe.model.kind,
                     "description": recipe.description, "path": str(path)})
    if json_out:
        ui.print_json(rows)
        return
    table = Table(title="Recipes")
    for col in ("name", "task", "model", "kind", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["task"], r["model"], r["kind"], r["description"])
    ui.out(json_out).print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Recipe name or path to a .toml file."),
    overrides: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set train.lr=3e-4."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Show a recipe with `extends` and `--set` applied and every default filled in.

    Example: snnctl recipes show digits-snn --set train.epochs=5
    """
    import tomli_w

    recipe = config.load_recipe(name, overrides)
    data = recipe.model_dump(mode="json", exclude_none=True)
    if json_out:
        ui.print_json(data)
        return
    typer.echo(tomli_w.dumps(data), nl=False)
