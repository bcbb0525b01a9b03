"""Classification as a training task: surrogate-gradient BPTT for SNNs, plain backprop for ANNs.

The batch order of an epoch comes from a generator seeded by (seed, epoch), the encoder's and the
noise augmentation's randomness from (seed, step); the loop (snnctl.training.loop) does the rest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from snnctl.artifact import make_manifest, save_bundle
from snnctl.config import AugmentSection, ClassifierRecipe
from snnctl.data import Dataset, load_dataset
from snnctl.data.text import FILENAME as TOKENIZER_FILE
from snnctl.errors import UserError
from snnctl.metrics.accuracy import accuracy
from snnctl.metrics.bench import check_compatible
from snnctl.nn import kernels
from snnctl.robust.noise import noise_model, noisy_logits
from snnctl.robust.ternary import make_ternary, to_logic_gated
from snnctl.training.distill import fingerprint, make_distiller, record
from snnctl.training.distributed import current_world
from snnctl.training.loop import model_param_groups, unwrap
from snnctl.training.teacher import load_classifier_teacher
from snnctl.zoo import Network, build_network, fill_shape_defaults


def build_from_recipe(recipe: ClassifierRecipe, ds: Dataset) -> tuple[Network, dict[str, Any]]:
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

    def logits(self, model: torch.nn.Module, x: torch.Tensor, step: int, total: int, seed: int,
               part: int = 0) -> torch.Tensor:
        self.rng.manual_seed(seed * 1_000_033 + step + 7 + part * PART_STRIDE)
        lo = self.spec.range[0]
        level = lo + torch.rand(len(x), generator=self.rng, device=x.device) * (self.upper(step, total) - lo)
        return noisy_logits(model, x, self.noise, level, self.rng)


PART_STRIDE = 1_000_000_007  # a micro-batch's or process's random draws (`part`) apart from the others'


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def check_fits(model: Network, ds: Dataset) -> None:
    """A dataset whose shape or class count the recipe's model does not take is a user error naming both
    shapes, found on two examples before anything is written (RNG and running statistics untouched). It
    runs under the automatic kernel: whether a forced `--kernel` takes the model is `check_kernel_runs`'s."""
    forced = kernels.default()
    kernels.set_default("auto")
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            check_compatible(model, ds, where="[data] name", hint="pick a model config for this dataset's shape")
    finally:
        model.train()
        kernels.set_default(forced)


def check_kernel_runs(model: Network, x: torch.Tensor) -> None:
    """A kernel forced with --kernel may not take this model (per-neuron leaks, say): try one small
    forward pass, leaving every RNG and running statistic as it was, before anything is written."""
    if kernels.default() == "auto":
        return
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
    except ValueError as err:
        raise UserError(f"{err}", where="--kernel", hint="use --kernel auto (it picks the fastest that fits)") from None
    finally:
        model.train()


def distill_expect(ds: Dataset) -> dict[str, Any]:
    """What precomputed logits for this dataset must be: one row per training example, in order."""
    return {"task": "classify", "rows": len(ds.y_train), "classes": ds.num_classes,
            "fingerprint": fingerprint(ds.x_train, ds.y_train), "sample": ds.x_train[:2]}


class ClassifyTask:
    """Cross-entropy on a labelled dataset; one epoch is a pass over a seeded permutation of it."""

    recipe_schema = ClassifierRecipe

    def __init__(self, recipe: ClassifierRecipe, device: str) -> None:
        t = recipe.train
        self.recipe, self.device = recipe, device
        ds = load_dataset(recipe.data.name, test_fraction=recipe.data.test_fraction,
                          split_seed=recipe.data.split_seed, **recipe.data.options)
        if not isinstance(ds, Dataset):
            raise UserError(f"dataset '{recipe.data.name}' is a text corpus, not a labelled dataset",
                            where="[data] name", hint='set task = "lm" to train a language model on it')
        self.ds = ds
        torch.manual_seed(t.seed)
        model, self.config = build_from_recipe(recipe, ds)
        check_fits(model, ds)
        if t.init:
            start_from(model, Path(t.init))
        if recipe.model.logic_gated:
            make_ternary(model.body)
        if recipe.data.augment and current_world().size > 1:
            raise UserError("noise augmentation ([data.augment]) trains in one process only", where="[data.augment]",
                            hint="train it without --nproc (its spike and weight noise run outside DDP/FSDP)")
        self.augment = Augment(recipe.data.augment, device) if recipe.data.augment else None
        if self.augment is not None:
            self.augment.check(model, ds.x_train[:8])  # fail on data the noise model cannot take, before writing
        model.to(device)
        self.encoder_rng = torch.Generator(device=device)
        model.generator = self.encoder_rng
        check_kernel_runs(model, ds.x_train[:2].to(device))
        self.model: torch.nn.Module = model
        self.distiller = make_distiller(recipe.distill, distill_expect(ds), device, load_classifier_teacher)
        self.x_train, self.y_train = ds.x_train.to(device), ds.y_train.to(device)
        self.x_test, self.y_test = ds.x_test.to(device), ds.y_test.to(device)
        self.steps_per_epoch = math.ceil(len(ds.y_train) / t.batch_size)
        self.total_steps = t.epochs * self.steps_per_epoch
        self._order: tuple[int, torch.Tensor] = (-1, torch.empty(0, dtype=torch.long))

    def param_groups(self) -> list[dict[str, Any]]:
        return model_param_groups(self.model, self.recipe.train.weight_decay)

    def batch(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._order[0]:
            self._order = (epoch, _epoch_order(self.recipe.train.seed, epoch, len(self.y_train)).to(self.device))
        size = self.recipe.train.batch_size
        return self._order[1][i * size : (i + 1) * size]

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, step: int,
             part: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        t = self.recipe.train
        self.encoder_rng.manual_seed(t.seed * 1_000_003 + step + part * PART_STRIDE)
        x, y = self.x_train[batch], self.y_train[batch]
        noisy = self.augment
        logits = model(x) if noisy is None else noisy.logits(model, x, step, self.total_steps, t.seed, part)
        loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
        stats = {"loss": loss.item() * len(batch), "correct": int((logits.argmax(-1) == y).sum()), "seen": len(batch)}
        if self.distiller is not None:
            loss, kl = self.distiller.loss(logits, loss, rows=batch, inputs=x)
            if kl is not None:
                stats["kl"] = kl.item() * len(batch)
        return loss, stats

    def log_due(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0 or step == self.total_steps

    def summarise(self, step: int, window: dict[str, float]) -> dict[str, Any]:
        kl = {"kl": window["kl"] / window["seen"]} if "kl" in window else {}
        return {"epoch": (step - 1) // self.steps_per_epoch + 1, "loss": window["loss"] / window["seen"],
                "train_acc": window["correct"] / window["seen"], **kl}

    def eval_due(self, step: int) -> bool:
        return self.log_due(step)

    def evaluate(self, model: torch.nn.Module, step: int) -> dict[str, Any]:
        return {"test_acc": accuracy(model, self.x_test, self.y_test)}

    def finish(self, model: torch.nn.Module, out: Path, run: dict[str, Any]) -> dict[str, Any]:
        net = unwrap(model)
        extra: dict[str, Any] = {}
        if self.recipe.model.logic_gated:
            extra["test_acc_before_packing"] = accuracy(model, self.x_test, self.y_test)
            net.cpu()
            net.readout_scale = to_logic_gated(net.body)
            net.to(self.device)
        metrics = {
            "test_acc": accuracy(model, self.x_test, self.y_test),
            **extra,
            "test_samples": len(self.y_test),
            "steps": self.total_steps,
            "epochs": self.recipe.train.epochs,
            "train_wall_s": round(run["train_wall_s"], 3),
            "resumed": run["resumed"],
        }
        net.cpu()
        net.generator = None
        tokenizer = self.ds.info.get("tokenizer_json")
        files = {TOKENIZER_FILE: tokenizer.encode()} if tokenizer else None
        save_bundle(out, net, self.manifest(metrics), extra=files)
        return metrics

    def manifest(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The bundle's manifest: how to rebuild the classifier, and what it scored."""
        recipe = self.recipe
        spiking = recipe.model.kind == "snn"
        return make_manifest(
            zoo_name=recipe.model.name,
            zoo_config=self.config,
            kind=recipe.model.kind,
            neuron=recipe.neuron.model_dump() if spiking else None,
            T=recipe.encoding.T,
            encoding=recipe.encoding.type,
            recipe=recipe.model_dump(mode="json"),
            seed=recipe.train.seed,
            metrics={"dataset": self.ds.name, **metrics},
            logic_gated=recipe.model.logic_gated,
            activation=recipe.model.activation_spec() if not spiking else None,
            distilled=record(self.distiller),
            tokenizer=TOKENIZER_FILE if self.ds.info.get("tokenizer_json") else None,
        )
