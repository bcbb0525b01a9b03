"""`snnctl train --recipe NAME`: train an SNN (surrogate gradients through time) or its ANN twin."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from snnctl import config, ui


def command(
    recipe: str = typer.Option(..., "--recipe", "-r", help="Recipe name (see `snnctl recipes list`) or path."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.lr=3e-4."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (bundle, checkpoints, metrics)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (settings default)."),
    kernel: str | None = typer.Option(
        None, "--kernel", help="Neuron kernel: auto (fused, default), c, torch, or reference (readable loop)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the final metrics as JSON on stdout."),
    nproc: str | None = typer.Option(
        None, "--nproc", help="Processes on this node, via torchrun: N, or auto (every GPU; on CPU one per 2 cores)."
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Nodes in the run (with --nproc and --rdzv-endpoint)."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank (multi-node)."),
    rdzv_endpoint: str | None = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT where the nodes meet."),
    rdzv_timeout: int = typer.Option(60, "--rdzv-timeout", min=1, help="Seconds to wait for the other nodes."),
    distill: str | None = typer.Option(None, "--distill", help="Distil from teacher logits in this folder "
                                       "(snnctl distill prepare); alpha, temperature: --set distill.alpha=..."),
    teacher: str | None = typer.Option(None, "--teacher", help="Distil online from this teacher (bundle, HF folder "
                                       "or id), run at every step."),
) -> None:
    """Train a model from a TOML recipe and write a bundle (model.safetensors + snnctl.json).

    Metrics are appended to OUT/metrics.jsonl; a checkpoint is kept in OUT/checkpoints.

    Examples:

      snnctl train --recipe digits-snn --out runs/digits-snn

      snnctl train --recipe digits-snn --set train.epochs=5 --set encoding.T=8

      snnctl train --recipe digits-snn --out runs/digits-snn --resume

      snnctl train --recipe small-ssm --nproc 2      (DDP; train.strategy=fsdp shards the model)

      snnctl train --recipe distill-fmnist-snn --distill runs/teacher-fmnist-logits
    """
    from snnctl.training.distributed import current_world
    from snnctl.training.progress import train_with_progress

    overrides = [*overrides, *config.distill_overrides(distill, teacher)]
    spec = config.load_recipe(recipe, overrides)
    run_device = config.prepare_runtime(device, kernel)
    out = out or Path("runs") / spec.name
    if nproc is not None and current_world().size == 1:
        from snnctl.cli import debugging
        from snnctl.training import launch as L

        plan = L.Launch(L.parse_nproc(nproc, run_device), nnodes, node_rank, rdzv_endpoint, rdzv_timeout)
        options = ["--recipe", recipe, *(a for o in overrides for a in ("--set", o)), "--device", run_device,
                   *(["--kernel", kernel] if kernel else []), *(["--resume"] if resume else []),
                   *(["--json"] if json_out else [])]
        L.train_in_processes(plan, spec, options, out, debug=debugging())
        return
    result = train_with_progress(spec, out, f"train {spec.name} ({spec.model.kind})", resume=resume,
                                 device=run_device)
    if not current_world().main:
        return

    summary = {"recipe": spec.name, "kind": spec.model.kind, "out": str(result.out), **result.metrics}
    if json_out:
        ui.print_json(summary)
        return
    table = Table(title=f"Trained {spec.name}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    ui.out(json_out).print(table)
