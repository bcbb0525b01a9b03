"""Run a population chain as a lava-nc process network: RingBuffer -> (Dense -> LIFReset)* -> readout.

Lava's Dense hands on its accumulation one step later, so population k (1-based) sees a sample's
first step at time k + 1. Samples are played back to back, T steps each, and each population is
reset (u = v = 0) at the start of its own window (`LIFReset`, interval T, offset k + 1), so every
sample starts from rest exactly as in the PyTorch model; the spikes are then re-aligned per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnctl.backends.chain import Population
from snnctl.backends.lava_compat import import_lava
from snnctl.backends.loihi_fixed import FixedPopulation


def _processes(fixed: list[FixedPopulation] | None, pops: list[Population], T: int) -> list[tuple[Any, Any]]:
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIFReset
    from lava.utils.weightutils import SignMode

    stages = []
    for k, p in enumerate(pops, start=1):
        offset = (k + 1) % T
        graded = 24 if k == 1 else 0
        if fixed is None:
            dense = Dense(weights=p.dense_matrix(), num_message_bits=graded)
            lif = LIFReset(shape=(p.size,), du=1.0, dv=0.0 if p.readout else 1.0 - p.decay,
                           vth=1e30 if p.readout else p.threshold, bias_mant=p.bias.copy(), bias_exp=0,
                           reset_interval=T, reset_offset=offset)
        else:
            f = fixed[k - 1]
            dense = Dense(weights=p.dense_matrix(f.weight.astype(np.float64)).round().astype(np.int32),
                          num_message_bits=graded, weight_exp=0, num_weight_bits=8, sign_mode=SignMode.MIXED)
            lif = LIFReset(shape=(p.size,), du=f.du, dv=f.dv, vth=f.vth, bias_mant=f.bias_mant.astype(np.int32),
                           bias_exp=np.full(p.size, f.bias_exp, np.int32), reset_interval=T, reset_offset=offset)
        stages.append((dense, lif))
    return stages


def run(pops: list[Population], seq: np.ndarray, fixed: list[FixedPopulation] | None = None,
        ) -> tuple[list[np.ndarray], np.ndarray]:
    """Spikes per spiking population `[T, B, N]` and the readout membrane `[T, B, C]`, re-aligned.

    `seq` is `[T, B, ...]`: integer messages for fixed point, floats otherwise.
    """
    import_lava("lava.magma.runtime.message_infrastructure.multiprocessing")
    import_lava("lava.magma.compiler.var_model")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    T, B = seq.shape[:2]
    depth = len(pops)
    steps = B * T + depth + 1
    data = np.zeros((int(np.prod(seq.shape[2:])), steps))
    data[:, :B * T] = seq.reshape(T, B, -1).transpose(2, 1, 0).reshape(-1, B * T)
    if fixed is not None:
        data = data.astype(np.int32)
    source = RingBuffer(data=data)
    stages = _processes(fixed, pops, T)
    previous = source.s_out
    monitors = []
    for dense, lif in stages:
        previous.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        previous = lif.s_out
        monitor = Monitor()
        monitor.probe(lif.v if lif is stages[-1][1] else lif.s_out, steps)
        monitors.append((monitor, lif))
    tag = "fixed_pt" if fixed is not None else "floating_pt"
    source.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag=tag))
    try:
        traces = []
        for monitor, lif in monitors:
            data_by_proc = monitor.get_data()[lif.name]
            traces.append(np.asarray(next(iter(data_by_proc.values()))))
    finally:
        source.stop()
    aligned = []
    for k, trace in enumerate(traces, start=1):
        # row r holds time step r + 1; sample n, step tau of population k is at time n*T + tau + k + 1
        rows = np.arange(B)[None, :] * T + np.arange(T)[:, None] + k
        aligned.append(trace[rows])
    return aligned[:-1], aligned[-1]
