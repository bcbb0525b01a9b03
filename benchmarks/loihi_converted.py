"""Converted SNNs on Loihi 2: accuracy of the fixed-point network against the PyTorch SNN it came from.

The path a user takes, through the CLI: `snnctl train` an ANN, `snnctl convert` (rate method),
`snnctl calibrate`, then `snnctl compile --target loihi` on the whole digits test split. Two ANNs:
- digits CNN with average pooling (Loihi has no max pooling), T = 8;
- resnet18 with the small stem (width 16) on digits resized to 32x32, residual adds included, T = 16.
Recorded per model: ANN, PyTorch SNN and Loihi fixed-point accuracy, spike agreement per layer, the
lava cross-check (lava's CPU models hold synapses as dense matrices, so only the CNN is small enough),
the Loihi 2 resource estimate and the compile time.

    python benchmarks/loihi_converted.py --save benchmarks/results/loihi_converted.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.cli import run

MODELS: dict[str, tuple[list[str], int]] = {
    "digits-cnn-avg": (["--set", 'model.config={channels = [16, 32, 64], pool = "avg"}'], 8),
    "digits32-resnet18": (["--set", "model.name=resnet18", "--set", 'model.config={stem_type = "small", width = 16}',
                           "--set", "data.options={size = 32}", "--set", "train.epochs=6", "--set", "train.lr=2e-3"],
                          16),
}


def cli_json(*args: str) -> dict[str, Any]:
    """Run `snnctl ARGS --json` in-process, capturing stdout."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run([*args, "--json"])
    if code != 0:
        raise SystemExit(f"snnctl {' '.join(args)} exited {code}")
    return json.loads(buffer.getvalue())


def measure(name: str, runs: Path, test_samples: int) -> dict[str, Any]:
    overrides, T = MODELS[name]
    ann, snn, calibrated = runs / f"{name}-ann", runs / f"{name}-snn", runs / f"{name}-calibrated"
    trained = cli_json("train", "--recipe", "digits-ann", *overrides, "--out", str(ann))
    converted = cli_json("convert", str(ann), "--dataset", "digits", "--T", str(T), "--out", str(snn))
    calib = cli_json("calibrate", str(snn), "--dataset", "digits", "--out", str(calibrated))
    started = time.perf_counter()
    compiled = cli_json("compile", str(calibrated), "--target", "loihi", "--dataset", "digits",
                        "--samples", str(test_samples), "--out", str(runs / f"{name}-loihi"))
    trip = compiled["roundtrip"]
    return {
        "T": T, "ann_acc": trained.get("test_acc"), "snn_acc_converted": converted.get("test_acc"),
        "snn_acc_calibrated": calib.get("test_acc"),
        "roundtrip_samples": trip["samples"], "accuracy_pytorch": trip["accuracy"]["reference"],
        "accuracy_loihi_fixed_point": trip["accuracy"]["compiled"],
        "loss_points": round(trip["accuracy"]["reference"] - trip["accuracy"]["compiled"], 2),
        "spike_agreement": trip["spike_agreement"],
        "per_layer_mismatch": {x["layer"]: round(x["mismatch"], 4) for x in trip["layers"]},
        "float_graph": trip["float_graph"], "network_files_identical": trip["network_files_identical"],
        "lava_fixed_pt": trip["lava_fixed_pt"], "warnings": compiled["warnings"],
        "resources": {k: compiled["resources"][k] for k in ("neurons", "synapses", "cores", "chips")},
        "compile_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-loihi-converted"))
    parser.add_argument("--samples", type=int, default=360, help="round-trip examples (digits has 360 in test)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.runs.exists():
        import shutil

        shutil.rmtree(args.runs)
    report = {
        "benchmark": "converted SNN -> Loihi 2 fixed point (snnctl compile --target loihi), digits test split",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "models": {name: measure(name, args.runs, args.samples) for name in args.models.split(",")},
    }
    if emit(report, args.save, args.json):
        return
    for name, r in report["models"].items():
        print(f"{name} (T={r['T']}): PyTorch {r['accuracy_pytorch']} %, Loihi fixed point "
              f"{r['accuracy_loihi_fixed_point']} % ({r['loss_points']:+} points lost), spike agreement "
              f"{r['spike_agreement']:.4f}, lava bit-exact: {r['lava_fixed_pt'].get('bit_exact', 'not run')}")


if __name__ == "__main__":
    main()
