"""`snnctl calibrate BUNDLE`: tune a converted SNN stage by stage, measuring each stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from snnctl import config, ui
from snnctl.conversion.methods import DEFAULT_STAGES, STAGES, listed


def command(
    bundle: Path = typer.Argument(..., help="A bundle written by `snnctl convert`."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Calibration and test data, e.g. digits."),
    stages: str | None = typer.Option(None, "--stages",
                                      help=f"Comma-separated calibration stages from {listed(STAGES)}, run in that "
                                      f"order (default: {','.join(DEFAULT_STAGES)})."),
    samples: int = typer.Option(512, "--calibration-samples", min=1, help="Training examples used to calibrate."),
    T: int | None = typer.Option(None, "--T", "-T", min=1, max=4096, help="Calibrate for this T (default: bundle's)."),
    population: int = typer.Option(8, "--population", min=2, help="hseo: candidates per generation."),
    generations: int = typer.Option(5, "--generations", min=1, help="hseo: generations."),
    spike_budget: float | None = typer.Option(None, "--spike-budget", min=0.0,
                                              help="hseo: spikes per sample allowed (default: the bundle's own)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output bundle folder (default BUNDLE-cal)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Calibrate a converted SNN: each stage is logged with the test accuracy before and after it, and
    is kept only when the SNN follows its ANN at least as well on calibration data.

    Examples:

      snnctl calibrate runs/digits-converted --dataset digits --out runs/digits-cal

      snnctl calibrate runs/digits-converted --dataset digits --stages threshold,hseo --generations 8 --json
    """
    from snnctl.conversion import pipeline as P

    chosen = P.parse_stages(stages) if stages is not None else None
    run_device = config.prepare_runtime(device, None)
    job = P.CalibrateJob(bundle=bundle, dataset=dataset, samples=samples, T=T, population=population,
                         generations=generations, spike_budget=spike_budget, out=out, device=run_device,
                         **({"stages": chosen} if chosen else {}))
    plan = P.plan_calibration(job)  # every input checked before the progress bar starts
    with ui.progress() as bar:
        task = bar.add_task(f"calibrate {bundle.name}", total=len(job.stages), info="")
        result = P.calibrate_bundle(plan, on_stage=lambda stage, text: bar.update(task, info=text),
                                    on_done=lambda stage: bar.advance(task))
    if json_out:
        ui.print_json(result.summary())
        return
    print_result(ui.out(json_out), bundle.name, result)


def print_result(console: Console, name: str, result: Any) -> None:
    """The stage table, then accuracy against T after calibration."""
    table = Table(title=f"Calibration of {name} ({result.dataset} test split, accuracy %)")
    for col in ("stage", "T", "before", "after", "kept"):
        table.add_column(col, justify="right")
    for r in result.stages:
        table.add_row(r["stage"], str(r["T"]), f"{100 * r['acc_before']:.2f}", f"{100 * r['acc_after']:.2f}",
                      "yes" if r["kept"] else "no (reverted)")
    console.print(table)
    table_T = {int(k): v for k, v in result.metrics["acc_by_T"].items()}
    ui.print_T_table(console, "Accuracy (%) against T after calibration", result.metrics.get("ann_acc"),
                     {"SNN (calibrated)": table_T})
    console.print(f"Wrote {result.out}.")
