"""Event-driven vs dense synapses at batch 1: where the crossover firing rate lies.

For a Linear(N->N) layer fed one binary spike vector with a fraction `rate` of inputs active, time
- dense:        `nn.Linear` called as a module (PyTorch's matrix-vector product, all threads)
- event (C):    `EventLinear` called as a module, forced onto its native path: it adds the rows of
                W^T of the active inputs
- event (torch): the same in PyTorch ops (nonzero + index_select + sum), the fallback path
interleaved, median of `--repeats` calls each, under no_grad. The crossover for a size is the highest
rate measured below which the event path wins at every rate. The table `snnctl.nn.events.CROSSOVER`
uses is (weights, rate) per size, each rate lowered to the smallest crossover of any larger size so the
rule never grows past what a larger layer showed (a test keeps the code and this record equal).

    python benchmarks/event_driven.py [--n 128 256 384 512 768 1024 2048] [--json] [--save FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch
from common import emit
from torch.nn import functional as F

from snnctl.metrics.latency import time_calls
from snnctl.nn.events import EventLinear, event_linear_torch

RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)


def median_us(fn, repeats: int) -> float:
    return statistics.median(time_calls(fn, repeats, torch.device("cpu"), warmup=0)) * 1e6


def crossover(rows: list[dict], key: str) -> float:
    """Highest rate r such that the event path won at every measured rate <= r (0 if never)."""
    best = 0.0
    for row in sorted(rows, key=lambda r: r["rate"]):
        if row[key] >= row["dense_us"]:
            break
        best = row["rate"]
    return best


def table(sizes: list[dict]) -> list[list[float]]:
    """(weights, crossover) per size, each crossover capped by those of all larger sizes."""
    ordered = sorted(sizes, key=lambda s: s["weights"])
    return [[s["weights"], min(t["crossover_c"] for t in ordered[i:])] for i, s in enumerate(ordered)]


def measure(n: int, repeats: int) -> dict:
    torch.manual_seed(0)
    linear = torch.nn.Linear(n, n)
    layer = EventLinear(linear, crossover=1.0)
    weight_t = linear.weight.detach().t().contiguous()
    rows = []
    with torch.no_grad():
        for rate in RATES:
            x = torch.zeros(1, n)
            x[0, torch.randperm(n)[: max(1, round(rate * n))]] = 1.0
            ref = F.linear(x, linear.weight, linear.bias)
            assert torch.allclose(layer(x), ref, atol=1e-4), "event path disagrees with dense"
            dense = c = tch = 0.0
            for _ in range(3):  # interleave to spread machine noise over all three
                dense += median_us(lambda x=x: linear(x), repeats) / 3
                c += median_us(lambda x=x: layer(x), repeats) / 3
                tch += median_us(lambda x=x: event_linear_torch(x, weight_t, linear.bias), repeats) / 3
            assert layer.dense == 0, "the event path was not taken"
            rows.append({"rate": rate, "dense_us": dense, "event_c_us": c, "event_torch_us": tch})
    return {
        "n": n,
        "weights": n * n,
        "rows": rows,
        "crossover_c": crossover(rows, "event_c_us"),
        "crossover_torch": crossover(rows, "event_torch_us"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[128, 256, 384, 512, 768, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    sizes = [measure(n, args.repeats) for n in args.n]
    result = {
        "benchmark": "event-driven vs dense Linear(N->N), batch 1, binary input, float32, no_grad",
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "sizes": sizes,
        "table": table(sizes),
    }
    if not emit(result, args.save, args.json):
        for s in sizes:
            print(f"N={s['n']}: crossover C {s['crossover_c']:.3f}, torch {s['crossover_torch']:.3f}")
            for r in s["rows"]:
                print(f"  rate {r['rate']:.3f}: dense {r['dense_us']:8.1f} us  event C {r['event_c_us']:8.1f} us"
                      f"  event torch {r['event_torch_us']:8.1f} us")
        print("table (weights, crossover rate):", result["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
