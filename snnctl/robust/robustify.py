"""The pipeline behind `snnctl robustify`: fine-tune a bundle under a noise curriculum (optionally
logic-gated), then measure both against noise and record the curves in the new bundle.

Training is passed in (`Train`): the training loop imports the noise models, so this module must not
import the loop back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnctl.artifact import MANIFEST, Bundle, load_bundle, update_manifest
from snnctl.data import Dataset, load_as_recorded, require_classification
from snnctl.errors import UserError
from snnctl.paths import check_out
from snnctl.robust.evaluate import chance_level, curve_table, noise_curve
from snnctl.robust.noise import NoiseModel, noise_model, parse_range

LEVELS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
REPEATS = 3

# (recipe as data, where it came from for error messages, output folder, progress label) -> metrics
Train = Callable[[dict[str, Any], str, Path, str], dict[str, Any]]


@dataclass(frozen=True)
class RobustifyJob:
    bundle: Path
    dataset: str
    noise: str = "0:0.45"
    noise_model: str = "bitflip"
    logic_gated: bool = False
    epochs: int = 15
    lr: float = 1e-3
    ramp: float = 0.5
    out: Path | None = None


@dataclass
class RobustifyPlan:
    """A robustify run whose inputs are all checked; `recipe` is the fine-tuning recipe, as data."""

    job: RobustifyJob
    source: Bundle
    ds: Dataset
    noise: NoiseModel
    range: tuple[float, float]
    recipe: dict[str, Any]
    out: Path

    @property
    def label(self) -> str:
        lo, hi = self.range
        gated = ", logic-gated" if self.job.logic_gated else ""
        return f"robustify {self.source.name} ({self.noise.name} {lo:g}..{hi:g}{gated})"


@dataclass
class RobustifyResult:
    out: Path
    noise_model: str
    range: tuple[float, float]
    logic_gated: bool
    metrics: dict[str, Any]
    chance: float
    curve: list[dict[str, Any]]
    dataset: str

    def summary(self) -> dict[str, Any]:
        """The JSON `snnctl robustify --json` prints."""
        return {"out": str(self.out), "noise_model": self.noise_model, "range": list(self.range),
                "logic_gated": self.logic_gated, "metrics": self.metrics, "chance": self.chance,
                "curve": self.curve}


def plan_robustify(job: RobustifyJob) -> RobustifyPlan:
    """Check the noise, the bundle, the data and --out, and derive the fine-tuning recipe."""
    lo, hi = parse_range(job.noise)
    spec = noise_model(job.noise_model)
    if spec.kind == "weights":
        raise UserError("weight noise is an evaluation model, not a training augmentation",
                        hint="evaluate it with `snnctl bench BUNDLE --noise ... --noise-model weight`")
    source = load_bundle(job.bundle)
    if source.manifest.get("logic_gated"):
        raise UserError("this bundle is already logic-gated; its float weights are gone", where=str(job.bundle),
                        hint="robustify the float bundle it came from")
    recipe_data = source.manifest.get("recipe")
    if not recipe_data:
        raise UserError("the bundle does not record the recipe it was trained with", where=str(job.bundle),
                        hint="robustify a bundle written by `snnctl train`")
    missing = [table for table in ("model", "data", "train") if not isinstance(recipe_data.get(table), dict)]
    if missing:  # the rest is checked when `train` validates the new recipe, before anything is written
        raise UserError(f"the recorded recipe has no [{missing[0]}] table", where=f"{job.bundle / MANIFEST} (recipe)",
                        hint="robustify a bundle written by `snnctl train`")
    out = check_out(job.out or job.bundle.with_name(job.bundle.name + "-robust"), source=job.bundle)
    data = copy.deepcopy(recipe_data)
    ds = require_classification(load_as_recorded(job.dataset, data["data"]), job.dataset)
    if data["data"]["name"] != job.dataset:
        data["data"] = {"name": job.dataset}
    data["name"] = f"{data.get('name') or source.name}-robust"
    data["model"]["logic_gated"] = job.logic_gated
    data["data"]["augment"] = {"noise": job.noise_model, "range": [lo, hi], "ramp": job.ramp}
    data["train"].update({"init": str(job.bundle), "epochs": job.epochs, "lr": job.lr, "warmup_steps": 0})
    return RobustifyPlan(job, source, ds, spec, (lo, hi), data, out)


def robustify(plan: RobustifyPlan, train: Train) -> RobustifyResult:
    """Fine-tune (through `train`), then evaluate original and robust model on the same noise draws."""
    job = plan.job
    metrics = train(plan.recipe, f"{job.bundle}/{MANIFEST} (recipe)", plan.out, plan.label)
    robust = load_bundle(plan.out)
    curves = {
        "original": noise_curve(plan.source.model, plan.ds, plan.noise, LEVELS, repeats=REPEATS),
        "robust": noise_curve(robust.model, plan.ds, plan.noise, LEVELS, repeats=REPEATS),
    }
    update_manifest(plan.out, {"parent": str(job.bundle), "robust": {
        "noise_model": job.noise_model, "range": list(plan.range), "ramp": job.ramp, "epochs": job.epochs,
        "logic_gated": job.logic_gated, "curve": curves["robust"], "parent_curve": curves["original"],
    }})
    return RobustifyResult(plan.out, job.noise_model, plan.range, job.logic_gated, metrics, chance_level(plan.ds),
                           curve_table(curves), plan.ds.name)
