"""`snnctl bench BUNDLE --dataset D [--baseline BUNDLE]`: measure a model, SNN against its ANN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import config, ui


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _paths(stream: dict[str, Any] | None) -> str | None:
    return None if stream is None else f"{stream['event_layer_calls']}/{stream['dense_layer_calls']}"


ROWS: list[tuple[str, Any]] = [
    ("kind", lambda r: r["kind"]),
    ("T (timesteps)", lambda r: r["T"]),
    ("accuracy", lambda r: r["accuracy"]),
    ("latency batch 1 p50 (ms)", lambda r: r["latency_b1_ms"]["p50"]),
    ("latency batch 1 p95 (ms)", lambda r: r["latency_b1_ms"]["p95"]),
    ("streaming b1 p50 (ms)", lambda r: r["latency_stream_ms"] and r["latency_stream_ms"]["p50"]),
    ("streaming layer calls event/dense", lambda r: _paths(r["latency_stream_ms"])),
    ("latency batched p50 (ms)", lambda r: r["latency_batch_ms"]["p50"]),
    ("latency batched p95 (ms)", lambda r: r["latency_batch_ms"]["p95"]),
    ("throughput (samples/s)", lambda r: r["throughput_per_s"]),
    ("spikes / inference", lambda r: r["spikes_per_inference"]),
    ("firing rate (all layers)", lambda r: r["firing_rate"]),
    ("MACs / inference", lambda r: r["macs"]),
    ("synaptic ops (AC) / inference", lambda r: r["sops"]),
    ("energy, compute (nJ, est.)", lambda r: r["energy_nj"]["compute_nj"]),
    ("energy, + memory (nJ, est.)", lambda r: r["energy_nj"]["with_memory_nj"]),
    ("multiplications / inference", lambda r: r["synaptic_multiplications"]),
    ("parameters", lambda r: r["params"]),
    ("size on disk (bytes)", lambda r: r["size_bytes"]),
    ("same weights as float32 (bytes)", lambda r: r["size_float32_bytes"]),
]


def plan_noise(levels: str, model: str | None, ds: Any) -> tuple[Any, list[float]]:
    from snnctl.robust.noise import noise_model as find
    from snnctl.robust.noise import parse_levels

    parsed = parse_levels(levels)
    if model is None:
        binary = bool(((ds.x_test == 0) | (ds.x_test == 1)).all())
        model = "bitflip" if binary else "salt_pepper"
    return find(model), parsed


def noise_report(bundles: list, datasets: list, plan: tuple[Any, list[float]], repeats: int, out: Path) -> dict:
    """Accuracy against noise for each bundle (same draws), written to OUT/noise.json and noise.png."""
    import json

    from snnctl.artifact import write_atomic
    from snnctl.robust.evaluate import chance_level, curve_table, noise_curve, plot_curves

    noise, levels = plan
    curves = {}
    for role, b, ds in zip(("model", "baseline"), bundles, datasets, strict=False):
        ui.err.print(f"[dim]noise curve of {b.path} ({noise.name}) ...[/dim]")
        name = Path(b.path).name
        curves[name if name not in curves else f"{name} ({role})"] = noise_curve(
            b.model, ds, noise, levels, repeats=repeats
        )
    chance = chance_level(datasets[0])
    out.mkdir(parents=True, exist_ok=True)
    result = {"noise_model": noise.name, "repeats": repeats, "chance": chance, "curves": curves,
              "table": curve_table(curves), "plot": str(out / "noise.png"), "json": str(out / "noise.json")}
    plot_curves(curves, noise.name, chance, out / "noise.png")
    write_atomic(out / "noise.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def print_noise(console: Any, result: dict) -> None:
    names = list(result["curves"])
    table = Table(title=f"Accuracy against {result['noise_model']} noise ({result['repeats']} draws per level)")
    table.add_column("noise level", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for row in result["table"]:
        table.add_row(f"{row['level']:.2f}", *(f"{row[n]:.4f}" for n in names))
    console.print(table)
    console.print(f"Chance level {result['chance']:.3f}. Plot: {result['plot']}; data: {result['json']}.")


def command(
    bundle: Path = typer.Argument(..., help="Bundle folder to measure (written by train, convert, ...)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name, e.g. digits."),
    baseline: Path | None = typer.Option(None, "--baseline", help="A second bundle to compare against (the ANN)."),
    latency_samples: int = typer.Option(100, "--latency-samples", min=1, help="Batch-1 calls to time."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Batch size for batched latency."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    kernel: str | None = typer.Option(
        None, "--kernel", help="Neuron kernel: auto (fused, default), c, torch, or reference (readable loop)."
    ),
    noise: str | None = typer.Option(
        None, "--noise", help="Noise levels to measure accuracy at, e.g. 0,0.1,0.2,0.3,0.4,0.5 (writes a plot)."
    ),
    noise_model: str | None = typer.Option(
        None, "--noise-model", help="Noise model for --noise (default: bitflip for binary data, else salt_pepper)."
    ),
    noise_repeats: int = typer.Option(5, "--noise-repeats", min=1, help="Noise draws per level."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for noise.json and noise.png with --noise (default: the bundle)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Accuracy, latency (p50/p95), throughput, spikes, synaptic ops, energy estimate, size.

    Energy figures are estimates from 45 nm constants, printed with the results.

    Examples:

      snnctl bench runs/digits-snn --dataset digits --baseline runs/digits-ann

      snnctl bench runs/digits-snn --dataset digits --json

      snnctl bench runs/robust --dataset digits --baseline runs/digits-bin-ann --noise 0,0.1,0.2,0.3,0.4,0.5
    """
    from snnctl.artifact import load_bundle
    from snnctl.metrics import energy
    from snnctl.metrics.bench import bench_bundle, dataset_for

    run_device = config.prepare_runtime(device, kernel)
    bundles = [load_bundle(bundle)] + ([load_bundle(baseline)] if baseline else [])
    datasets = [dataset_for(b, dataset) for b in bundles]  # every input checked before any work
    noise_plan = plan_noise(noise, noise_model, datasets[0]) if noise else None
    results = []
    for b, ds in zip(bundles, datasets, strict=True):
        ui.err.print(f"[dim]benchmarking {b.path} ...[/dim]")
        results.append(
            bench_bundle(b, ds, device=run_device, latency_samples=latency_samples, batch_size=batch_size)
        )
    report: dict[str, Any] = {"model": results[0], "baseline": results[1] if baseline else None,
                              "energy_constants": energy.describe()}
    if noise_plan is not None:
        report["noise"] = noise_report(bundles, datasets, noise_plan, noise_repeats, out or bundle)
    if json_out:
        ui.print_json(report)
        return
    table = Table(title=f"snnctl bench on {dataset} (test split, {results[0]['test_samples']} samples)")
    table.add_column("metric")
    for r in results:
        table.add_column(Path(r["bundle"]).name, justify="right")
    if baseline:
        table.add_column("ratio", justify="right")
    for label, get in ROWS:
        values = [get(r) for r in results]
        row = [label, *(_fmt(v) for v in values)]
        if baseline:
            a, b = values
            numeric = isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool)
            row.append(f"{a / b:.3g}x" if numeric and b else "-")
        table.add_row(*row)
    console = ui.out(json_out)
    console.print(table)
    if results[0]["layers"]:
        layers = Table(title="Firing rate per spiking layer")
        for col in ("layer", "neurons", "firing rate"):
            layers.add_column(col)
        for layer in results[0]["layers"]:
            layers.add_row(layer["layer"], str(layer["neurons"]), f"{layer['firing_rate']:.4f}")
        console.print(layers)
    if noise_plan is not None:
        print_noise(console, report["noise"])
    c = energy.CONSTANTS
    console.print(
        f"Energy is an ESTIMATE, not a measurement: e_mac={c.e_mac_pj} pJ, e_ac={c.e_ac_pj} pJ, "
        f"e_mem={c.e_mem_pj} pJ per 32-bit access ({c.source}). {energy.FORMULA}. "
        f"Latency on {run_device}, {results[0]['threads']} threads."
    )
