"""`snnctl calibrate BUNDLE`: tune a converted SNN stage by stage, measuring each stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import config, ui
from snnctl.errors import UserError


def parse_stages(text: str) -> list[str]:
    from snnctl.conversion.calibrate import STAGES

    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"unknown calibration stage '{unknown[0] if unknown else text}'",
                        hint=f"choose from: {', '.join(STAGES)}")
    return stages


def command(
    bundle: Path = typer.Argument(..., help="A bundle written by `snnctl convert`."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Calibration and test data, e.g. digits."),
    stages: str = typer.Option("threshold,bias,potential,delay", "--stages",
                               help="Comma-separated: threshold, bias, potential, delay, hseo."),
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
    from snnctl.artifact import load_bundle, save_bundle
    from snnctl.conversion import bundle as B
    from snnctl.conversion import calibrate as K
    from snnctl.conversion.convert import TABLE_T, accuracy_by_T
    from snnctl.data import load_as_recorded
    from snnctl.metrics.bench import check_compatible

    chosen = parse_stages(stages)
    run_device = config.prepare_runtime(device, None)
    source = load_bundle(bundle)
    kind = source.manifest["kind"]
    if kind != "converted":
        hint = "convert it first: snnctl convert BUNDLE --dataset D" if kind == "ann" else \
            "calibration tunes converted SNNs; a directly trained SNN is tuned by training"
        raise UserError(f"this bundle is not a converted SNN (kind '{kind}')", where=str(bundle), hint=hint)
    info = dict(source.manifest["conversion"])
    ds = load_as_recorded(dataset, info.get("data"))
    net = source.model.to(run_device)
    if T is not None:
        net.T = T
    check_compatible(net, ds, str(bundle), B.MISFIT_HINT)
    out = out or bundle.with_name(bundle.name + "-cal")
    if out.resolve() == bundle.resolve():
        raise UserError("--out is the input bundle", where=str(out), hint="write the calibrated model to a new folder")
    x_cal, y_cal = B.calibration_split(ds, samples)
    data = K.Data(x_cal.to(run_device), y_cal.to(run_device), ds.x_test.to(run_device), ds.y_test.to(run_device))

    records: list[dict[str, Any]] = []
    with ui.progress() as bar:
        task = bar.add_task(f"calibrate {bundle.name}", total=len(chosen), info="")
        for stage in chosen:
            bar.update(task, info=stage)

            def on_generation(g: int, best: dict[str, Any], stage: str = stage) -> None:
                bar.update(task, info=f"{stage} gen {g}/{generations}: cal acc {best['cal_acc']:.3f}, "
                           f"{best['spikes_per_sample']:.0f} spikes, T={best['T']}")

            hseo_opts = {"population": population, "generations": generations, "budget": spike_budget}
            records.append(K.run_stage(stage, net, data, hseo_opts, on_generation))
            bar.advance(task)

    delay_fraction = net.readout_delay / net.T
    table_T = accuracy_by_T(net, data.x_test, data.y_test, TABLE_T, delay_fraction)
    metrics = dict(source.manifest.get("metrics") or {})
    metrics.update(acc_by_T={str(k): v for k, v in table_T.items()},
                   test_acc=K.accuracy_at(net, data.x_test, data.y_test))
    info["calibration"] = [*info.get("calibration", []), {"dataset": ds.name, "samples": len(x_cal), "stages": records}]
    net.cpu()
    manifest = B.manifest_for(net, info.pop("source"), info, metrics, str(bundle))
    save_bundle(out, net, manifest)

    summary = {"out": str(out), "T": net.T, "readout_delay": net.readout_delay, "stages": records, **metrics}
    if json_out:
        ui.print_json(summary)
        return
    console = ui.out(json_out)
    table = Table(title=f"Calibration of {bundle.name} ({ds.name} test split, accuracy %)")
    for col in ("stage", "T", "before", "after", "kept"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(r["stage"], str(r["T"]), f"{100 * r['acc_before']:.2f}", f"{100 * r['acc_after']:.2f}",
                      "yes" if r["kept"] else "no (reverted)")
    console.print(table)
    ann = metrics.get("ann_acc")
    B.print_T_table(console, "Accuracy (%) against T after calibration", ann, {"SNN (calibrated)": table_T})
    console.print(f"Wrote {out}.")
