"""`snnctl convert MODEL`: turn a trained ANN into a spiking network and say exactly what changed."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import typer

from snnctl import config, ui
from snnctl.conversion.methods import MAXPOOL_MODES, METHODS, listed
from snnctl.errors import UserError


def parse_sets(items: list[str]) -> dict[str, Any]:
    """--set key=value for the zoo config; values are JSON where they parse (numbers, lists), else text."""
    found: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got '{item}'", hint="e.g. --set stem_type=small")
        try:
            found[key] = json.loads(raw)
        except json.JSONDecodeError:
            found[key] = raw
    return found


def handoff(name: str | None) -> Any:
    from snnctl.backends.targets import ConvertedHandoff

    return None if name is None else ConvertedHandoff.find(name)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'3,224,224' -> (3, 224, 224)."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UserError(f"--input-shape '{text}' is not C,H,W (positive integers)", hint="e.g. --input-shape 3,64,64")
    return shape


def pool_mode(choice: str, to_target: Any) -> str:
    """--maxpool auto: average pooling for a target that declares no max over spikes, rate-gated otherwise."""
    if choice not in (*MAXPOOL_MODES, "auto"):
        raise UserError(f"unknown --maxpool '{choice}'", hint=f"use auto, {listed(MAXPOOL_MODES)}")
    if choice != "auto":
        return choice
    return "average" if to_target is not None and not to_target.pools_max else "diff"


def import_nir(path: Path, out: Path | None, T: int, dt: float, discretisation: str, target: str | None,
               json_out: bool) -> None:
    """A NIR graph is already spiking: import it as an SNN bundle (and compile it when asked)."""
    from snnctl.backends.extract import ExportOptions
    from snnctl.backends.nir_target import import_bundle

    if not path.is_file():
        raise UserError("NIR file not found", where=str(path))
    from snnctl.backends.targets import find_target

    compile_fn = find_target(target) if target else None
    out = out or Path("runs") / f"{path.stem}-snn"
    summary = import_bundle(path, out, ExportOptions(dt=dt, discretisation=discretisation), T)
    if compile_fn is not None:
        summary["compiled"] = compile_fn(out, out / f"compiled-{target}")
    if json_out:
        ui.print_json(summary)
        return
    ui.out(False).print(f"Imported {path} ({summary['nodes']} nodes, {summary['neuron_layers']} neuron layers, "
                        f"dt={dt}, {discretisation}) as an SNN bundle: wrote {out}.")


def command(
    model: str = typer.Argument(..., help="Zoo name (cnn, resnet18, ...), ANN bundle, Hugging Face folder/id, "
                                "or a .nir file (imported as an SNN bundle)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Zoo-name weights: .safetensors or a bundle."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Calibration and test data, e.g. digits."),
    T: int = typer.Option(8, "--T", "-T", min=1, max=4096, help="Time steps the SNN runs for."),
    method: str = typer.Option("rate", "--method", "-m",
                               help="; ".join(f"{name}: {what}" for name, what in METHODS.items()) + "."),
    levels: int = typer.Option(4, "--levels", min=1, max=64, help="graded: most spikes per neuron per step."),
    percentile: float = typer.Option(99.9, "--percentile", min=50.0, max=100.0,
                                     help="Per-channel activation percentile that sets each threshold."),
    samples: int = typer.Option(512, "--calibration-samples", min=1, help="Training examples used for thresholds."),
    sets: list[str] = typer.Option([], "--set", help="Zoo config for a zoo name, e.g. --set stem_type=small."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Keep unsupported ops (run per step) and label the bundle hybrid."),
    target: str | None = typer.Option(None, "--target", help="Hand the result to `snnctl compile` for this target."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output bundle folder (default runs/NAME-snn)."),
    maxpool: str = typer.Option("auto", "--maxpool", help="; ".join(f"{k}: {v}" for k, v in MAXPOOL_MODES.items())
                                + "; auto: diff, or average for a target with no max over spikes."),
    signed: bool = typer.Option(False, "--signed", help="Signed IF neurons: a spike of -1 takes back a spike fired "
                                "on a transient (closer to the ANN at small T; targets must take negative spikes)."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="Without --dataset: input shape C,H,W of "
                                           "the data-free threshold inputs (default 3,224,224 for an ImageNet stem)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    dt: float = typer.Option(1e-4, "--dt", help=".nir import: seconds per step behind tau (snnTorch's 1e-4)."),
    discretisation: str = typer.Option("euler", "--discretisation", help=".nir import: euler or exact."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Convert an ANN into an SNN of IF neurons: BatchNorm folded, per-channel thresholds, max pooling
    moved in front of its neuron, every op accounted for in a report.

    With --dataset the SNN's accuracy is measured for T = 1, 2, 4, 8, 16, 32 beside the ANN's. Without
    it, thresholds are data-free (activations on uniform random inputs) and accuracy is unmeasured.

    Examples:

      snnctl convert resnet18 --target loihi

      snnctl convert runs/digits-ann --dataset digits --T 8 --out runs/digits-converted

      snnctl convert resnet18 --set stem_type=small --weights model.safetensors --dataset digits

      snnctl convert ./my-hf-resnet --dataset digits --method graded --T 2 --json

      snnctl convert model.nir --T 8 --dt 1e-3 --out runs/imported
    """
    if model.endswith(".nir"):
        import_nir(Path(model), out, T, dt, discretisation, target, json_out)
        return
    from snnctl.conversion import convert as C
    from snnctl.conversion import pipeline as P
    to_target = handoff(target)
    run_device = config.prepare_runtime(device, None)
    options = C.Options(method=method, T=T, levels=levels, percentile=percentile, allow_partial=allow_partial,
                        maxpool=pool_mode(maxpool, to_target), signed=signed)
    job = P.ConvertJob(model=model, options=options, weights=weights, dataset=dataset, samples=samples,
                       zoo_config=parse_sets(sets), input_shape=parse_shape(input_shape), target=to_target, out=out,
                       device=run_device)
    result = P.convert_model(job, on_report=partial(show_report, console := ui.out(json_out)))
    ui.print_json(result.summary(method)) if json_out else show_result(console, result, method)


def show_report(console: Any, result: Any) -> None:
    """The conversion report (stdout, or stderr under --json) and its warnings, before measuring."""
    ui.print_conversion_report(console, result.report.as_dict(), result.weights, result.spikes)
    for warning in result.warnings:
        ui.err.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)


def show_result(console: Any, result: Any, method: str) -> None:
    metrics = result.metrics
    if result.dataset is not None:
        rows = {f"SNN ({method})": {int(k): v for k, v in metrics["acc_by_T"].items()}}
        ui.print_T_table(console, f"Accuracy (%) on {result.dataset} test split against T", metrics["ann_acc"], rows)
    label = " (hybrid: unsupported ops run per step)" if result.report.unsupported else ""
    console.print(f"Wrote {result.out}{label} in {metrics['convert_s']:.1f} s.")
