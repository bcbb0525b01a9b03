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
    ("spikes / token", lambda r: r.get("spikes_per_token")),
    ("firing rate (all layers)", lambda r: r["firing_rate"]),
    ("MACs / inference", lambda r: r["macs"]),
    ("synaptic ops (AC) / inference", lambda r: r["sops"]),
    ("energy, compute (nJ, est.)", lambda r: r["energy_nj"]["compute_nj"]),
    ("energy, + memory (nJ, est.)", lambda r: r["energy_nj"]["with_memory_nj"]),
    ("multiplications / inference", lambda r: r["synaptic_multiplications"]),
    ("spike rate where spikes drive synapses", lambda r: r["vs_int8_ann"] and r["vs_int8_ann"]["spike_rate"]),
    ("break-even rate vs 8-bit ANN (est.)", lambda r: r["vs_int8_ann"] and r["vs_int8_ann"]["break_even_rate"]),
    ("parameters", lambda r: r["params"]),
    ("size on disk (bytes)", lambda r: r["size_bytes"]),
    ("same weights as float32 (bytes)", lambda r: r["size_float32_bytes"]),
]


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
    from snnctl.metrics import pipeline as P

    run_device = config.prepare_runtime(device, kernel)
    job = P.BenchJob(bundle=bundle, dataset=dataset, baseline=baseline, latency_samples=latency_samples,
                     batch_size=batch_size, device=run_device, noise=noise, noise_model=noise_model,
                     noise_repeats=noise_repeats, out=out)
    plan = P.plan_bench(job)  # every input checked before any work
    report = P.run_bench(plan, on_start=lambda what: ui.err.print(f"[dim]{what}[/dim]"))
    if json_out:
        ui.print_json(report)
        return
    print_report(ui.out(json_out), report, dataset, run_device)


def print_report(console: Any, report: dict[str, Any], dataset: str, device: str) -> None:
    """The metric table (with ratios against the baseline), firing rates per layer, noise, energy note."""
    from snnctl.metrics import energy

    results = [r for r in (report["model"], report["baseline"]) if r is not None]
    baseline = len(results) > 1
    table = Table(title=f"snnctl bench on {dataset} (test split, {results[0]['test_samples']} samples)")
    table.add_column("metric")
    for r in results:
        table.add_column(Path(r["bundle"]).name, justify="right")
    if baseline:
        table.add_column("ratio", justify="right")
    subsets = [(f"accuracy, {name} subset (n={v['size']})", lambda r, n=name: r["subsets"].get(n, {}).get("accuracy"))
               for name, v in results[0].get("subsets", {}).items()]
    for label, get in ROWS[:3] + subsets + ROWS[3:]:
        values = [get(r) for r in results]
        row = [label, *(_fmt(v) for v in values)]
        if baseline:
            a, b = values
            numeric = isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool)
            row.append(f"{a / b:.3g}x" if numeric and b else "-")
        table.add_row(*row)
    console.print(table)
    if results[0]["layers"]:
        layers = Table(title="Firing rate per spiking layer")
        for col in ("layer", "neurons", "firing rate"):
            layers.add_column(col)
        for layer in results[0]["layers"]:
            layers.add_row(layer["layer"], str(layer["neurons"]), f"{layer['firing_rate']:.4f}")
        console.print(layers)
    if "noise" in report:
        print_noise(console, report["noise"])
    c = energy.CONSTANTS
    console.print(
        f"Energy is an ESTIMATE, not a measurement: e_mac={c.e_mac_pj} pJ, e_ac={c.e_ac_pj} pJ, "
        f"e_mem={c.e_mem_pj} pJ per 32-bit access ({c.source}). {energy.FORMULA}. "
        f"Latency on {device}, {results[0]['threads']} threads."
    )
    if results[0].get("vs_int8_ann"):
        i8 = energy.INT8
        console.print(
            f"Break-even against an 8-bit ANN of the same shape (ESTIMATE): the spike rate below which the SNN "
            f"costs less, counting data movement ({i8.mac8_pj} pJ per 8-bit MAC with its weight, {i8.sop_pj} pJ per "
            f"spike-driven accumulate, {i8.state_pj} pJ per membrane update, {i8.activation8_pj} pJ per 8-bit "
            f"activation; {i8.source}). A rate of 1 or more: it costs less at any rate."
        )
