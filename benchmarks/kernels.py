"""Kernel benchmark: the Open Neuromorphic layer benchmark, scaled for a 2-core CPU.

One Linear(N->N) + LIF layer, batch 16, T = 500, float32, forward + backward (loss = sum of spikes),
for N in {512, 1024, 2048}. Each contender is written the way its own documentation and the ON
benchmark write it:
- snnctl:       Linear over all T*B rows at once (one GEMM), then `snnctl.nn.LIF` (fused kernel, default)
- snnTorch:     `snn.Leaky`, Linear and neuron called step by step (its documented loop)
- SpikingJelly: `layer.Linear` + `neuron.LIFNode`, step_mode="m" (2.0 has no backend flag; torch on CPU)
- Norse:        Linear over the whole sequence, then `norse.torch.LIF` (its multi-step module)
Every contender runs in a fresh subprocess: median wall time of `--repeats` runs after one warm-up,
and peak memory as the growth of the process's maximum resident set over the runs.

Also measured, in its own subprocess: the GEMM floor, the forward product plus the weight and bias
gradients as bare float32 torch ops. Every contender must do that work, so the fastest peer's time
over the floor bounds the speed-up any neuron kernel can reach with float32 GEMMs.

Also measured: the neuron part alone (snnctl LIF fwd+bwd on a [T, B, N] current), and the bytes
snnctl's layer keeps for backward, from autograd's saved-tensor hooks.

    python benchmarks/kernels.py [--n 512 1024 2048] [--json] [--save FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from common import emit

CONTENDERS = ("snnctl", "snntorch", "spikingjelly", "norse")
PEERS = CONTENDERS[1:]
FLOOR = "gemm-floor"


def build(name: str, n: int, steps: int, batch: int):
    """Return a zero-argument function doing one forward+backward of the layer."""
    import torch

    torch.manual_seed(0)
    x = torch.rand(steps, batch, n)
    if name == "snnctl":
        from snnctl.nn import LIF

        fc, lif = torch.nn.Linear(n, n), LIF(decay=0.95, threshold=1.0, surrogate="atan")

        def run() -> None:
            fc.zero_grad(set_to_none=True)
            lif(fc(x.reshape(steps * batch, n)).reshape(steps, batch, n)).sum().backward()

    elif name == "snntorch":
        import snntorch as snn

        fc, lif = torch.nn.Linear(n, n), snn.Leaky(beta=0.95)

        def run() -> None:
            fc.zero_grad(set_to_none=True)
            mem = lif.init_leaky()
            spikes = []
            for t in range(steps):
                spk, mem = lif(fc(x[t]), mem)
                spikes.append(spk)
            torch.stack(spikes).sum().backward()

    elif name == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron

        net = torch.nn.Sequential(
            layer.Linear(n, n, step_mode="m"),
            neuron.LIFNode(tau=20.0, decay_input=False, step_mode="m"),
        )

        def run() -> None:
            net.zero_grad(set_to_none=True)
            functional.reset_net(net)
            net(x).sum().backward()

    elif name == "norse":
        import norse.torch as norse

        fc, lif = torch.nn.Linear(n, n), norse.LIF()

        def run() -> None:
            fc.zero_grad(set_to_none=True)
            spikes, _ = lif(fc(x))
            spikes.sum().backward()

    elif name == FLOOR:
        # The work no contender can skip: the forward product and the weight and bias gradients
        # (the input needs no gradient), as plain float32 torch ops with no neuron at all.
        w, b = torch.rand(n, n), torch.rand(n)
        rows, grad = x.reshape(steps * batch, n), torch.rand(steps * batch, n)

        def run() -> None:
            torch.addmm(b, rows, w.t())
            grad.t() @ rows
            grad.sum(0)

    else:
        raise ValueError(name)
    return run


def measure_one(name: str, n: int, steps: int, batch: int, repeats: int) -> dict[str, float]:
    """Runs inside the subprocess."""
    import torch

    run = build(name, n, steps, batch)
    from snnctl.metrics.latency import time_calls

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = time_calls(run, repeats, torch.device("cpu"), warmup=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "peak_mem_mb": (peak - before) / 1024, "threads": torch.get_num_threads()}


def neuron_only(n: int, steps: int, batch: int, repeats: int) -> dict[str, float]:
    import torch

    from snnctl.nn import LIF

    torch.manual_seed(0)
    lif = LIF(decay=0.95, threshold=1.0)
    current = (torch.randn(steps, batch, n) * 0.6 + 0.3).requires_grad_()

    def run() -> None:
        current.grad = None
        lif(current).sum().backward()

    from snnctl.metrics.latency import time_calls

    t = statistics.median(time_calls(run, repeats, torch.device("cpu"), warmup=1))
    return {"median_ms": t * 1e3, "neuron_steps_per_s": n * batch * steps / t}


def saved_floats_per_neuron_step(n: int, steps: int, batch: int) -> float:
    """Floats autograd keeps for backward, beyond the layer input and the weights, per neuron-step."""
    import torch

    from snnctl.nn import LIF

    x = torch.rand(steps, batch, n)
    fc, lif = torch.nn.Linear(n, n), LIF(decay=0.95)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in (x.data_ptr(), fc.weight.data_ptr(), fc.bias.data_ptr()):
            seen[t.data_ptr()] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lif(fc(x.reshape(steps * batch, n)).reshape(steps, batch, n)).sum()
    return sum(seen.values()) / (n * batch * steps)


def subprocess_measure(name: str, n: int, args: argparse.Namespace) -> dict[str, float] | None:
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); from kernels import measure_one; "
        f"print(json.dumps(measure_one({name!r}, {n}, {args.T}, {args.batch}, {args.repeats})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {name} N={n} failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--T", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--save", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args()

    import torch

    from snnctl.nn import kernels

    rows = []
    for n in args.n:
        row: dict[str, object] = {"n": n, "contenders": {}}
        for name in args.contenders:
            print(f"N={n}: {name} ...", file=sys.stderr)
            row["contenders"][name] = subprocess_measure(name, n, args)
        ours = row["contenders"].get("snnctl")
        peers = {k: v for k, v in row["contenders"].items() if k in PEERS and v}
        if ours and peers:
            fastest = min(peers, key=lambda k: peers[k]["median_ms"])
            row["fastest_peer"] = fastest
            row["speedup_over_fastest_peer"] = peers[fastest]["median_ms"] / ours["median_ms"]
            row["peak_mem_vs_fastest_peer"] = ours["peak_mem_mb"] / max(peers[fastest]["peak_mem_mb"], 1e-9)
        floor = subprocess_measure(FLOOR, n, args)
        if floor:
            row["gemm_floor_ms"] = floor["median_ms"]
            row["snnctl_over_floor"] = ours["median_ms"] / floor["median_ms"] if ours else None
            if peers:
                row["speedup_bound_at_floor"] = peers[row["fastest_peer"]]["median_ms"] / floor["median_ms"]
        row["neuron_only"] = neuron_only(n, args.T, args.batch, max(args.repeats, 21))
        rows.append(row)
    speedups = [r["speedup_over_fastest_peer"] for r in rows if "speedup_over_fastest_peer" in r]
    report = {
        "benchmark": f"Linear(N->N)+LIF fwd+bwd, B={args.batch}, T={args.T}, float32",
        "machine": {"threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__,
                    "native_kernel": kernels.clib() is not None},
        "saved_floats_per_neuron_step": saved_floats_per_neuron_step(512, 50, args.batch),
        "rows": rows,
        "min_speedup_over_fastest_peer": min(speedups) if speedups else None,
    }
    if emit(report, args.save, args.json):
        return
    for r in rows:
        cells = ", ".join(f"{k} {v['median_ms']:.0f} ms / {v['peak_mem_mb']:.0f} MB"
                          for k, v in r["contenders"].items() if v)
        print(f"N={r['n']}: {cells}; speedup over fastest peer ({r.get('fastest_peer')}): "
              f"{r.get('speedup_over_fastest_peer', float('nan')):.2f}x; neuron part "
              f"{r['neuron_only']['neuron_steps_per_s'] / 1e9:.2f} G neuron-steps/s; GEMM floor "
              f"{r.get('gemm_floor_ms', float('nan')):.0f} ms, so at most "
              f"{r.get('speedup_bound_at_floor', float('nan')):.2f}x over that peer")
    print(f"saved for backward: {report['saved_floats_per_neuron_step']:.2f} floats per neuron-step")


if __name__ == "__main__":
    main()
