"""GPU kernel benchmark: fused Triton LIF forward+backward against a plain device-to-device copy.

The fused LIF moves 24 bytes per neuron-step in float32 (forward: read x, write s and h; backward:
read the spike gradient and h, write dx). Reported: median time over 20 runs (CUDA events, after
warm-up), the achieved bandwidth at that 24 B/neuron-step, and a copy's bandwidth on the same
machine in the same run, plus the same for SpikingJelly-style eager PyTorch (our `reference` kernel).

    python benchmarks/gpu_lif.py [--json]
"""

from __future__ import annotations

import argparse
import json

import torch

from snnctl.nn import LIF


def cuda_time(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for T, B, N in [(32, 64, 65536), (500, 16, 16384), (4, 256, 65536)]:
        steps = T * B * N
        x = (torch.randn(T, B, N, device="cuda") * 0.6 + 0.3).requires_grad_()
        gout = torch.randn(T, B, N, device="cuda")
        row = {"T": T, "B": B, "N": N, "neuron_steps": steps}
        for kernel in ("auto", "reference"):
            lif = LIF(decay=0.95, kernel=kernel).cuda()

            def run(lif=lif, x=x, gout=gout) -> None:
                x.grad = None
                lif(x).backward(gout)

            if kernel == "reference" and T > 100:
                continue  # the eager loop at T=500 takes minutes; the short sequences show the gap
            t = cuda_time(run)
            row[kernel] = {"ms": t * 1e3, "G_neuron_steps_per_s": steps / t / 1e9,
                           "GB_per_s_at_24B": 24 * steps / t / 1e9}
        src = torch.empty(steps, device="cuda")
        dst = torch.empty_like(src)
        t_copy = cuda_time(lambda src=src, dst=dst: dst.copy_(src))
        row["copy_GB_per_s"] = 8 * steps / t_copy / 1e9
        row["fraction_of_copy_bandwidth"] = row["auto"]["GB_per_s_at_24B"] / row["copy_GB_per_s"]
        rows.append(row)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    print(json.dumps(report, indent=2) if args.json else report)


if __name__ == "__main__":
    main()
