"""Output conventions every command shares: results on stdout (JSON with --json), the rest on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


def out(json_mode: bool) -> Console:
    """Where human-readable results go: stdout normally, stderr when stdout carries JSON."""
    return err if json_mode else Console()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One event of a long-running command as one line of JSON (a script reads it line by line)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def print_conversion_report(console: Console, report: dict[str, list[dict[str, Any]]], weights: str,
                            spikes: str) -> None:
    """What a conversion did to each op (a `Report.as_dict()`): counts, then one row per op or group."""
    from rich.table import Table

    d = report
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
        key = (row["op"].split(" '")[0], row["why"])
        counts[key] = counts.get(key, 0) + 1
    for (op, why), n in counts.items():
        table.add_row("passed", f"{op} x{n}", why)
    for row in d.get("replaced", []):
        table.add_row("[yellow]replaced[/yellow]", row["op"], f"-> {row['as']} ({row['why']})")
    for row in d["unsupported"]:
        table.add_row("[red]unsupported[/red]", row["op"], f"{row['why']} ({row['where']})")
    console.print(table)


def print_T_table(console: Console, title: str, ann: float | None, rows: dict[str, dict[int, float]]) -> None:
    """Accuracy against T: one column per T, one row per model (ANN first)."""
    from rich.table import Table

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
