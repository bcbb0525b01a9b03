"""Data benchmark (issue 16): the cost of `snnctl data prepare` on Fashion-MNIST, and training
throughput from a prepared dataset against the built-in in-memory path.

1. `snnctl data prepare ../shared/data/fashion_mnist` (60k + 10k IDX images) in a fresh process,
   `--repeats` times: wall time (median) and the child's peak resident memory (ru_maxrss).
2. Loading the prepared folder into tensors (`load_dataset(DIR)`), median of `--repeats`.
3. Throughput: the digits-snn recipe trained from the built-in `digits` and from the same split
   written as IDX files and prepared, alternately, `--repeats` times each; samples/s from each run's
   own train_wall_s. Bar: the prepared path at most 10 % slower (median ratio).

    python benchmarks/data.py --save benchmarks/results/data.json
"""

from __future__ import annotations

import argparse
import gzip
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.config import load_recipe
from snnctl.data import load_dataset
from snnctl.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion_mnist"


def prepare_once(source: Path, out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `snnctl data prepare` in its own process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snnctl", "data", "prepare", str(source), "--out", str(out), "--json"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far: one per call here
    return wall, peak


def write_idx(folder: Path, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """One split as MNIST-style IDX files (uint8 images [N, H, W], uint8 labels)."""
    images = (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    n, h, w = images.shape
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 0x803, n, h, w) + images.tobytes())
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 0x801, n) + y.numpy().astype(np.uint8).tobytes())


def samples_per_s(data_name: str, out: Path, epochs: int) -> float:
    recipe = load_recipe("digits-snn", [f'data.name="{data_name}"', f"train.epochs={epochs}"])
    metrics = train(recipe, out).metrics
    return metrics["steps"] * recipe.train.batch_size / metrics["train_wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="digits-snn epochs per throughput run")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        prep = [prepare_once(FASHION, tmp / f"fm{i}") for i in range(args.repeats)]
        loads = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fm = load_dataset(str(tmp / "fm0"))
            loads.append(time.perf_counter() - started)

        digits = load_dataset("digits")
        (tmp / "digits-idx").mkdir()
        write_idx(tmp / "digits-idx", "train", digits.x_train, digits.y_train)
        write_idx(tmp / "digits-idx", "t10k", digits.x_test, digits.y_test)
        prepare_once(tmp / "digits-idx", tmp / "digits-prepared")
        builtin, prepared = [], []
        for i in range(args.repeats):  # alternate, so drift on a shared machine hits both alike
            builtin.append(samples_per_s("digits", tmp / f"b{i}", args.epochs))
            prepared.append(samples_per_s(str(tmp / "digits-prepared"), tmp / f"p{i}", args.epochs))

    ratio = statistics.median(p / b for p, b in zip(prepared, builtin, strict=True))
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.python_version()}",
        "prepare_fashion_mnist": {
            "examples": len(fm.y_train) + len(fm.y_test), "wall_s": [round(w, 2) for w, _ in prep],
            "median_wall_s": round(statistics.median(w for w, _ in prep), 2),
            "peak_rss_mib": round(max(p for _, p in prep) / 1024, 1),
        },
        "load_prepared_fashion_mnist_s": round(statistics.median(loads), 3),
        "throughput_digits_snn": {
            "epochs": args.epochs, "builtin_samples_per_s": [round(s, 1) for s in builtin],
            "prepared_samples_per_s": [round(s, 1) for s in prepared],
            "median_ratio_prepared_over_builtin": round(ratio, 3),
            "bar": "prepared at most 10 % slower (ratio >= 0.90)", "meets_bar": ratio >= 0.90,
        },
    }
    if not emit(result, args.save, args.json):
        print(result)


if __name__ == "__main__":
    main()
