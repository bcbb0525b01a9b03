"""`snnctl distill prepare | show`: precompute a teacher's logits once; students train on them with
`snnctl train --recipe R --distill DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import config, ui

app = typer.Typer(help="Precompute teacher logits for knowledge distillation, and inspect them.",
                  no_args_is_help=True)


def top_k_value(text: str) -> int | str | None:
    """--top-k: a number, `full`, or `auto`."""
    if text in ("auto", "full"):
        return None if text == "full" else text
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter("give a positive number, full or auto")
    return int(text)


@app.command("prepare")
def prepare(
    teacher: str = typer.Option(..., "--teacher", "-t", help="Teacher: an snnctl bundle, a save_pretrained folder "
                                "or a Hugging Face hub id."),
    out: Path = typer.Option(..., "--out", "-o", help="The logits folder to write (resumed if interrupted)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name or prepared folder."),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="Take dataset, split and window length from "
                                      "the student's recipe instead."),
    test_fraction: float | None = typer.Option(None, "--test-fraction", help="The split's held-out fraction."),
    split_seed: int | None = typer.Option(None, "--split-seed", min=0, help="The split's seed."),
    top_k: str = typer.Option("auto", "--top-k", help="Logits kept per row: a number, full, or auto (full up to "
                              "64 classes, else the top 32)."),
    temperature: float | None = typer.Option(None, "--temperature", min=1e-6, help="Temperature the top-K rows "
                                             "are for (default: the --recipe's [distill] temperature, else 4)."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=2, help="Language models: window length "
                                       "(default the teacher's context, at most 256)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples (or windows) per teacher call."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (settings default)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let a hub model run its own code."),
    json_out: bool = typer.Option(False, "--json", help="Print the logits index as JSON on stdout."),
) -> None:
    """Run TEACHER once over every training example (every position of every aligned window, for a
    language model) and store its logits as safetensors shards with an index.

    Examples:

      snnctl distill prepare --teacher runs/teacher-fmnist --dataset fashion-mnist --out runs/teacher-fmnist-logits

      snnctl distill prepare --teacher runs/teacher-gpt2 --recipe distill-small-ssm --out runs/teacher-gpt2-logits

      snnctl train --recipe distill-small-ssm --distill runs/teacher-gpt2-logits
    """
    from snnctl.distill.prepare import PrepareJob, data_of_recipe
    from snnctl.distill.prepare import prepare as run_prepare
    from snnctl.errors import UserError

    if (dataset is None) == (recipe is None):
        raise UserError("give --dataset or --recipe, one of the two", where="snnctl distill prepare",
                        hint="--recipe takes the student's dataset, split and window length")
    data = data_of_recipe(recipe) if recipe else {"dataset": dataset, "seq_len": seq_len, "split": {
        k: v for k, v in (("test_fraction", test_fraction), ("split_seed", split_seed)) if v is not None}}
    if seq_len is not None:
        data["seq_len"] = seq_len
    data["temperature"] = temperature or data.get("temperature", 4.0)
    job = PrepareJob(teacher=teacher, out=out, top_k=top_k_value(top_k),
                     batch_size=batch_size, device=config.prepare_runtime(device), trust_remote_code=trust_remote_code,
                     **data)
    bar = ui.progress()
    state: dict[str, Any] = {}

    def progress(n: int, total: int) -> None:
        if not state:
            bar.start()
            state["task"] = bar.add_task(f"teacher logits -> {out}", total=total, info="rows")
        bar.advance(state["task"], n)

    try:
        index = run_prepare(job, progress)
    finally:
        bar.stop()
    if json_out:
        ui.print_json({k: v for k, v in index.items() if k != "shards"})
        return
    print_index(ui.out(json_out), index)


def print_index(console: Any, index: dict[str, Any]) -> None:
    table = Table(title="Teacher logits", show_header=False)
    kept = f"top {index['top_k']}" if index["top_k"] else "full"
    p = index["prepare"]
    rows = [("task", index["task"]), ("teacher", index["teacher"]["source"]), ("dataset", index["dataset"]["name"]),
            ("rows", f"{index['rows']:,}"), ("kept", f"{kept} of {index['classes']}"),
            ("temperature", str(index["temperature"])), ("bytes per row", f"{index['bytes_per_row']:.1f}"),
            ("size", f"{index['bytes'] / 1e6:.1f} MB"), ("rows/s", f"{p['rows_per_s']:,.0f}"),
            ("peak memory", f"{p['peak_rss_mb']:.0f} MB")]
    k = index["top_k"]
    if k and f"T_k{k}" in index["mass_kept"]:
        rows.append(("mass kept", f"{index['mass_kept'][f'T_k{k}']:.4f} at T={index['temperature']}, "
                     f"{index['mass_kept'][f'T1_k{k}']:.4f} at T=1"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command("show")
def show(
    folder: Path = typer.Argument(..., help="A logits folder written by `snnctl distill prepare`."),
    json_out: bool = typer.Option(False, "--json", help="Print the index (shards checked) as JSON on stdout."),
) -> None:
    """Check a logits folder (every shard present and unchanged) and print what it holds.

    Example: snnctl distill show runs/teacher-gpt2-logits
    """
    from snnctl.distill.prepare import describe

    index = describe(folder)
    if json_out:
        ui.print_json(index)
        return
    print_index(ui.out(json_out), index)
