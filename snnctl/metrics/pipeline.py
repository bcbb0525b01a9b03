"""The pipeline behind `snnctl bench`: measure a bundle (and a baseline) on one dataset, optionally
against noise, every input checked before any measuring."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnctl.artifact import Bundle, load_bundle, write_atomic
from snnctl.data import Dataset
from snnctl.metrics import energy
from snnctl.metrics.bench import bench_bundle, check_compatible, dataset_for
from snnctl.paths import check_out
from snnctl.robust.noise import NoiseModel, noise_model, parse_levels


@dataclass(frozen=True)
class BenchJob:
    bundle: Path
    dataset: str
    baseline: Path | None = None
    latency_samples: int = 100
    batch_size: int = 256
    device: str = "cpu"
    noise: str | None = None  # levels, e.g. "0,0.1,0.2"
    noise_model: str | None = None  # default: bitflip for binary data, else salt_pepper
    noise_repeats: int = 5
    out: Path | None = None  # folder for noise.json / noise.png (default: the bundle)


@dataclass
class BenchPlan:
    job: BenchJob
    bundles: list[Bundle]
    datasets: list[Dataset]
    noise: tuple[NoiseModel, list[float]] | None


def default_noise_model(ds: Dataset) -> str:
    """Bit flips for binary inputs, salt-and-pepper otherwise."""
    binary = bool(((ds.x_test == 0) | (ds.x_test == 1)).all())
    return "bitflip" if binary else "salt_pepper"


def plan_bench(job: BenchJob) -> BenchPlan:
    """Load every bundle and dataset and parse the noise plan: all input checked before any work."""
    bundles = [load_bundle(job.bundle)] + ([load_bundle(job.baseline)] if job.baseline else [])
    datasets = [dataset_for(b, job.dataset) for b in bundles]
    for b, ds in zip(bundles, datasets, strict=True):
        check_compatible(b.model, ds, str(b.path))
    noise = None
    if job.noise:
        check_out(job.out or job.bundle)
        levels = parse_levels(job.noise)
        noise = (noise_model(job.noise_model or default_noise_model(datasets[0])), levels)
    return BenchPlan(job, bundles, datasets, noise)


def run_bench(plan: BenchPlan, on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The bench report (the JSON `snnctl bench --json` prints): model, baseline, energy constants,
    and the noise curves when asked for. `on_start` hears what is being measured."""
    job = plan.job
    results = []
    for b, ds in zip(plan.bundles, plan.datasets, strict=True):
        if on_start is not None:
            on_start(f"benchmarking {b.path} ...")
        results.append(bench_bundle(b, ds, device=job.device, latency_samples=job.latency_samples,
                                    batch_size=job.batch_size))
    report: dict[str, Any] = {"model": results[0], "baseline": results[1] if job.baseline else None,
                              "energy_constants": energy.describe(),
                              "int8_constants": energy.describe_int8()}
    if plan.noise is not None:
        report["noise"] = noise_report(plan, job.out or job.bundle, on_start)
    return report


def noise_report(plan: BenchPlan, out: Path, on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Accuracy against noise for each bundle (same draws), written to OUT/noise.json and noise.png."""
    from snnctl.robust.evaluate import chance_level, curve_table, noise_curve, plot_curves

    if plan.noise is None:
        raise ValueError("noise_report needs a plan with noise levels")
    noise, levels = plan.noise
    curves = {}
    for role, b, ds in zip(("model", "baseline"), plan.bundles, plan.datasets, strict=False):
        if on_start is not None:
            on_start(f"noise curve of {b.path} ({noise.name}) ...")
        name = Path(b.path).name
        curves[name if name not in curves else f"{name} ({role})"] = noise_curve(
            b.model, ds, noise, levels, repeats=plan.job.noise_repeats
        )
    chance = chance_level(plan.datasets[0])
    out.mkdir(parents=True, exist_ok=True)
    result = {"noise_model": noise.name, "repeats": plan.job.noise_repeats, "chance": chance, "curves": curves,
              "table": curve_table(curves), "plot": str(out / "noise.png"), "json": str(out / "noise.json")}
    plot_curves(curves, noise.name, chance, out / "noise.png")
    write_atomic(out / "noise.json", (json.dumps(result, indent=2) + "\n").encode())
    return result
