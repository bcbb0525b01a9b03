"""`snnctl convert MODEL`: turn a trained ANN into a spiking network and say exactly what changed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from snnctl import config, registry, ui
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


def compile_target(name: str | None, converted: bool = False) -> Any:
    """The compile target plugin for --target, looked up before any work so a typo (or a target that
    cannot take a converted SNN) costs nothing."""
    from snnctl.backends.targets import TAKES_CONVERTED

    if name is None:
        return None
    if name not in registry.entries("targets"):
        known = ", ".join(registry.entries("targets")) or "none installed yet"
        raise UserError(f"no compile target '{name}'", hint=f"installed targets: {known}; see `snnctl plugins`")
    if converted and name not in TAKES_CONVERTED:
        raise UserError(f"the {name} target does not take converted SNNs (per-channel thresholds, subtractive "
                        "reset)", where="--target", hint=f"use --target {' or '.join(TAKES_CONVERTED)}")
    return registry.load("targets", name)


def import_nir(path: Path, out: Path | None, T: int, dt: float, discretisation: str, target: str | None,
               json_out: bool) -> None:
    """A NIR graph is already spiking: import it as an SNN bundle (and compile it when asked)."""
    from snnctl.backends.extract import ExportOptions
    from snnctl.backends.nir_target import import_bundle

    if not path.is_file():
        raise UserError("NIR file not found", where=str(path))
    compile_fn = compile_target(target)
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
    method: str = typer.Option("rate", "--method", "-m", help="rate (default), qcfs (QCFS-trained ANN) or graded."),
    levels: int = typer.Option(4, "--levels", min=1, max=64, help="graded: most spikes per neuron per step."),
    percentile: float = typer.Option(99.9, "--percentile", min=50.0, max=100.0,
                                     help="Per-channel activation percentile that sets each threshold."),
    samples: int = typer.Option(512, "--calibration-samples", min=1, help="Training examples used for thresholds."),
    sets: list[str] = typer.Option([], "--set", help="Zoo config for a zoo name, e.g. --set stem_type=small."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Keep unsupported ops (run per step) and label the bundle hybrid."),
    target: str | None = typer.Option(None, "--target", help="Hand the result to `snnctl compile` for this target."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output bundle folder (default runs/NAME-snn)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    dt: float = typer.Option(1e-4, "--dt", help=".nir import: seconds per step behind tau (snnTorch's 1e-4)."),
    discretisation: str = typer.Option("euler", "--discretisation", help=".nir import: euler or exact."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Convert an ANN into an SNN of IF neurons: BatchNorm folded, per-channel thresholds, max pooling
    moved in front of its neuron, every op accounted for in a report.

    With --dataset the SNN's accuracy is measured for T = 1, 2, 4, 8, 16, 32 beside the ANN's.

    Examples:

      snnctl convert runs/digits-ann --dataset digits --T 8 --out runs/digits-converted

      snnctl convert resnet18 --set stem_type=small --set in_channels=1 --set num_classes=10 --weights
      model.safetensors --dataset digits

      snnctl convert runs/resnet18-digits32 --dataset digits --T 16 --target loihi

      snnctl convert ./my-hf-resnet --dataset digits --method graded --T 2 --json

      snnctl convert model.nir --T 8 --dt 1e-3 --out runs/imported
    """
    if model.endswith(".nir"):
        import_nir(Path(model), out, T, dt, discretisation, target, json_out)
        return
    from snnctl.conversion import bundle as B
    from snnctl.conversion import convert as C
    from snnctl.conversion.source import resolve
    from snnctl.data import load_as_recorded, load_dataset
    from snnctl.metrics.bench import check_compatible
    from snnctl.zoo import Network

    compile_fn = compile_target(target, converted=True)
    run_device = config.prepare_runtime(device, None)
    C.check_method(method)  # before any loading: a typo costs nothing
    options = C.Options(method=method, T=T, levels=levels, percentile=percentile, allow_partial=allow_partial)
    zoo_config = parse_sets(sets)
    is_zoo = model in registry.entries("models") and not Path(model).exists()
    ds = load_dataset(dataset) if dataset and is_zoo else None
    source = resolve(model, weights=weights, config=zoo_config, ds=ds)
    if dataset and ds is None:
        ds = load_as_recorded(dataset, source.data)
    calib = B.calibration_split(ds, samples) if ds is not None else None

    started = time.perf_counter()
    body, report = C.convert(source.body, options, calib[0] if calib else None)
    net = Network(body, kind="converted", encoding="direct", T=T).to(run_device)
    convert_s = time.perf_counter() - started
    console = ui.out(json_out)
    B.print_report(console, report, source.weights, B.spike_kind(net))

    metrics: dict[str, Any] = {"convert_s": round(convert_s, 3)}
    if ds is not None:
        check_compatible(net, ds, model, B.MISFIT_HINT)
        x_test, y_test = ds.x_test.to(run_device), ds.y_test.to(run_device)
        by_T = C.accuracy_by_T(net, x_test, y_test, tuple(sorted({*C.TABLE_T, T})))  # one run serves all
        metrics.update(dataset=ds.name, test_samples=len(ds.y_test),
                       ann_acc=C.ann_accuracy(body, x_test, y_test),
                       acc_by_T={str(k): by_T[k] for k in C.TABLE_T}, test_acc=by_T[T])
    name = Path(model).name if Path(model).exists() else model.replace("/", "-")
    out = out or Path("runs") / f"{name}-snn"
    info = {"method": method, "percentile": percentile if C.needs_data(options, source.body) else None,
            "calibration_samples": len(calib[0]) if calib else 0,
            "graded_levels": C.graded_levels(options, source.body),
            "hybrid": bool(report.unsupported), "weights": source.weights, "report": report.as_dict(),
            "data": {"name": ds.name, **(source.data or {})} if ds is not None else None, "calibration": []}
    net.cpu()
    if compile_fn is not None and ds is not None:
        from snnctl.backends.targets import check_converted

        check_converted(target, net, tuple(ds.x_test.shape[1:]))
    from snnctl.artifact import save_bundle

    save_bundle(out, net, B.manifest_for(net, source.record, info, metrics, source.parent))

    compiled = None
    if compile_fn is not None:
        from snnctl.backends.targets import CompileOptions

        compiled = compile_fn(out, out / f"compiled-{target}", CompileOptions(dataset=ds.name if ds else None))
    summary = {"out": str(out), "method": method, "T": T, "spikes": B.spike_kind(net),
               "hybrid": bool(report.unsupported), "weights": source.weights, **metrics,
               "report": {k: len(v) for k, v in report.as_dict().items()}, "compiled": compiled}
    if json_out:
        ui.print_json(summary)
        return
    if ds is not None:
        rows = {f"SNN ({method})": {int(k): v for k, v in metrics["acc_by_T"].items()}}
        B.print_T_table(console, f"Accuracy (%) on {ds.name} test split against T", metrics["ann_acc"], rows)
    label = " (hybrid: unsupported ops run per step)" if report.unsupported else ""
    console.print(f"Wrote {out}{label} in {convert_s:.1f} s.")
