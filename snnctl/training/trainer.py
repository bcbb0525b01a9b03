"""The training loop, readable top to bottom: surrogate-gradient BPTT for SNNs, plain SGD for ANNs.

Everything that decides the result is a function of (recipe, step): the batch order of an epoch comes
from a generator seeded by (seed, epoch), the encoder's randomness from (seed, step), the learning
rate from the step. So a run resumed from a checkpoint ends with the same weights as one that never
stopped.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from snnctl import registry
from snnctl.artifact import make_manifest, save_bundle
from snnctl.config import AugmentSection, Recipe
from snnctl.data import Dataset, load_dataset
from snnctl.errors import UserError
from snnctl.metrics.accuracy import accuracy
from snnctl.robust.noise import noise_model, noisy_logits
from snnctl.robust.ternary import make_ternary, to_logic_gated
from snnctl.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from snnctl.zoo import Network, build_network

METRICS = "metrics.jsonl"
StepCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    out: Path
    metrics: dict[str, Any]


def recipe_fingerprint(recipe: Recipe) -> str:
    """What must match for --resume: everything but bookkeeping (checkpoint/log cadence)."""
    data = recipe.model_dump(mode="json")
    for key in ("checkpoint_every", "log_every"):
        data["train"].pop(key)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def fill_shape_defaults(name: str, config: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    """Give the builder the dataset's input size and class count unless the recipe set them."""
    params = inspect.signature(registry.load("models", name)).parameters
    filled = dict(config)
    if "num_classes" in params:
        filled.setdefault("num_classes", ds.num_classes)
    if "in_channels" in params:
        filled.setdefault("in_channels", ds.input_shape[0])
    if "in_features" in params:
        filled.setdefault("in_features", math.prod(ds.input_shape))
    for key, value in ds.info.items():  # e.g. a text dataset's vocab_size
        if key in params:
            filled.setdefault(key, value)
    return filled


def learning_rate(step: int, total: int, recipe: Recipe) -> float:
    t = recipe.train
    if t.warmup_steps and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    progress = (step - t.warmup_steps) / max(total - t.warmup_steps, 1)
    return t.lr * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    t = recipe.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def build_from_recipe(recipe: Recipe, ds: Dataset) -> tuple[Network, dict[str, Any]]:
    config = fill_shape_defaults(recipe.model.name, recipe.model.config, ds)
    model = build_network(
        recipe.model.name,
        config,
        kind=recipe.model.kind,
        neuron=recipe.neuron.model_dump(),
        encoding=recipe.encoding.type,
        T=recipe.encoding.T,
        activation=recipe.model.activation_spec(),
    )
    return model, config


def start_from(model: Network, bundle_path: Path) -> None:
    """Load the weights of an existing bundle (train.init) into the freshly built model."""
    from snnctl.artifact import load_bundle

    source = load_bundle(bundle_path)
    if source.manifest.get("logic_gated"):
        raise UserError("cannot start training from a logic-gated bundle (its float weights are gone)",
                        where=str(bundle_path), hint="start from the float bundle it was made from")
    try:
        model.load_state_dict(source.model.state_dict(), strict=True)
    except RuntimeError:
        raise UserError(
            "the bundle's weights do not fit the recipe's model", where=str(bundle_path),
            hint="give train.init a bundle trained with the same [model] section",
        ) from None


def require_logic_gated_ok(recipe: Recipe) -> None:
    if recipe.model.kind != "snn":
        raise UserError(
            "logic-gated models are SNNs: the weight scale is folded into each neuron's threshold",
            where="[model] logic_gated", hint="set model.kind = 'snn'",
        )
    if recipe.neuron.type not in ("lif", "if", "plif", "graded"):
        raise UserError(
            f"neuron '{recipe.neuron.type}' adapts its threshold, so a weight scale cannot be folded into it",
            where="[neuron] type", hint="use lif, if, plif or graded",
        )


class Augment:
    """Noise augmentation from [data.augment]: a level per example, drawn from a generator seeded by
    (seed, step), so a resumed run sees the same noise."""

    def __init__(self, spec: AugmentSection, device: str) -> None:
        self.spec = spec
        self.noise = noise_model(spec.noise)
        self.rng = torch.Generator(device=device)

    def check(self, model: Network, x: torch.Tensor) -> None:
        with torch.no_grad(), torch.random.fork_rng():
            noisy_logits(model, x, self.noise, torch.full((len(x),), self.spec.range[1]), self.rng)

    def upper(self, step: int, total: int) -> float:
        lo, hi = self.spec.range
        ramp_steps = self.spec.ramp * total
        return hi if ramp_steps <= 0 else lo + (hi - lo) * min(1.0, step / ramp_steps)

    def logits(self, model: Network, x: torch.Tensor, step: int, total: int, seed: int) -> torch.Tensor:
        self.rng.manual_seed(seed * 1_000_033 + step + 7)
        lo = self.spec.range[0]
        level = lo + torch.rand(len(x), generator=self.rng, device=x.device) * (self.upper(step, total) - lo)
        return noisy_logits(model, x, self.noise, level, self.rng)


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _rewind_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint, so a resumed log equals an uninterrupted one."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def start_or_resume(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, fingerprint: str,
                    resume: bool) -> dict[str, Any]:
    """A fresh run: an empty metrics log, no stale checkpoint. A resumed one: model, optimizer and RNG
    restored from the checkpoint of the same recipe, the log rewound to it; returns its info."""
    ckpt_dir, metrics_path = out / "checkpoints", out / METRICS
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
        (ckpt_dir / CHECKPOINT).unlink(missing_ok=True)
        return {"step": 0}
    info = load_checkpoint(ckpt_dir, model, optimizer)
    if info.get("fingerprint") != fingerprint:
        raise UserError(
            "the checkpoint was made by a different recipe",
            where=str(ckpt_dir / CHECKPOINT),
            hint="resume with the same recipe and --set values, or train into a new --out",
        )
    _rewind_metrics(metrics_path, int(info["step"]))
    return info


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   grad_clip: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def train(
    recipe: Recipe,
    out: Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train the recipe's model, checkpointing into `out`; finish by writing a bundle to `out`.
    A recipe with an [lm] section trains a language model (snnctl.lm.trainer)."""
    if recipe.lm is not None:
        from snnctl.lm.trainer import train_lm

        return train_lm(recipe, out, resume=resume, device=device, on_step=on_step)
    t = recipe.train
    ds = load_dataset(
        recipe.data.name, test_fraction=recipe.data.test_fraction, split_seed=recipe.data.split_seed,
        **recipe.data.options,
    )
    if not isinstance(ds, Dataset):
        raise UserError(f"dataset '{recipe.data.name}' is a text corpus, not a labelled dataset",
                        where="[data] name", hint="add an [lm] section to train a language model on it")
    torch.manual_seed(t.seed)
    model, config = build_from_recipe(recipe, ds)
    if t.init:
        start_from(model, Path(t.init))
    if recipe.model.logic_gated:
        require_logic_gated_ok(recipe)
        make_ternary(model.body)
    augment = Augment(recipe.data.augment, device) if recipe.data.augment else None
    if augment is not None:
        augment.check(model, ds.x_train[:8])  # fail on data the noise model cannot take, before writing
    model.to(device)
    optimizer = make_optimizer(model, recipe)
    encoder_rng = torch.Generator(device=device)
    model.generator = encoder_rng

    out = Path(out)
    ckpt_dir = out / "checkpoints"
    metrics_path = out / METRICS
    fingerprint = recipe_fingerprint(recipe)
    n = len(ds.y_train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    total = t.epochs * steps_per_epoch
    step = int(start_or_resume(out, model, optimizer, fingerprint, resume)["step"])

    x_train, y_train = ds.x_train.to(device), ds.y_train.to(device)
    started = time.perf_counter()
    order_epoch, order = -1, torch.empty(0, dtype=torch.long)
    window_loss, window_correct, window_seen = 0.0, 0, 0
    model.train()
    with metrics_path.open("a") as log:
        while step < total:
            epoch, i = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, _epoch_order(t.seed, epoch, n).to(device)
            idx = order[i * t.batch_size : (i + 1) * t.batch_size]
            lr = learning_rate(step, total, recipe)
            for group in optimizer.param_groups:
                group["lr"] = lr
            encoder_rng.manual_seed(t.seed * 1_000_003 + step)

            if augment is None:
                logits = model(x_train[idx])
            else:
                logits = augment.logits(model, x_train[idx], step, total, t.seed)
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=t.label_smoothing)
            optimizer_step(model, optimizer, loss, t.grad_clip)
            step += 1

            window_loss += loss.item() * len(idx)
            window_correct += int((logits.argmax(-1) == y_train[idx]).sum())
            window_seen += len(idx)
            info_line: dict[str, Any] = {}
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if step % t.log_every == 0 or end_of_epoch:
                info_line = {
                    "step": step, "epoch": epoch + 1, "lr": lr,
                    "loss": window_loss / window_seen, "train_acc": window_correct / window_seen,
                }
                window_loss, window_correct, window_seen = 0.0, 0, 0
            if end_of_epoch:
                info_line["test_acc"] = accuracy(model, ds.x_test.to(device), ds.y_test.to(device))
            if info_line:
                log.write(json.dumps(info_line) + "\n")
                log.flush()
            if step % t.checkpoint_every == 0 or step == total:
                save_checkpoint(ckpt_dir, model, optimizer, {"step": step, "fingerprint": fingerprint})
            if on_step is not None:
                on_step(step, total, info_line)

    wall = time.perf_counter() - started
    extra: dict[str, Any] = {}
    if recipe.model.logic_gated:
        extra["test_acc_before_packing"] = accuracy(model, ds.x_test.to(device), ds.y_test.to(device))
        model.cpu()
        model.readout_scale = to_logic_gated(model.body)
        model.to(device)
    test_acc = accuracy(model, ds.x_test.to(device), ds.y_test.to(device))
    metrics = {
        "test_acc": test_acc,
        **extra,
        "test_samples": len(ds.y_test),
        "steps": total,
        "epochs": t.epochs,
        "train_wall_s": round(wall, 3),
        "resumed": resume,
    }
    model.cpu()
    model.generator = None
    spiking = recipe.model.kind == "snn"
    manifest = make_manifest(
        zoo_name=recipe.model.name,
        zoo_config=config,
        kind=recipe.model.kind,
        neuron=recipe.neuron.model_dump() if spiking else None,
        T=recipe.encoding.T,
        encoding=recipe.encoding.type,
        recipe=recipe.model_dump(mode="json"),
        seed=t.seed,
        metrics={"dataset": ds.name, **metrics},
        logic_gated=recipe.model.logic_gated,
        activation=recipe.model.activation_spec() if not spiking else None,
    )
    save_bundle(out, model, manifest)
    return TrainResult(out=out, metrics=metrics)
