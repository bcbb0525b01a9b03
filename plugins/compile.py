"""`snnctl compile BUNDLE --target T`: export an SNN to NIR, ONNX, Lava or Loihi 2 and check the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import registry, ui
from snnctl.errors import UserError


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise UserError(f"--input-shape expects positive integers like 1,8,8, got '{text}'")
    return shape


def default_out(bundle: Path, target: str) -> Path:
    """BUNDLE-TARGET beside the bundle; `.` or `..` name the folder they resolve to."""
    source = bundle.resolve()
    if not source.name:
        raise UserError("cannot name the output folder after the file system root", where=str(bundle),
                        hint="pass --out")
    return source.with_name(f"{source.name}-{target}")


def list_targets(json_out: bool) -> None:
    entries = registry.entries("targets")
    if json_out:
        ui.print_json([{"name": e.name, "package": e.package, "value": e.value} for e in entries.values()])
        return
    table = Table(title="Compile targets")
    for col in ("target", "what it writes", "package"):
        table.add_column(col)
    for e in entries.values():
        doc = (e.load().__doc__ or "").strip().split("\n\n")[0]
        table.add_row(e.name, " ".join(doc.split()), e.package)
    ui.out(False).print(table)


def command(
    bundle: Path | None = typer.Argument(None, help="An SNN bundle (snnctl train, or convert of a .nir file)."),
    target: str | None = typer.Option(None, "--target", "-t", help="nir, onnx, lava or loihi (see --list)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default BUNDLE-TARGET)."),
    list_only: bool = typer.Option(False, "--list", help="List the installed compile targets and exit."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Round trip on this dataset's test split "
                                       "(accuracy too); random inputs otherwise."),
    samples: int = typer.Option(256, "--samples", min=1, help="Examples in the round-trip check."),
    T: int | None = typer.Option(None, "--T", "-T", min=1, max=4096, help="Time steps (default: the bundle's)."),
    dt: float = typer.Option(1e-4, "--dt", help="NIR: seconds per step behind tau (snnTorch's 1e-4 by default)."),
    discretisation: str = typer.Option("euler", "--discretisation", help="NIR: euler (decay = 1 - dt/tau) "
                                       "or exact (decay = exp(-dt/tau))."),
    reset: str | None = typer.Option(None, "--reset", help="'zero': export subtract-reset neurons as reset to "
                                     "zero anyway (NIR/Lava/Loihi cannot subtract); the round trip shows the cost."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="Example shape without batch, e.g. 1,8,8 "
                                           "(when the bundle records no dataset)."),
    input_bits: int = typer.Option(8, "--input-bits", min=1, max=23, help="loihi: bits of graded input messages."),
    weight_percentile: float = typer.Option(100.0, "--weight-percentile", min=50.0, max=100.0,
                                            help="loihi: scale 8-bit weights to this percentile of |W| "
                                            "(below 100 clips outliers, with a warning)."),
    strict: bool = typer.Option(False, "--strict", help="loihi: exit 2 instead of warning when weights saturate."),
    lava_samples: int = typer.Option(64, "--lava-samples", min=0, help="lava/loihi: examples run in lava "
                                     "(slow: Python processes); 0 skips lava for loihi."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Compile an SNN bundle for a target and check the result against the PyTorch SNN.

    Every target ends with a round trip: the compiled form runs on the same inputs as the PyTorch
    SNN, and the per-layer spike mismatch, output difference and (with --dataset) accuracy are
    printed and written to OUT/compile.json.

    Examples:

      snnctl compile --list

      snnctl compile runs/digits-loihi-snn --target loihi --dataset digits --out runs/loihi

      snnctl compile runs/digits-loihi-snn --target nir --dt 1e-3 --discretisation exact

      snnctl compile runs/digits-snn --target onnx --dataset digits --json
    """
    if list_only:
        return list_targets(json_out)
    if bundle is None or target is None:
        raise UserError("give a BUNDLE and --target", hint="see `snnctl compile --list` for the targets")
    from snnctl.backends.targets import CompileOptions, find_target

    compile_fn = find_target(target)
    if reset not in (None, "zero"):
        raise UserError(f"--reset takes only 'zero', got '{reset}'")
    options = CompileOptions(dt=dt, discretisation=discretisation, reset=reset, dataset=dataset, samples=samples,
                             T=T, input_shape=parse_shape(input_shape), strict=strict, input_bits=input_bits,
                             weight_percentile=weight_percentile, lava_samples=lava_samples)
    destination = out or default_out(bundle, target)
    with ui.out(json_out).status(f"Compiling for {target} and running the round trip..."):
        summary = compile_fn(bundle, destination, options)
    ui.print_json(summary) if json_out else print_summary(summary)


def roundtrip_table(rt: dict[str, Any]) -> Table:
    """Per-layer spike mismatch; a key a (third-party) target does not report is left blank."""
    samples, T = rt.get("samples", "?"), rt.get("T", "?")
    table = Table(title=f"Round trip: {rt.get('compared_with', '')} vs PyTorch SNN ({samples} x T={T})")
    for col in ("layer", "spike mismatch", "rate PyTorch", "rate compiled"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for layer in rt.get("layers") or []:
        if layer.get("mismatch") is None:
            table.add_row(str(layer.get("layer", "?")), "not recorded", "", "")
            continue
        table.add_row(str(layer.get("layer", "?")), f"{layer['mismatch']:.4%}",
                      _number(layer.get("rate_reference")), _number(layer.get("rate_compiled")))
    return table


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


def print_summary(summary: dict[str, Any]) -> None:
    console = ui.out(False)
    rt = summary.get("roundtrip") or {}
    if rt.get("layers"):
        console.print(roundtrip_table(rt))
    if isinstance(rt.get("output_max_abs_diff"), int | float):
        console.print(f"Output max |difference|: {rt['output_max_abs_diff']:.3g}")
    if "accuracy" in rt:
        acc = rt["accuracy"]
        console.print(f"Accuracy: PyTorch SNN {acc['reference']:.2f} %, compiled {acc['compiled']:.2f} %")
    lava = rt.get("lava_fixed_pt")
    if lava and lava.get("checked"):
        verdict = "bit-exact" if lava["bit_exact"] else f"{lava['spikes_differing']} spikes differ"
        console.print(f"Lava fixed_pt vs snnctl simulation on {lava['samples']} examples: {verdict}")
    if "resources" in summary:
        r = summary["resources"]
        console.print(f"Loihi 2 estimate: {r['neurons']} neurons, {r['synapses']} synapses, "
                      f"{r['cores']} cores, {r['chips']} chip(s)")
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    files = [*(summary.get("artifacts") or {}).values(), "compile.json"]
    took = summary.get("compile_s")
    console.print(f"Wrote {summary.get('out', '?')} ({', '.join(map(str, files))})"
                  + (f" in {took:.1f} s." if isinstance(took, int | float) else "."))
