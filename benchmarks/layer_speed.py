"""Baseline speed of one Linear(N->N) + LIF layer, forward + backward, in neuron-steps per second.

The Open Neuromorphic layer benchmark scaled for a 2-core CPU: batch 16, T = 500, float32. The synaptic
GEMM runs once over all T*B rows (hoisted out of the time loop), then the LIF runs step by step
through snnctl's reference implementation (`snnctl.nn.functional.lif`, autograd through the loop).
Loss is the sum of spikes. Reported: median wall time of `--repeats` runs after one warm-up, the
neuron-steps per second of the whole layer, and of the neuron part alone (GEMM excluded).

    python benchmarks/layer_speed.py [--n 512] [--json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch
from common import emit

from snnctl.metrics.latency import time_calls
from snnctl.nn import LIF


def time_it(fn, repeats: int) -> float:
    return statistics.median(time_calls(fn, repeats, torch.device("cpu"), warmup=1))


def measure(n: int, batch: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    fc = torch.nn.Linear(n, n)
    neuron = LIF(decay=0.95, threshold=1.0, reset="subtract", surrogate="atan")
    x = torch.rand(steps, batch, n)

    def layer() -> None:
        fc.zero_grad(set_to_none=True)
        current = fc(x.reshape(steps * batch, n)).reshape(steps, batch, n)
        neuron(current).sum().backward()

    current = (torch.randn(steps, batch, n) * 0.6 + 0.3).requires_grad_()

    def neuron_only() -> None:
        current.grad = None
        neuron(current).sum().backward()

    neuron_steps = n * batch * steps
    t_layer = time_it(layer, repeats)
    t_neuron = time_it(neuron_only, repeats)
    return {
        "n": n, "batch": batch, "T": steps,
        "layer_ms": t_layer * 1e3, "layer_neuron_steps_per_s": neuron_steps / t_layer,
        "neuron_ms": t_neuron * 1e3, "neuron_steps_per_s": neuron_steps / t_neuron,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[512])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--T", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--save", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    report = {
        "benchmark": "Linear(N)+LIF fwd+bwd, reference kernel",
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "processor": platform.processor(), "torch": torch.__version__},
        "results": [measure(n, args.batch, args.T, args.repeats) for n in args.n],
    }
    if emit(report, args.save, args.json):
        return
    for r in report["results"]:
        print(f"N={r['n']} B={r['batch']} T={r['T']}: layer {r['layer_ms']:.1f} ms "
              f"({r['layer_neuron_steps_per_s'] / 1e6:.1f} M neuron-steps/s), neuron part {r['neuron_ms']:.1f} ms "
              f"({r['neuron_steps_per_s'] / 1e6:.1f} M neuron-steps/s)")


if __name__ == "__main__":
    main()
