"""`snnctl data prepare | show | list`: bring your own data as a prepared dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import settings, ui

app = typer.Typer(help="Prepare datasets from local files or Hugging Face, show them, list them.",
                  no_args_is_help=True)


@app.command("prepare")
def prepare(
    source: str = typer.Argument(..., help="A file or folder (or, with --format hf, a Hugging Face hub id)."),
    out: Path = typer.Option(..., "--out", "-o", help="The prepared dataset folder to write."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="idx, imagefolder, csv, tsv, jsonl, parquet, text, "
                                   "cifar, nmnist, dialogue or hf (default: detected from the source)."),
    name: str | None = typer.Option(None, "--name", help="The dataset's name (default: the folder name)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Held out when the source has no test split."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of that split (stratified by class)."),
    text_column: str | None = typer.Option(None, "--text-column", help="Tabular/hf: the text column."),
    label_column: str | None = typer.Option(None, "--label-column", help="Tabular/hf: the integer label column."),
    events: str = typer.Option("frames", "--events", help="nmnist: 'frames' (binned into --T steps) or 'raw'."),
    T: int = typer.Option(8, "--T", "-T", min=1, max=4096, help="nmnist frames: time bins per sample."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
) -> None:
    """Turn a source into a prepared dataset (Hugging Face Arrow files + snnctl-dataset.json) that every
    `--dataset` option and a recipe's `data.name` accept.

    Examples:

      snnctl data prepare ../shared/data/fashion_mnist --out data/fashion-mnist

      snnctl data prepare reviews.csv --out data/reviews --text-column body --label-column stars

      snnctl data prepare ../shared/data/nmnist_small --out data/nmnist --events frames --T 16

      snnctl data prepare ../shared/data/dialogue/sgd_dev_17files.jsonl --out data/sgd --format dialogue
    """
    from snnctl.data.prepared import PrepareJob, plan
    from snnctl.data.prepared import prepare as run_prepare

    job = PrepareJob(source=source, out=out, format=fmt, name=name, test_fraction=test_fraction, seed=seed,
                     text_column=text_column, label_column=label_column, events=events, T=T)
    detected = plan(job)  # every input checked before the progress bar starts
    with ui.progress() as bar:
        task = bar.add_task(f"prepare {detected}", total=None, info="examples read")
        manifest = run_prepare(job, progress=lambda n: bar.update(task, completed=n) if n % 500 == 0 else None)
        bar.update(task, completed=sum(sum(c.values()) for c in manifest["counts"].values()))
    if json_out:
        ui.print_json(manifest)
        return
    console = ui.out(json_out)
    console.print(split_table(manifest["name"], manifest["counts"]))
    console.print(f"Wrote {out} ({manifest['format']}, {manifest['split']['rule']} split, "
                  f"fingerprint {manifest['fingerprint'][:12]}).")


def grid(title: str, columns: list[str], cells: list[list[str]], right_from: int = 1) -> Table:
    """A table of strings, columns from `right_from` on right-aligned (counts)."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i >= right_from else "left")
    for row in cells:
        table.add_row(*row)
    return table


def split_table(name: str, counts: dict[str, dict[Any, int]]) -> Table:
    """Examples per class and split."""
    classes = list(next(iter(counts.values())))
    cells = [[split, *[str(row.get(c, 0)) for c in classes], str(sum(row.values()))] for split, row in counts.items()]
    return grid(f"{name}: examples per class", ["split", *map(str, classes), "total"], cells)


@app.command("show")
def show(
    target: str = typer.Argument(..., help="A prepared dataset folder, a name under SNNCTL_HOME/datasets, or a "
                                 "registered dataset (digits, sst2, ...)."),
    picture: Path | None = typer.Option(None, "--picture", help="Where to write the PNG (images, events); default "
                                        "DIR/preview.png, or NAME-preview.png here."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Splits, counts, class balance, shapes, dtypes and value ranges; a PNG grid of samples per class for
    images, one sample's events for event data, a few examples and lengths for text.

    Example: snnctl data show data/fashion-mnist
    """
    from snnctl.data.prepared import is_prepared
    from snnctl.data.show import describe, preview

    home = settings.load_settings().home.expanduser() / "datasets" / target
    resolved = str(home) if not Path(target).exists() and is_prepared(home) else target
    summary, ds = describe(resolved)
    default = Path(resolved) / "preview.png" if is_prepared(resolved) else Path(f"{Path(target).name}-preview.png")
    written = preview(ds, summary["modality"], picture or default)
    summary["picture"] = str(written) if written else None
    if json_out:
        ui.print_json(summary)
        return
    print_summary(ui.out(json_out), summary)


def print_summary(console: Any, s: dict[str, Any]) -> None:
    """The summary `show` prints: shape line, class table, text examples, where the picture went."""
    x = s["x"]
    console.print(f"[bold]{s['name']}[/bold] ({s['modality']}, {s['num_classes']} classes"
                  + (f", {s['format']}, fingerprint {s['fingerprint'][:12]}" if "format" in s else "") + ")")
    value_range = f"{x['min']:.4g}..{x['max']:.4g}, mean {x['mean']:.4g}" if x["min"] is not None else "empty"
    if "dialogue" not in s:
        console.print(f"  inputs {tuple(x['shape'])} {x['dtype']}, values {value_range}")
    names = s.get("class_names") or [str(c) for c in range(s["num_classes"])]
    counts = {split: {names[int(c)]: n for c, n in v["classes"].items()} for split, v in s["splits"].items()}
    if names:
        console.print(split_table(s["name"], counts))
    else:
        console.print("  unlabelled: " + ", ".join(f"{k} {v['examples']}" for k, v in s["splits"].items()))
    if "words" in s:
        w = s["words"]
        console.print(f"  words per example: min {w['min']}, mean {w['mean']}, max {w['max']}")
        for ex in s["examples"]:
            console.print(f"  [{ex['label'] if ex['label'] is not None else '-'}] {ex['text'][:100]}")
    if "dialogue" in s:
        print_dialogue(console, s["dialogue"])
    if s.get("picture"):
        console.print(f"Wrote {s['picture']}.")


def print_dialogue(console: Any, d: dict[str, Any]) -> None:
    """Turn counts and lengths, then the first turns of a few dialogues, speaker by speaker."""
    t, c = d["turns_per_dialogue"], d["chars_per_turn"]
    console.print(f"  turns per dialogue: min {t['min']}, mean {t['mean']}, max {t['max']}")
    console.print(f"  characters per turn: min {c['min']}, mean {c['mean']}, max {c['max']}")
    for ex in d["examples"]:
        console.print(f"  dialogue {ex['id']} ({ex['of']} turns):", markup=False)
        for i, turn in enumerate(ex["turns"]):
            console.print(f"    {('user', 'assistant')[i % 2]}: {turn[:100]}", markup=False)


@app.command("list")
def list_datasets(
    paths: list[Path] = typer.Argument(None, help="More prepared datasets, or folders holding them."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Registered datasets (built-in and plugin) and prepared ones under SNNCTL_HOME/datasets and PATHS.

    Example: snnctl data list data/
    """
    from snnctl.data.show import listing

    rows = listing(settings.load_settings().home.expanduser() / "datasets", list(paths or []))
    if json_out:
        ui.print_json(rows)
        return
    cells = [[r["name"], r["kind"], r["path"] or r["package"],
              ", ".join(f"{k} {v}" for k, v in (r.get("examples") or {}).items()), r.get("fingerprint", "")]
             for r in rows]
    ui.out(json_out).print(grid("Datasets", ["name", "kind", "from", "examples", "fingerprint"], cells, right_from=9))
