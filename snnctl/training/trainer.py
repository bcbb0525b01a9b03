"""`train(recipe, out)`: find the recipe's task, check the output folder, run the one loop.

A task is found by the recipe's `task` key in the `snnctl.tasks` entry-point group ("classify" is
snnctl.training.classify, "lm" is snnctl.lm.task), so this area never imports the ones above it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from snnctl import registry
from snnctl.config import Recipe
from snnctl.contracts import TrainTask
from snnctl.paths import check_out
from snnctl.training import distributed
from snnctl.training.loop import METRICS, StepCallback, TrainResult, learning_rate, run

__all__ = ["METRICS", "StepCallback", "TrainResult", "learning_rate", "make_task", "train"]


def make_task(recipe: Recipe, device: str) -> TrainTask:
    """The recipe's task, built: data loaded, model on `device`, input checked; nothing written yet."""
    factory = registry.load("tasks", recipe.task)
    return factory(recipe, device)


def train(
    recipe: Recipe,
    out: Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train the recipe's model, checkpointing into `out`; finish by writing a bundle to `out`. A bad
    `out` and bad input are found before anything is written. Under torchrun (RANK/WORLD_SIZE set)
    this process is one replica of the run: the main one writes and returns the metrics."""
    out = check_out(Path(out))
    replicas, device = distributed.start(resolved_strategy(recipe), device)
    if not replicas.world.main:  # one log for the run: the main process's (errors still reach the launcher)
        logging.getLogger("snnctl").setLevel(logging.ERROR)
    finished = False
    try:
        task = make_task(recipe, device)
        result = run(task, recipe, out, resume=resume, on_step=on_step, replicas=replicas)
        finished = True
        return result
    finally:
        distributed.stop(finished)


def resolved_strategy(recipe: Recipe) -> str:
    """`auto`: one process trains alone, several share the work with DDP."""
    strategy = recipe.train.strategy
    if strategy == "auto":
        return "ddp" if distributed.current_world().size > 1 else "single"
    return strategy
