"""Accuracy against noise level, and the PNG plot of the curves.

Every level is evaluated on the whole test split `repeats` times with fresh noise draws from a
generator seeded by (seed, level index, repeat): the same draws for every model compared in one run,
and none shared with training. The spread is the 95 % interval of the mean over all evaluated samples.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from snnctl.data import Dataset
from snnctl.robust.noise import NoiseModel, noisy_logits


@torch.no_grad()
def noise_curve(
    model: torch.nn.Module,
    ds: Dataset,
    noise: NoiseModel,
    levels: list[float],
    *,
    repeats: int = 5,
    seed: int = 1234,
    batch_size: int = 512,
) -> list[dict[str, float]]:
    model.eval()
    x, y = ds.x_test, ds.y_test
    rows = []
    for i, level in enumerate(levels):
        correct = 0
        for r in range(repeats):
            g = torch.Generator().manual_seed(seed * 7919 + i * 104_729 + r)
            if hasattr(model, "generator"):
                model.generator = torch.Generator().manual_seed(seed + i * 31 + r)  # stochastic encoders
            for start in range(0, len(x), batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                logits = noisy_logits(model, xb, noise, torch.full((len(xb),), level), g)
                correct += int((logits.argmax(-1) == yb).sum())
        n = repeats * len(y)
        acc = correct / n
        rows.append({"level": level, "accuracy": acc, "ci95": 1.96 * math.sqrt(acc * (1 - acc) / n), "samples": n})
    if hasattr(model, "generator"):
        model.generator = None
    return rows


def chance_level(ds: Dataset) -> float:
    """Accuracy of always answering the most frequent test class: what no-information input gives."""
    counts = torch.bincount(ds.y_test, minlength=ds.num_classes)
    return float(counts.max()) / len(ds.y_test)


def plot_curves(curves: dict[str, list[dict[str, float]]], noise: str, chance: float, path: Path) -> Path:
    """Write a PNG of accuracy against noise level, one line per model, with the chance level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, rows in curves.items():
        levels = [r["level"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        err = [r["ci95"] for r in rows]
        ax.errorbar(levels, acc, yerr=err, marker="o", capsize=3, label=label)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel(f"{noise} noise level")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def curve_table(curves: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of level -> accuracy per model, for printing and JSON."""
    names = list(curves)
    levels = [r["level"] for r in curves[names[0]]]
    return [{"level": lv, **{n: curves[n][i]["accuracy"] for n in names}} for i, lv in enumerate(levels)]
