"""Run a population chain as a lava-nc process network: RingBuffer -> (Dense -> LIFReset)* -> readout.

Lava's Dense hands on its accumulation one step later, so population k (1-based) sees a sample's
first step at time k + 1. Samples are played back to back, T steps each, and each population is
reset (u = v = 0) at the start of its own window (`LIFReset`, interval T, offset k + 1), so every
sample starts from rest exactly as in the PyTorch model; the spikes are then re-aligned per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from snnctl.backends import loihi_dag as LD
from snnctl.backends.chain import Population
from snnctl.backends.lava_compat import import_lava
from snnctl.backends.loihi_fixed import FixedPopulation

LAVA_MAX_ENTRIES = 4_000_000  # per synapse matrix: lava's CPU models keep it dense


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


def _graph_processes(fixed: list[LD.FixedNode], flat: np.ndarray) -> tuple[Any, Any, list[Any], int]:
    """Lava processes for a converted SNN's population graph (see `loihi_dag`): a graded RingBuffer for
    the input, a binary one for the control lines, and per population a LIF with its synapses."""
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    T = flat.shape[0]
    depth = max(f.node.depth for f in fixed)
    steps = T + depth + 1
    control = np.zeros((2 * depth, steps), np.int32)  # row 2(d-1): on during depth d's window; 2d-1: its first step
    for d in range(1, depth + 1):
        control[2 * (d - 1), d - 1:d - 1 + T] = 1
        control[2 * d - 1, d - 1] = 1
    messages = np.zeros((flat.shape[1], steps), np.int32)
    messages[:, :T] = flat.T
    data = RingBuffer(data=messages)
    lines = RingBuffer(data=control)

    def connect(source: Any, q: LD.Quantised, matrix: np.ndarray, into: Any, graded: bool = False,
                delay: int = 0) -> None:
        kw = {"weights": matrix.astype(np.int32), "weight_exp": q.exp, "num_weight_bits": 8,
              "sign_mode": SignMode.MIXED}
        syn = DelayDense(delays=delay, **kw) if delay else Dense(num_message_bits=24 if graded else 0, **kw)
        source.connect(syn.s_in)
        syn.a_out.connect(into)

    lifs: list[Any] = []
    for f in fixed:
        node = f.node
        lif = LIF(shape=(node.size,), du=f.du, dv=f.dv, vth=f.vth, bias_mant=f.v_bias, bias_exp=0)
        for fe in f.edges:
            matrix = dense_of(fe.edge, fe.q.mant)
            if fe.edge.source == LD.INPUT:
                connect(data.s_out, fe.q, matrix, lif.a_in, graded=True)
            else:
                connect(lifs[fe.edge.source].s_out, fe.q, matrix, lif.a_in, delay=fe.delay)
        for q, row in ((f.bias, 2 * (node.depth - 1)), (f.v0, 2 * node.depth - 1)):
            if np.any(q.mant):
                matrix = np.zeros((node.size, 2 * depth), np.int64)
                matrix[:, row] = q.mant
                connect(lines.s_out, q, matrix, lif.a_in)
        if f.inhibit is not None:
            connect(lif.s_out, f.inhibit, np.diag(np.full(node.size, f.inhibit.mant[0])), lif.a_in)
        lifs.append(lif)
    return data, lines, lifs, steps


def dense_of(edge: Any, mant: np.ndarray) -> np.ndarray:
    """An edge's integer (out, in) matrix: its synapse applied to the identity."""
    n_in = int(np.prod(edge.in_shape))
    if n_in * int(np.prod(edge.out_shape)) > LAVA_MAX_ENTRIES:
        raise ValueError("edge too large for lava")
    eye = torch.eye(n_in, dtype=torch.float64)
    return np.rint(edge.apply(eye, mant.astype(np.float64)).numpy()).astype(np.int64).T


def fits_lava(fixed: list[LD.FixedNode]) -> bool:
    """Lava's CPU models hold every synapse as a dense matrix: only small graphs are cross-checked."""
    return all(int(np.prod(fe.edge.in_shape)) * int(np.prod(fe.edge.out_shape)) <= LAVA_MAX_ENTRIES
               for f in fixed for fe in f.edges)


def run_graph(fixed: list[LD.FixedNode], sample: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """One sample `[T, ...]` (integer messages) through the graph in lava fixed_pt, from rest: spikes per
    spiking population `[T, N]` and the readout membrane `[T, C]`, re-aligned to the sample's steps
    (population at depth d sees step tau at time tau + d + 1)."""
    import_lava("lava.magma.runtime.message_infrastructure.multiprocessing")
    import_lava("lava.magma.compiler.var_model")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.monitor.process import Monitor

    T = sample.shape[0]
    data, _lines, lifs, steps = _graph_processes(fixed, sample.reshape(T, -1))
    monitors = []
    for f, lif in zip(fixed, lifs, strict=True):
        monitor = Monitor()
        monitor.probe(lif.v if f.node.readout else lif.s_out, steps)
        monitors.append(monitor)
    data.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        traces = [np.asarray(next(iter(m.get_data()[lif.name].values()))) for m, lif in zip(monitors, lifs,
                                                                                           strict=True)]
    finally:
        data.stop()
    aligned = [trace[np.arange(T) + f.node.depth] for f, trace in zip(fixed, traces, strict=True)]
    return aligned[:-1], aligned[-1]
