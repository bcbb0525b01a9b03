"""`snnctl robustify BUNDLE`: fine-tune under a noise curriculum, optionally logic-gated (ternary SNN or ANN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from snnctl import config, ui


def command(
    bundle: Path = typer.Argument(..., help="Bundle to make robust (trained by snnctl: its recipe is reused)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to fine-tune and evaluate on, e.g. digits."),
    noise: str = typer.Option("0:0.45", "--noise", help="Noise range LOW:HIGH sampled per example, in [0, 1]."),
    noise_model: str = typer.Option(
        "bitflip", "--noise-model",
        help="Input or spike-train noise model, e.g. bitflip or salt_pepper; an unknown name lists them all.",
    ),
    logic_gated: bool = typer.Option(
        False, "--logic-gated",
        help="Ternary weights {-1,0,+1}: synaptic layers without multiplications (SNNs; ReLU ANNs as a baseline).",
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
    from snnctl.robust import robustify as R

    job = R.RobustifyJob(bundle=bundle, dataset=dataset, noise=noise, noise_model=noise_model,
                         logic_gated=logic_gated, epochs=epochs, lr=lr, ramp=ramp, out=out)
    run_device = config.prepare_runtime(device, None)
    plan = R.plan_robustify(job)

    def train(data: dict[str, Any], where: str, folder: Path, label: str) -> dict[str, Any]:
        from snnctl.training.progress import train_with_progress

        recipe = config.validate_recipe(data, where)
        return train_with_progress(recipe, folder, label, device=run_device).metrics

    result = R.robustify(plan, train)
    if json_out:
        ui.print_json(result.summary())
        return
    table = Table(title=f"Accuracy against {result.noise_model} noise ({result.dataset} test split, "
                  f"{R.REPEATS} draws per level)")
    for col in ("noise level", "original", "robust"):
        table.add_column(col, justify="right")
    for row in result.curve:
        table.add_row(f"{row['level']:.2f}", f"{row['original']:.4f}", f"{row['robust']:.4f}")
    console = ui.out(json_out)
    console.print(table)
    console.print(f"Wrote {result.out} (chance level {result.chance:.3f}).")
