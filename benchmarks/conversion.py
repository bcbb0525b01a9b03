"""ANN-to-SNN conversion benchmark: snnctl against SpikingJelly's ann2snn on the same trained ANNs.

For each ANN trained by snnctl (digits CNN, SST-2 text MLP, resnet18 with the small stem on digits
resized to 32x32, the Fashion-MNIST CNN and its QCFS twin) it records the ANN's test accuracy and, for
T = 1..32:
- snnctl `convert` as shipped (rate: per-channel 99.9th-percentile thresholds, v0 = theta/2, soft reset,
  differenced max pool; method qcfs for the QCFS ANN);
- snnctl `convert` + `calibrate` (threshold, bias, potential, delay stages), calibrated separately
  at each T on 512 training examples (a bundle is calibrated for the T it will run at);
- on the CNNs, the same with signed IF neurons (`--signed`), calibrated at T = 4 and 8;
- SpikingJelly 2.0.0 FXConverter with RateCodingRecipe(99.9%, channel-wise, half threshold, max pool
  before the neuron) and with LocalThresholdBalancingRecipe, run step by step and summed, on the same
  ANN and the same 512 calibration examples (benchmark-only extra: `make bench-conversion`).
Also the wall time of converting resnet18 (width 64, small stem, 32x32 input) with 512 samples.
`--models a,b` measures some models and keeps the others' saved entries (each says when it was measured).

    python benchmarks/conversion.py --save benchmarks/results/conversion.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.artifact import load_bundle
from snnctl.config import load_recipe
from snnctl.conversion import convert as C
from snnctl.conversion.bundle import calibration_split
from snnctl.data import load_as_recorded
from snnctl.training.trainer import train

TS = (1, 2, 4, 8, 16, 32)
SAMPLES = 512

# name -> (recipe, --set overrides, dataset, convert options beyond the defaults, T's to also measure with
# signed IF neurons, calibrated). The defaults are those of `snnctl convert`: rate, maxpool=diff, unsigned.
MODELS: dict[str, tuple[str, list[str], str, dict[str, Any], tuple[int, ...]]] = {
    "digits-cnn": ("digits-ann", [], "digits", {}, (4, 8)),
    "sst2-textmlp": ("sst2-ann", [], "sst2", {}, ()),
    "digits32-resnet18": ("digits-ann", [
        "model.name=resnet18", 'model.config={stem_type = "small", width = 16}', "data.options={size = 32}",
        "train.epochs=6", "train.batch_size=64", "train.lr=2e-3",
    ], "digits", {}, ()),
    "fmnist-cnn": ("fmnist-ann", [], "fashion-mnist", {}, (4, 8)),
    "fmnist-qcfs": ("fmnist-qcfs-ann", [], "fashion-mnist", {"method": "qcfs"}, ()),
}


def calibrated(bundle: Path, dataset: str, T: int, out: Path) -> dict[str, Any]:
    """`snnctl calibrate` at one T (a bundle is calibrated for the T it will run at)."""
    from snnctl.conversion import pipeline as P

    started = time.perf_counter()
    job = P.CalibrateJob(bundle=bundle, dataset=dataset, samples=SAMPLES, T=T, out=out)
    cal = P.calibrate_bundle(P.plan_calibration(job))
    return {
        "acc": cal.metrics["test_acc"],
        "calibrate_s": round(time.perf_counter() - started, 2),
        "stages": [{k: s[k] for k in ("stage", "acc_before", "acc_after", "kept")} for s in cal.stages],
        "acc_by_T": {int(k): v for k, v in cal.metrics["acc_by_T"].items()},
    }


def ours(ann_path: Path, dataset: str, runs: Path, options: dict[str, Any], calibrate_at: tuple[int, ...] = TS,
         ) -> dict[str, Any]:
    """snnctl's own pipelines, as `snnctl convert` and `snnctl calibrate` run them."""
    from snnctl.conversion import pipeline as P

    converted = P.convert_model(P.ConvertJob(model=str(ann_path), dataset=dataset, samples=SAMPLES,
                                             options=C.Options(T=8, **options), out=runs / "converted"))
    m = converted.metrics
    return {
        "options": options, "ann_acc_after_folding": m["ann_acc"], "convert_s": round(m["convert_s"], 2),
        "report": {k: len(v) for k, v in converted.report.as_dict().items()},
        "rate": {int(k): v for k, v in m["acc_by_T"].items()},
        "calibrated": {T: calibrated(converted.out, dataset, T, runs / f"cal-T{T}") for T in calibrate_at},
    }


@torch.no_grad()
def spikingjelly(ann_body: torch.nn.Module, ds: Any, calib_x: torch.Tensor, recipe: str) -> dict[int, float]:
    """SpikingJelly's converted model in its default single-step mode: T calls, outputs summed."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn import FXConverter, LocalThresholdBalancingRecipe, RateCodingRecipe

    loader = [calib_x[i : i + 128] for i in range(0, len(calib_x), 128)]
    if recipe == "rate":
        r = RateCodingRecipe(loader, mode="99.9%", channel_wise=True, half_threshold=True, pre_spike_maxpool=True)
    else:
        r = LocalThresholdBalancingRecipe(loader)
    snn = FXConverter(r, device="cpu").convert(copy.deepcopy(ann_body).eval()).eval()
    correct = {T: 0 for T in TS}
    for start in range(0, len(ds.x_test), 128):
        x, y = ds.x_test[start : start + 128], ds.y_test[start : start + 128]
        functional.reset_net(snn)
        total = 0
        for t in range(1, max(TS) + 1):
            total = total + snn(x)
            if t in correct:
                correct[t] += int((total.argmax(-1) == y).sum())
    return {T: c / len(ds.y_test) for T, c in correct.items()}


def resnet18_conversion_time() -> dict[str, Any]:
    """Wall time of `convert` for a full-width resnet18 (small stem, 32x32, 10 classes), 512 samples."""
    from snnctl.zoo import build_network

    torch.manual_seed(0)
    net = build_network("resnet18", {"stem_type": "small", "num_classes": 10, "in_channels": 1}, kind="ann")
    net.eval()
    x = torch.rand(SAMPLES, 1, 32, 32)
    started = time.perf_counter()
    _, report = C.convert(net.body, C.Options(), x)
    return {"model": "resnet18 width 64, small stem, 1x32x32 input", "calibration_samples": SAMPLES,
            "convert_s": round(time.perf_counter() - started, 2), "neurons": len(report.converted),
            "threads": torch.get_num_threads()}


def previous_results(save: Path | None) -> dict[str, Any]:
    """What an earlier run saved: its models are kept when this run measures only some (`--models`)."""
    return json.loads(save.read_text()) if save is not None and save.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-conversion"))
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-resnet-time", action="store_true", help="keep the saved resnet18 conversion time")
    args = parser.parse_args()
    torch.manual_seed(0)
    previous = previous_results(args.save)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "method": "test-split accuracy; calibration on 512 seeded training examples; SJ on the same ANN and data",
        "models": previous.get("models", {}),
    }
    if args.skip_resnet_time and "resnet18_conversion_time" in previous:  # kept in every save below
        results["resnet18_conversion_time"] = previous["resnet18_conversion_time"]
    for name in args.models.split(","):
        recipe_name, overrides, dataset, options, signed_at = MODELS[name]
        recipe = load_recipe(recipe_name, overrides)
        started = time.perf_counter()
        out = train(recipe, args.runs / name).out
        train_s = time.perf_counter() - started
        bundle = load_bundle(out)
        ds = load_as_recorded(dataset, bundle.manifest["recipe"]["data"])
        calib = calibration_split(ds, SAMPLES)
        entry: dict[str, Any] = {"ann_acc": bundle.manifest["metrics"]["test_acc"], "train_s": round(train_s, 1),
                                 "measured": time.strftime("%Y-%m-%d")}
        entry["snnctl"] = ours(out, dataset, args.runs / name, options)
        if signed_at:
            entry["snnctl_signed"] = ours(out, dataset, args.runs / f"{name}-signed", {**options, "signed": True},
                                          signed_at)
        for recipe_sj in ("rate", "ltb"):
            try:
                entry[f"spikingjelly_{recipe_sj}"] = spikingjelly(bundle.model.body, ds, calib[0], recipe_sj)
            except Exception as err:  # a peer failing on a model is a result too
                entry[f"spikingjelly_{recipe_sj}"] = f"failed: {type(err).__name__}: {str(err)[:200]}"
        results["models"][name] = entry
        print(f"{name}: done", file=sys.stderr)
        if args.save:  # each model as it finishes: a long run cut short keeps what it measured
            emit(results, args.save, False)
    if "resnet18_conversion_time" not in results:
        results["resnet18_conversion_time"] = resnet18_conversion_time()
    emit(results, args.save, args.json)


if __name__ == "__main__":
    main()
