"""Robustness benchmark: accuracy against bit-flip noise on binarised 8x8 digits.

Four models of the same MLP shape (64-256-256-10), all trained by snnctl's own commands in this run:
- plain ANN:          `train --recipe digits-bin-ann`
- float SNN:          `train --recipe digits-bin-snn` (LIF, T=8)
- noise-trained ANN:  `robustify` of the plain ANN, the noise curriculum below, float weights
- robust LG SNN:      `robustify --logic-gated` of the float SNN, the same curriculum: ternary weights,
                      no multiplications
Each is evaluated at bit-flip rates 0, 0.05, ..., 0.5 on the test split with `--repeats` noise draws
per level (the same draws for every model). Checks: the robust LG SNN's clean accuracy within 2
points of the float SNN; at every level >= the noise-trained ANN and above the plain ANN; at 0.5,
every model at chance (a higher number would mean the evaluation leaks labels).

    python benchmarks/robustness.py [--epochs 30] [--repeats 10] [--save benchmarks/results/robustness.json]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from common import emit

from snnctl.artifact import load_bundle
from snnctl.cli import run
from snnctl.metrics.bench import dataset_for
from snnctl.robust.evaluate import chance_level, noise_curve, plot_curves
from snnctl.robust.noise import NOISE_MODELS

LEVELS = [round(0.05 * i, 2) for i in range(11)]


def snnctl(*args: str) -> None:
    code = run([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"snnctl {' '.join(args)} failed with exit code {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="robustify fine-tuning epochs")
    parser.add_argument("--noise", default="0:0.45")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="folder for the bundles (default: a temp dir)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="snnctl-robust-"))
    times = {}
    steps = [
        ("plain ANN", ["train", "--recipe", "digits-bin-ann", "--out", work / "ann"]),
        ("float SNN", ["train", "--recipe", "digits-bin-snn", "--out", work / "snn"]),
        ("noise-trained ANN", ["robustify", work / "ann", "--dataset", "digits", "--noise", args.noise,
                               "--epochs", args.epochs, "--out", work / "ann-noise"]),
        ("robust LG SNN", ["robustify", work / "snn", "--dataset", "digits", "--noise", args.noise,
                           "--epochs", args.epochs, "--logic-gated", "--out", work / "snn-lg"]),
    ]
    for label, cmd in steps:
        started = time.perf_counter()
        snnctl(*cmd, "--json")
        times[label] = round(time.perf_counter() - started, 1)
    folders = {"plain ANN": "ann", "float SNN": "snn", "noise-trained ANN": "ann-noise", "robust LG SNN": "snn-lg"}
    bundles = {label: load_bundle(work / folder) for label, folder in folders.items()}
    ds = dataset_for(bundles["plain ANN"], "digits")
    noise = NOISE_MODELS["bitflip"]
    curves = {label: noise_curve(b.model, ds, noise, LEVELS, repeats=args.repeats) for label, b in bundles.items()}
    chance = chance_level(ds)

    acc = {label: [r["accuracy"] for r in rows] for label, rows in curves.items()}
    robust, noisy_ann, plain, snn = acc["robust LG SNN"], acc["noise-trained ANN"], acc["plain ANN"], acc["float SNN"]
    half = LEVELS.index(0.5)
    below_half = list(zip(robust[:half], noisy_ann[:half], plain[:half], strict=True))
    checks = {
        "clean_within_2_points_of_float_snn": snn[0] - robust[0] <= 0.02,
        "at_least_noise_trained_ann_at_every_level_below_0.5": all(r >= a for r, a, _ in below_half),
        "above_plain_ann_at_every_level_0.05_to_0.45": all(r > p for r, _, p in below_half[1:]),
        "chance_at_0.5_for_every_model": all(abs(acc[k][half] - chance) <= curves[k][half]["ci95"] + 0.01 for k in acc),
    }
    result = {
        "benchmark": "bit-flip robustness on binarised digits, MLP 64-256-256-10",
        "machine": {"threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "noise_range": args.noise, "robustify_epochs": args.epochs, "repeats": args.repeats,
        "test_samples": len(ds.y_test), "chance": chance, "wall_s": times,
        "sizes_bytes": {label: b.size_bytes for label, b in bundles.items()},
        "levels": LEVELS, "accuracy": acc, "curves": curves, "checks": checks,
    }
    if args.plot:
        plot_curves(curves, "bit-flip", chance, args.plot)
    if not emit(result, args.save, args.json):
        print("level  " + "  ".join(f"{k:>18}" for k in acc))
        for i, level in enumerate(LEVELS):
            print(f"{level:5.2f}  " + "  ".join(f"{acc[k][i]:18.4f}" for k in acc))
        print(f"chance {chance:.3f}; wall {times}")
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
