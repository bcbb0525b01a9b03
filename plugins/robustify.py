"""`snnctl robustify BUNDLE`: fine-tune under a noise curriculum, optionally into a logic-gated SNN."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import typer
from rich.table import Table

from snnctl import config, ui
from snnctl.errors import UserError

LEVELS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def command(
    bundle: Path = typer.Argument(..., help="Bundle to make robust (trained by snnctl: its recipe is reused)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to fine-tune and evaluate on, e.g. digits."),
    noise: str = typer.Option("0:0.45", "--noise", help="Noise range LOW:HIGH sampled per example, in [0, 1]."),
    noise_model: str = typer.Option(
        "bitflip", "--noise-model",
        help="bitflip, salt_pepper, gaussian, dropout, spike_delete, spike_insert or spike_jitter.",
    ),
    logic_gated: bool = typer.Option(
        False, "--logic-gated", help="Ternary weights {-1,0,+1}: synaptic layers without multiplications (SNN only)."
    ),
    epochs: int = typer.Option(15, "--epochs", min=1, help="Fine-tuning epochs."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Fine-tuning learning rate."),
    ramp: float = typer.Option(
        0.5, "--ramp", min=0.0, max=1.0, help="Fraction of training over which the range widens."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output bundle folder (default: BUNDLE-robust)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Fine-tune a bundle with a noise curriculum (hyper-robust training), optionally logic-gated.

    Each training example gets its own noise level, uniform in [LOW, high], the upper bound rising
    from LOW to HIGH over the first --ramp of training. The result is evaluated against noise levels
    0..0.5 beside the original, and the manifest records the noise model, range and curve.

    Examples:

      snnctl robustify runs/digits-bin-snn --dataset digits --noise 0:0.45 --logic-gated --out runs/robust

      snnctl robustify runs/digits-bin-ann --dataset digits --noise-model bitflip --json
    """
    from snnctl.artifact import MANIFEST, load_bundle, write_atomic
    from snnctl.metrics.bench import dataset_for
    from snnctl.robust.evaluate import chance_level, curve_table, noise_curve
    from snnctl.robust.noise import noise_model as find_noise_model
    from snnctl.robust.noise import parse_range
    from snnctl.training.progress import train_with_progress

    lo, hi = parse_range(noise)
    model_spec = find_noise_model(noise_model)
    if model_spec.kind == "weights":
        raise UserError("weight noise is an evaluation model, not a training augmentation",
                        hint="evaluate it with `snnctl bench BUNDLE --noise ... --noise-model weight`")
    run_device = config.prepare_runtime(device, None)
    source = load_bundle(bundle)
    if source.manifest.get("logic_gated"):
        raise UserError("this bundle is already logic-gated; its float weights are gone", where=str(bundle),
                        hint="robustify the float bundle it came from")
    recipe_data = source.manifest.get("recipe")
    if not recipe_data:
        raise UserError("the bundle does not record the recipe it was trained with", where=str(bundle),
                        hint="robustify a bundle written by `snnctl train`")
    ds = dataset_for(source, dataset)
    data = copy.deepcopy(recipe_data)
    if data["data"]["name"] != dataset:
        data["data"] = {"name": dataset}
    data["name"] = f"{data.get('name') or source.name}-robust"
    data["model"]["logic_gated"] = logic_gated
    data["data"]["augment"] = {"noise": noise_model, "range": [lo, hi], "ramp": ramp}
    data["train"].update({"init": str(bundle), "epochs": epochs, "lr": lr, "warmup_steps": 0})
    recipe = config.validate_recipe(data, f"{bundle}/{MANIFEST} (recipe)")
    out = out or bundle.with_name(bundle.name + "-robust")
    if out.resolve() == bundle.resolve():
        raise UserError("--out is the input bundle", where=str(out), hint="write the robust model to a new folder")

    label = f"robustify {source.name} ({noise_model} {lo:g}..{hi:g}{', logic-gated' if logic_gated else ''})"
    result = train_with_progress(recipe, out, label, device=run_device)

    robust = load_bundle(out)
    curves = {
        "original": noise_curve(source.model, ds, model_spec, LEVELS, repeats=3),
        "robust": noise_curve(robust.model, ds, model_spec, LEVELS, repeats=3),
    }
    manifest = dict(robust.manifest)
    manifest["parent"] = str(bundle)
    manifest["robust"] = {
        "noise_model": noise_model, "range": [lo, hi], "ramp": ramp, "epochs": epochs,
        "logic_gated": logic_gated, "curve": curves["robust"], "parent_curve": curves["original"],
    }
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())

    summary = {
        "out": str(out), "noise_model": noise_model, "range": [lo, hi], "logic_gated": logic_gated,
        "metrics": result.metrics, "chance": chance_level(ds), "curve": curve_table(curves),
    }
    if json_out:
        ui.print_json(summary)
        return
    table = Table(title=f"Accuracy against {noise_model} noise ({ds.name} test split, 3 draws per level)")
    for col in ("noise level", "original", "robust"):
        table.add_column(col, justify="right")
    for row in summary["curve"]:
        table.add_row(f"{row['level']:.2f}", f"{row['original']:.4f}", f"{row['robust']:.4f}")
    console = ui.out(json_out)
    console.print(table)
    console.print(f"Wrote {out} (chance level {summary['chance']:.3f}).")
