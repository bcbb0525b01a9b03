"""The one training loop, readable top to bottom; a task (snnctl.contracts.TrainTask) supplies the rest.

Everything that decides the result is a function of (recipe, step): the task draws each step's batch
and noise from generators seeded by (seed, step), the learning rate comes from the step, and a
checkpoint keeps weights, optimizer moments, the global RNG and the metric window in progress. So a
run resumed from a checkpoint ends with the same weights and the same metrics.jsonl as one that never
stopped, whatever the log and checkpoint cadences.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnctl.config import Recipe
from snnctl.contracts import TrainTask
from snnctl.errors import UserError
from snnctl.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from snnctl.training.distributed import Replicas, World

METRICS = "metrics.jsonl"
StepCallback = Callable[[int, int, dict[str, Any]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    metrics: dict[str, Any]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a wrapper (DistributedDataParallel keeps it as `.module`): the one place that
    reaches through one, so tasks can read the model's own attributes."""
    return getattr(model, "module", model)


def recipe_fingerprint(recipe: Recipe) -> str:
    """What must match for --resume: everything but bookkeeping (checkpoint/log cadence) and how the
    same global batch is split (strategy, micro-batches), which do not change the optimisation."""
    data = recipe.model_dump(mode="json")
    for key in ("checkpoint_every", "log_every", "strategy", "accumulate"):
        data["train"].pop(key)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def learning_rate(step: int, total: int, recipe: Recipe) -> float:
    t = recipe.train
    if t.warmup_steps and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    progress = (step - t.warmup_steps) / max(total - t.warmup_steps, 1)
    return t.lr * 0.5 * (1 + math.cos(math.pi * progress))


def default_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """For a model that declares no groups of its own: every parameter, one weight decay."""
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


def model_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The model's own `param_groups(weight_decay)` if it declares them, else one group."""
    inner = unwrap(model)
    declared = getattr(inner, "param_groups", None)
    return declared(weight_decay) if callable(declared) else default_param_groups(inner, weight_decay)


def make_optimizer(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    t = recipe.train
    if getattr(t, "optimizer", "adamw") == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=getattr(t, "momentum", 0.9), weight_decay=t.weight_decay)
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate, times a group's own `lr_scale` (e.g. an SSM's slow dynamics)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def shards(batch: torch.Tensor, replicas: Replicas, accumulate: int) -> list[torch.Tensor]:
    """This process's micro-batches of the global batch: it is cut into processes x accumulate nearly
    equal pieces (examples along dim 0) and this process takes its `accumulate` consecutive ones."""
    world = replicas.world
    if world.size * accumulate == 1:
        return [batch]
    pieces = torch.tensor_split(batch, world.size * accumulate)
    return list(pieces[world.rank * accumulate : (world.rank + 1) * accumulate])


def check_batches(task: TrainTask, recipe: Recipe, replicas: Replicas) -> None:
    """Every process gets an equal, non-empty share of every global batch: found before anything is written."""
    parts = replicas.world.size * recipe.train.accumulate
    if parts == 1:
        return
    size, last = len(task.batch(0)), len(task.batch(task.total_steps - 1))
    if size % parts or last < parts:
        raise UserError(f"batches of {size} examples (the last of an epoch {last}) do not split into "
                        f"{replicas.world.size} processes x {recipe.train.accumulate} micro-batches",
                        where="train.batch_size",
                        hint=f"use a batch size divisible by {parts}, or fewer processes")


def train_step(task: TrainTask, model: torch.nn.Module, batch: torch.Tensor, step: int, replicas: Replicas,
               recipe: Recipe) -> dict[str, float]:
    """Forward and backward over this process's micro-batches of the global batch; each micro-batch's
    mean loss is weighted by its share of the global batch, so averaged gradients are the global mean."""
    accumulate, world = recipe.train.accumulate, replicas.world
    micro = shards(batch, replicas, accumulate)
    stats: dict[str, float] = {}
    for i, part in enumerate(micro):
        extra = {"part": world.rank * accumulate + i} if world.size * accumulate > 1 else {}
        with replicas.no_sync(model, last=i == len(micro) - 1):
            loss, part_stats = task.loss(model, part, step, **extra)
            (loss * (len(part) * world.size / len(batch))).backward()
        for key, value in part_stats.items():
            stats[key] = stats.get(key, 0.0) + value
    return stats


def _rewind_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint, so a resumed log equals an uninterrupted one."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def eval_due(task: TrainTask, step: int) -> bool:
    """The task's own schedule; a task without `eval_due` is asked at every step (its `evaluate` decides)."""
    due = getattr(task, "eval_due", None)
    return bool(due(step)) if callable(due) else True


def start_or_resume(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, fingerprint: str,
                    resume: bool, replicas: Replicas) -> dict[str, Any]:
    """A fresh run: an empty metrics log, no stale checkpoint (the main process clears them). A resumed
    one: model, optimizer and RNG restored on every process from the checkpoint of the same recipe, the
    log rewound to it; returns its info."""
    ckpt_dir, metrics_path = out / "checkpoints", out / METRICS
    if not resume:
        if replicas.world.main:
            out.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("")
            (ckpt_dir / CHECKPOINT).unlink(missing_ok=True)
        return {"step": 0}
    weights, optim, info = load_checkpoint(ckpt_dir)
    if info.get("fingerprint") != fingerprint:
        raise UserError(
            "the checkpoint was made by a different recipe",
            where=str(ckpt_dir / CHECKPOINT),
            hint="resume with the same recipe and --set values, or train into a new --out",
        )
    replicas.load_state(model, optimizer, weights, optim)
    if replicas.world.main:
        _rewind_metrics(metrics_path, int(info["step"]))
        log.info("resuming %s from step %s", out, info["step"])
    else:
        info["window"] = {}  # the main process holds the window's sums over every process
    return info


def run(task: TrainTask, recipe: Recipe, out: Path, *, resume: bool = False,
        on_step: StepCallback | None = None, replicas: Replicas | None = None) -> TrainResult:
    """Train `task.model` for `task.total_steps` steps, logging, evaluating and checkpointing into `out`;
    the task writes the bundle at the end. The task has checked its input already: nothing is written
    before this. With several processes each runs this loop on its share of every batch; only the main
    one writes (metrics, checkpoints, bundle) and its result has the metrics, the others' has none."""
    t = recipe.train
    replicas = replicas or Replicas(World(), "cpu")
    check_batches(task, recipe, replicas)
    model = replicas.wrap(task.model)
    optimizer = make_optimizer(task.param_groups(), recipe)
    fingerprint = recipe_fingerprint(recipe)
    info = start_or_resume(out, model, optimizer, fingerprint, resume, replicas)
    step, total, main = int(info["step"]), task.total_steps, replicas.world.main
    window: dict[str, float] = dict(info.get("window") or {})  # the log line in progress at the checkpoint

    started, trained_steps = time.perf_counter(), 0
    model.train()
    with contextlib.ExitStack() as files:
        metrics = files.enter_context((out / METRICS).open("a")) if main else None
        while step < total:
            lr = learning_rate(step, total, recipe)
            set_learning_rate(optimizer, lr)
            stats = train_step(task, model, task.batch(step), step, replicas, recipe)
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_steps += 1
            for key, value in stats.items():
                window[key] = window.get(key, 0.0) + value

            line: dict[str, Any] = {}
            if step % t.log_every == 0 or task.log_due(step):
                line = {"step": step, "lr": lr, **task.summarise(step, replicas.sum(window))}
                window = {}
            if eval_due(task, step):
                net = replicas.full_model(model)
                evaluation = task.evaluate(net, step) if net is not None else {}
                if evaluation:
                    line = {**(line or {"step": step, "lr": lr}), **evaluation}
            if line and metrics is not None:
                metrics.write(json.dumps(line) + "\n")
                metrics.flush()
            if step % t.checkpoint_every == 0 or step == total:
                weights, optim = replicas.checkpoint_state(model, optimizer)
                held = replicas.sum(window)
                if main:
                    save_checkpoint(out / "checkpoints", weights, optim,
                                    {"step": step, "fingerprint": fingerprint, "window": held})
                    log.debug("checkpoint at step %d", step)
            if on_step is not None:
                on_step(step, total, line)

    wall = time.perf_counter() - started
    run_info = {"train_wall_s": wall, "trained_steps": trained_steps, "resumed": resume}
    net = replicas.full_model(model)
    return TrainResult(out=out, metrics=task.finish(net, out, run_info) if net is not None else {})
