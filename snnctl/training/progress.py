"""Training with a progress bar on stderr: shared by `train` and `robustify`."""

from __future__ import annotations

from pathlib import Path

from snnctl import ui
from snnctl.config import Recipe
from snnctl.training.distributed import current_world
from snnctl.training.trainer import TrainResult, train


def train_with_progress(
    recipe: Recipe, out: Path, label: str, *, resume: bool = False, device: str = "cpu"
) -> TrainResult:
    """Run `train`, showing step, loss and accuracy; the bar starts at the first step, so bad input
    fails before anything is drawn. Of several processes, only the main one draws it."""
    if not current_world().main:
        return train(recipe, out, resume=resume, device=device)
    bar = ui.progress()
    tasks: list = []

    def on_step(step: int, total: int, info: dict[str, float]) -> None:
        if not tasks:
            bar.start()
            tasks.append(bar.add_task(label, total=total, info=""))
        text = None
        if "loss" in info:
            text = f"loss {info['loss']:.3f}"
            if "train_acc" in info:
                text += f" acc {info['train_acc']:.3f}"
            if "test_acc" in info:
                text += f" test {info['test_acc']:.3f}"
        if "val_bpb" in info:
            text = (text or "") + f" val {info['val_bpb']:.3f} bpb"
        bar.update(tasks[0], completed=step, total=total, **({"info": text} if text else {}))

    try:
        return train(recipe, out, resume=resume, device=device, on_step=on_step)
    finally:
        bar.stop()
