"""Robustness benchmark: accuracy against bit-flip noise on binarised 8x8 digits or Fashion-MNIST.

Six models of the same MLP shape (digits 64-256-256-10, Fashion-MNIST 784-256-256-10), all trained by
snnctl's own commands in this run, once per seed (`train.seed`, which robustify inherits):
- plain ANN:          `train --recipe digits-bin-ann` (fmnist-bin-ann)
- float SNN:          `train --recipe digits-bin-snn` (fmnist-bin-snn; LIF, T=8)
- noise-trained ANN:  `robustify` of the plain ANN, the noise curriculum below, float weights
- ternary ANN:        `robustify --logic-gated` of the plain ANN, the same curriculum: ternary weights
- robust float SNN:   `robustify` of the float SNN, the same curriculum, float weights
- robust LG SNN:      `robustify --logic-gated` of the float SNN, the same curriculum: ternary weights,
                      no multiplications
On digits, beside them, a reference with no training (snnctl.robust.reference): the Bayes rule for
bit flips with the training split as the model of clean digits, to show how much accuracy there is to
get (on Fashion-MNIST its 10,000 x 60,000 Hamming distances per draw are left out).

Each model is evaluated at bit-flip rates 0, 0.05, ..., 0.5 on the test split with `--repeats` noise
draws per level (the same draws for every model and seed). The checks are made on the mean curve over
seeds: the robust LG SNN within 1 point of the noise-trained float ANN at every level below 0.5 (and,
the first bar set on digits, at least it), at least the ternary ANN at every level below 0.5, its clean
accuracy within 2 points of the float SNN, above the plain ANN at 0.05 to 0.45, and every model at
chance at 0.5 (a higher number would mean the evaluation leaks labels). The per-seed gap (robust LG
SNN - noise-trained ANN) is recorded too, and the robust float SNN shows how much of it the ternary
weights cost.

    python benchmarks/robustness.py [--dataset digits|fashion-mnist] [--epochs 100] [--train-epochs N]
        [--seeds 3] [--repeats 10] [--save FILE] [--plot PNG]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import emit

from snnctl.artifact import load_bundle
from snnctl.cli import run
from snnctl.data import Dataset
from snnctl.metrics.bench import dataset_for
from snnctl.robust.evaluate import chance_level, noise_curve, plot_curves
from snnctl.robust.noise import NOISE_MODELS
from snnctl.robust.reference import BitflipReference

LEVELS = [round(0.05 * i, 2) for i in range(11)]
REFERENCE = "Bayes reference"


def snnctl(*args: object) -> None:
    """Run one snnctl command; its own output goes to stderr, so --json output stays one document."""
    with contextlib.redirect_stdout(sys.stderr):
        code = run([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"snnctl {' '.join(map(str, args))} failed with exit code {code}")


# dataset -> (recipe prefix, the shape's description, whether the Bayes reference is affordable)
DATASETS = {"digits": ("digits-bin", "MLP 64-256-256-10", True),
            "fashion-mnist": ("fmnist-bin", "MLP 784-256-256-10", False)}


def train_seed(work: Path, dataset: str, seed: int, noise: str, epochs: int,
               train_epochs: int | None) -> dict[str, tuple[Path, float]]:
    """The six bundles of one seed: label -> (folder, wall seconds)."""
    prefix = DATASETS[dataset][0]
    sets = ["--set", f"train.seed={seed}"] + (["--set", f"train.epochs={train_epochs}"] if train_epochs else [])
    robustify = ["--dataset", dataset, "--noise", noise, "--epochs", epochs]
    steps = {
        "plain ANN": ("ann", ["train", "--recipe", f"{prefix}-ann", *sets]),
        "float SNN": ("snn", ["train", "--recipe", f"{prefix}-snn", *sets]),
        "noise-trained ANN": ("ann-noise", ["robustify", work / "ann", *robustify]),
        "ternary ANN": ("ann-lg", ["robustify", work / "ann", *robustify, "--logic-gated"]),
        "robust float SNN": ("snn-noise", ["robustify", work / "snn", *robustify]),
        "robust LG SNN": ("snn-lg", ["robustify", work / "snn", *robustify, "--logic-gated"]),
    }
    done = {}
    for label, (folder, cmd) in steps.items():
        started = time.perf_counter()
        snnctl(*cmd, "--out", work / folder, "--json")
        done[label] = (work / folder, round(time.perf_counter() - started, 1))
    return done


def mean_curve(curves: list[list[float]]) -> list[float]:
    return [sum(values) / len(values) for values in zip(*curves, strict=True)]


def seed_gaps(model: list[list[float]], peer: list[list[float]]) -> list[list[float]]:
    """model - peer at every level, seed by seed."""
    return [[m - p for m, p in zip(ms, ps, strict=True)] for ms, ps in zip(model, peer, strict=True)]


def check(acc: dict[str, list[float]], chance: float, samples: int) -> dict[str, bool]:
    """The bars, on the mean curves over seeds."""
    robust, noisy_ann, ternary = acc["robust LG SNN"], acc["noise-trained ANN"], acc["ternary ANN"]
    plain, snn = acc["plain ANN"], acc["float SNN"]
    half = LEVELS.index(0.5)
    below = range(half)
    return {
        "within_1_point_of_noise_trained_ann_at_every_level_below_0.5": all(
            robust[i] >= noisy_ann[i] - 0.01 for i in below),
        "at_least_noise_trained_ann_at_every_level_below_0.5": all(robust[i] >= noisy_ann[i] for i in below),
        "at_least_ternary_ann_at_every_level_below_0.5": all(robust[i] >= ternary[i] for i in below),
        "clean_within_2_points_of_float_snn": snn[0] - robust[0] <= 0.02,
        "above_plain_ann_at_every_level_0.05_to_0.45": all(robust[i] > plain[i] for i in range(1, half)),
        "chance_at_0.5_for_every_model": all(
            abs(acc[k][half] - chance) <= 1.96 * (chance * (1 - chance) / samples) ** 0.5 + 0.01 for k in acc
        ),
    }


def measure(args: argparse.Namespace, work: Path) -> tuple[dict, dict, dict, Dataset]:
    """Train every seed's bundles and measure each against the same noise draws."""
    noise = NOISE_MODELS["bitflip"]
    per_seed: dict[str, list[list[float]]] = {}
    wall: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    ds = None
    for seed in range(args.seeds):
        bundles = train_seed(work / f"seed{seed}", args.dataset, seed, args.noise, args.epochs, args.train_epochs)
        for label, (folder, seconds) in bundles.items():
            bundle = load_bundle(folder)
            ds = ds or dataset_for(bundle, args.dataset)
            rows = noise_curve(bundle.model, ds, noise, LEVELS, repeats=args.repeats)
            per_seed.setdefault(label, []).append([r["accuracy"] for r in rows])
            wall.setdefault(label, []).append(seconds)
            sizes[label] = bundle.size_bytes
    assert ds is not None
    return per_seed, wall, sizes, ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--epochs", type=int, default=100, help="robustify fine-tuning epochs")
    parser.add_argument("--train-epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    parser.add_argument("--noise", default="0:0.45")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="folder for the bundles (default: a temp dir)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="snnctl-robust-"))
    started = time.perf_counter()
    per_seed, wall, sizes, ds = measure(args, work)
    acc = {label: mean_curve(curves) for label, curves in per_seed.items()}
    if DATASETS[args.dataset][2]:
        reference = noise_curve(BitflipReference(ds), ds, NOISE_MODELS["bitflip"], LEVELS, repeats=args.repeats)
        acc[REFERENCE] = [r["accuracy"] for r in reference]
    chance = chance_level(ds)
    samples = args.repeats * len(ds.y_test) * args.seeds  # per model curve point (the reference: one seed)
    gaps = seed_gaps(per_seed["robust LG SNN"], per_seed["noise-trained ANN"])
    result = {
        "benchmark": f"bit-flip robustness on binarised {args.dataset}, {DATASETS[args.dataset][1]}",
        "machine": {"threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "noise_range": args.noise, "robustify_epochs": args.epochs, "train_epochs": args.train_epochs or "recipe",
        "seeds": args.seeds, "repeats": args.repeats, "test_samples": len(ds.y_test), "chance": chance,
        "wall_s": wall, "total_wall_s": round(time.perf_counter() - started, 1), "sizes_bytes": sizes,
        "levels": LEVELS, "accuracy": acc, "accuracy_per_seed": per_seed,
        "gap_lg_snn_minus_noise_ann": {
            "mean": mean_curve(gaps), "min": [min(g) for g in zip(*gaps, strict=True)],
            "max": [max(g) for g in zip(*gaps, strict=True)],
        },
        "gap_lg_snn_minus_ternary_ann_mean": mean_curve(seed_gaps(per_seed["robust LG SNN"], per_seed["ternary ANN"])),
        "gap_float_snn_minus_noise_ann_mean": mean_curve(
            seed_gaps(per_seed["robust float SNN"], per_seed["noise-trained ANN"])),
        "checks": check(acc, chance, samples),
    }
    report(result, args, chance)
    return 0


def report(result: dict, args: argparse.Namespace, chance: float) -> None:
    acc = result["accuracy"]
    if args.plot:
        curves = {label: [{"level": lv, "accuracy": a, "ci95": 0.0} for lv, a in zip(LEVELS, values, strict=True)]
                  for label, values in acc.items()}
        plot_curves(curves, "bit-flip", chance, args.plot)
    if emit(result, args.save, args.json):
        return
    print("level  " + "  ".join(f"{k:>18}" for k in acc) + "  gap LG-ANN (min..max)")
    for i, level in enumerate(LEVELS):
        gap = result["gap_lg_snn_minus_noise_ann"]
        print(f"{level:5.2f}  " + "  ".join(f"{acc[k][i]:18.4f}" for k in acc)
              + f"  {gap['mean'][i]:+.4f} ({gap['min'][i]:+.4f}..{gap['max'][i]:+.4f})")
    print(f"chance {chance:.3f}; wall {result['wall_s']}")
    for name, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())
