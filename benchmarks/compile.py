"""Compile benchmark: every target on the digits SNN (accuracy float vs Loihi fixed point, round-trip
figures, lava bit-exactness) and the compile time of resnet18-sized SNNs per target.

1. Trains the `digits-loihi-snn` recipe (the digits SNN with Loihi's two requirements: reset to zero,
   average pooling) and compiles it to nir, onnx, lava and loihi with the whole digits test split.
   The spine's own `digits-snn` (max pooling, reset by subtraction) is compiled too, to record what
   each target says about it.
2. Compile time, random weights, T=4, 3x32x32 input, 8 round-trip examples:
   - resnet18 (small stem, width 64, 11.2 M weights, residual adds) for nir and onnx;
   - a plain chain of resnet18's 16 convolutions (same widths and strides, no shortcuts; NIR graph
     built by hand and imported) for loihi, since Lava/Loihi chains have no residual adds. Lava's
     own run is skipped at that size (its Dense processes would need the convs unrolled).

    python benchmarks/compile.py --save benchmarks/results/compile.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.artifact import make_manifest, save_bundle
from snnctl.backends.extract import ExportOptions
from snnctl.backends.nir_target import IMPORT_NEURON, network_from_nir
from snnctl.backends.targets import CompileOptions, compile_lava, compile_loihi, compile_nir, compile_onnx
from snnctl.config import load_recipe
from snnctl.errors import UserError
from snnctl.training.trainer import train
from snnctl.zoo import build_network

TARGETS = {"nir": compile_nir, "onnx": compile_onnx, "lava": compile_lava, "loihi": compile_loihi}


def digits(work: Path, lava_samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for recipe_name in ("digits-loihi-snn", "digits-snn"):
        run = work / recipe_name
        train(load_recipe(recipe_name, []), run)
        rows: dict[str, Any] = {}
        for target, fn in TARGETS.items():
            options = CompileOptions(dataset="digits", samples=10_000, lava_samples=lava_samples)
            try:
                s = fn(run, work / f"{recipe_name}-{target}", options)
            except UserError as err:
                rows[target] = {"refused": f"{err.what}" + (f" ({err.hint})" if err.hint else "")}
                continue
            rt = s["roundtrip"]
            rows[target] = {"compile_s": s["compile_s"], "samples": rt["samples"],
                            "spike_agreement": rt["spike_agreement"], "output_max_abs_diff": rt["output_max_abs_diff"],
                            "accuracy": rt.get("accuracy"), "warnings": s["warnings"]}
            if target == "loihi":
                rows[target].update(lava_fixed_pt=rt["lava_fixed_pt"], netx_file_identical=rt["netx_file_identical"],
                                    resources={k: s["resources"][k] for k in ("neurons", "synapses", "cores")},
                                    per_layer_mismatch={x["layer"]: x["mismatch"] for x in rt["layers"]})
        out[recipe_name] = rows
    return out


def plain_resnet18_chain(width: int = 64, classes: int = 10) -> nir.NIRGraph:
    """resnet18's 16 convolutions (3x3, widths/strides of its stages) + stem, each followed by an LIF
    that resets to zero, then global average pooling and a linear readout; no shortcuts."""
    rng = np.random.default_rng(0)
    layers: list[tuple[int, int, int]] = [(3, width, 1)]
    c_in = width
    for stage, c in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for i in range(4):
            layers.append((c_in, c, 2 if stage > 0 and i == 0 else 1))
            c_in = c
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([3, 32, 32])})}
    edges, prev, size = [], "input", 32
    for k, (ci, co, stride) in enumerate(layers):
        w = rng.normal(0, (2.0 / (ci * 9)) ** 0.5, (co, ci, 3, 3)).astype(np.float32)
        nodes[f"conv{k}"] = nir.Conv2d(input_shape=(size, size), weight=w, stride=(stride, stride), padding=(1, 1),
                                       dilation=(1, 1), groups=1, bias=np.zeros(co, np.float32))
        size = (size + 2 - 3) // stride + 1
        shape = (co, size, size)
        nodes[f"lif{k}"] = nir.LIF(tau=np.full(shape, 2e-4), r=np.full(shape, 2.0), v_leak=np.zeros(shape),
                                   v_threshold=np.full(shape, 0.5), v_reset=np.zeros(shape))
        edges += [(prev, f"conv{k}"), (f"conv{k}", f"lif{k}")]
        prev = f"lif{k}"
    c = layers[-1][1]
    nodes["pool"] = nir.AvgPool2d(kernel_size=np.array([size, size]), stride=np.array([size, size]),
                                  padding=np.array([0, 0]))
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0)
    nodes["fc"] = nir.Affine(weight=rng.normal(0, c ** -0.5, (classes, c)).astype(np.float32),
                             bias=np.zeros(classes, np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([classes])})
    edges += [(prev, "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def compile_times(work: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    config = {"num_classes": 10, "in_channels": 3, "stem_type": "small", "width": 64}
    neuron = {"type": "lif", "tau": 2.0, "reset": "zero", "threshold": 0.5}
    resnet = build_network("resnet18", config, kind="snn", neuron=neuron, T=4).eval()
    save_bundle(work / "resnet18", resnet, make_manifest(zoo_name="resnet18", zoo_config=config, kind="snn",
                                                         neuron=neuron, T=4, encoding="direct"))
    chain, spec = network_from_nir(plain_resnet18_chain(), ExportOptions(), T=4)
    save_bundle(work / "chain", chain, make_manifest(zoo_name="nir", zoo_config=spec, kind="snn",
                                                     neuron=IMPORT_NEURON, T=4, encoding="direct"))
    rows: dict[str, Any] = {
        "models": {"resnet18": f"{sum(p.numel() for p in resnet.parameters()) / 1e6:.2f} M weights, residual",
                   "resnet18-plain-chain": f"{sum(p.numel() for p in chain.parameters()) / 1e6:.2f} M weights"}}
    for model, targets in (("resnet18", ("nir", "onnx", "loihi")), ("chain", ("nir", "onnx", "lava", "loihi"))):
        for target in targets:
            options = CompileOptions(input_shape=(3, 32, 32), samples=8, lava_samples=1 if target == "lava" else 0)
            started = time.perf_counter()
            key = f"{'resnet18' if model == 'resnet18' else 'resnet18-plain-chain'}/{target}"
            try:
                s = TARGETS[target](work / model, work / f"{model}-{target}", options)
            except UserError as err:
                rows[key] = {"refused": err.what, "after_s": round(time.perf_counter() - started, 2)}
                continue
            rows[key] = {"wall_s": round(time.perf_counter() - started, 2),
                         "spike_agreement": s["roundtrip"]["spike_agreement"]}
            if "resources" in s:
                rows[key]["resources"] = {k: s["resources"][k] for k in ("neurons", "synapses", "cores", "chips")}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--lava-samples", type=int, default=360, help="digits examples run in lava (360 = all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                  "digits": digits(work, args.lava_samples), "compile_time": compile_times(work)}
    if not emit(result, args.save, args.json):
        for name, rows in result["digits"].items():
            for target, row in rows.items():
                print(name, target, row)
        for key, row in result["compile_time"].items():
            print(key, row)


if __name__ == "__main__":
    main()
