"""Loihi 2 fixed point for converted SNNs (see `dag`): IF neurons with reset by subtraction on Loihi's
standard CUBA LIF, simulated bit-accurately in numpy.

Loihi's LIF resets its voltage to zero, so the membrane that must keep the remainder lives in the
current u instead, which is never reset:

    u <- sign(u) * ((|u| * 4095) >> 12) + (a_in << 6)          du = 0: an integrator (leaks 1/4096)
    v <- sign(v) * (|v| >> 12) + u + 63                         dv = 4095: v follows u
    spike where v > vth << 6

(the bias of 63 register units, under one input unit of 64, makes Loihi's `v > vth` fire where
PyTorch's `h >= threshold` does: u moves in steps of 64)

and each neuron inhibits itself through a one-to-one synapse of weight -vth, which arrives one step
later and subtracts exactly one threshold from u: reset by subtraction. The constant drive per step
(bias / theta + shift) and the initial potential v0 reach u through synapses from two control inputs,
one on during the sample, one pulsing on its first step, so both integrate as the PyTorch neuron's do.

Scales: a value 1.0 (one threshold) is 64*S in the 24-bit registers, vth = S, and S has the form
m * 2^e (m even, <= 254) so the self-inhibition is one 8-bit weight. Every synapse has its own weight
exponent (8-bit mantissas, even for mixed signs); S is the largest value that keeps the threshold in
17 bits, the summed input in 16 bits and u in 24 bits on the given data. A weight beyond 254 * 2^7
(folding a near-zero threshold can make one) is clipped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from snnctl.backends.dag import INPUT, Edge, Node
from snnctl.backends.loihi_fixed import (
    A_IN_MAX,
    ACT_SHIFT,
    DECAY_UNITY,
    MARGIN,
    UV_MAX,
    VTH_MAX,
    VTH_SHIFT,
    W_MAX,
    W_MIN,
    decay,
    wrap24,
)

MIN_EXP, MAX_EXP = -8, 7  # Loihi 2's weight exponent range
AT_THRESHOLD = (1 << ACT_SHIFT) - 1  # v's bias: fire at h == threshold too


@dataclass
class Quantised:
    """Integer mantissas (even, 8-bit) and the shared exponent: a synapse sums mantissa * input and
    shifts the sum by exp (right for a negative exp, flooring), as Loihi's dendritic accumulator does."""

    mant: np.ndarray
    exp: int
    clipped: int = 0

    def shift(self, summed: np.ndarray) -> np.ndarray:
        return summed << self.exp if self.exp >= 0 else summed >> -self.exp

    @property
    def values(self) -> np.ndarray:
        return self.shift(self.mant)


def quantise_values(x: np.ndarray, min_exp: int = MIN_EXP) -> Quantised:
    """8-bit even mantissas with the smallest exponent (>= min_exp) that holds the largest value."""
    peak = float(np.abs(x).max(initial=0.0))
    exp = min(max(math.ceil(math.log2(peak / W_MAX)), min_exp), MAX_EXP) if peak > 0 else 0
    raw = 2.0 * np.round(x / 2.0 ** exp / 2.0)
    mant = np.clip(raw, W_MIN, W_MAX).astype(np.int64)
    return Quantised(mant, exp, int(np.count_nonzero(raw != mant)))


@dataclass
class FixedEdge:
    edge: Edge
    q: Quantised
    delay: int  # steps beyond Loihi's one-step synaptic delay, to line up with the longest path


@dataclass
class FixedNode:
    node: Node
    edges: list[FixedEdge]
    bias: Quantised
    v0: Quantised
    scale: float  # S
    vth: int
    du: int
    dv: int
    inhibit: Quantised | None  # the self-inhibition weight (-S), spiking populations only
    v_bias: int = 0  # Loihi's bias_mant (exp 0), added to v every step

    def to_float(self, values: np.ndarray) -> np.ndarray:
        return values / (64.0 * self.scale)


def _even_power_form(limit: float) -> float:
    """The largest m * 2^e <= limit with m even and 2 <= m <= 254."""
    exp = max(0, math.ceil(math.log2(limit / W_MAX))) if limit > W_MAX else 0
    m = math.floor(limit / 2 ** exp / 2) * 2
    return float(m * 2 ** exp)


def quantise(nodes: list[Node], max_in: list[float], max_h: list[float], q_in: float) -> list[FixedNode]:
    fixed = []
    for k, node in enumerate(nodes):
        inhibition = 0.0 if node.readout else 1.0  # the self-inhibition adds one threshold to the input
        limits = [MARGIN * A_IN_MAX / max(max_in[k] + inhibition, 1e-9),
                  MARGIN * (UV_MAX - 1) / (64.0 * (max_h[k] + 1.0))]
        if not node.readout:
            limits.append(VTH_MAX)
        S = _even_power_form(min(limits)) if not node.readout else min(limits)
        if S < 2:
            raise ValueError(f"layer {node.name}: no state scale fits Loihi's registers (limit {min(limits):.3g})")
        edges = [FixedEdge(e, quantise_values(e.weight * S / (q_in if e.source == INPUT else 1.0)),
                           0 if e.source == INPUT else node.depth - nodes[e.source].depth - 1) for e in node.edges]
        inhibit = None if node.readout else quantise_values(np.array([-S]), min_exp=0)
        if inhibit is not None and int(inhibit.values[0]) != -round(S):
            raise AssertionError("self-inhibition weight must equal the threshold exactly")
        fixed.append(FixedNode(node, edges, quantise_values(node.bias * S, 0), quantise_values(node.v0 * S, 0), S,
                               vth=VTH_MAX if node.readout else int(S), du=DECAY_UNITY - 1 if node.readout else 0,
                               dv=0 if node.readout else DECAY_UNITY - 1, inhibit=inhibit,
                               v_bias=0 if node.readout else AT_THRESHOLD))
    return fixed


@dataclass
class FixedRun:
    spikes: list[np.ndarray]  # per spiking population [T, B, N] (0/1)
    readout_v: np.ndarray  # the integrator's membrane after each step [T, B, C]
    overflow: list[int]  # neuron-steps whose summed input left 16 bits, per population


def simulate(fixed: list[FixedNode], seq_int: np.ndarray) -> FixedRun:
    """Run the fixed-point graph over integer input messages `[T, B, ...]`, every population in step
    with the sample (Loihi's per-hop delays are a fixed shift, see `lava_run.run_graph`)."""
    T, B = seq_int.shape[:2]
    u = [np.zeros((B, f.node.size), np.int64) for f in fixed]
    v = [np.zeros((B, f.node.size), np.int64) for f in fixed]
    last = [np.zeros((B, f.node.size), np.int64) for f in fixed]
    spikes: list[list[np.ndarray]] = [[] for _ in fixed[:-1]]
    overflow = [0 for _ in fixed]
    readout = []
    for t in range(T):
        x = torch.as_tensor(seq_int[t].reshape(B, -1), dtype=torch.float64)
        now: list[torch.Tensor] = []
        for k, f in enumerate(fixed):
            a = np.zeros((B, f.node.size), np.int64) + f.bias.values
            for fe in f.edges:
                src = x if fe.edge.source == INPUT else now[fe.edge.source]
                a += fe.q.shift(np.rint(fe.edge.apply(src, fe.q.mant.astype(np.float64)).numpy()).astype(np.int64))
            if t == 0:
                a += f.v0.values
            if f.inhibit is not None:
                a += last[k] * int(f.inhibit.values[0])
            overflow[k] += int(np.count_nonzero(np.abs(a) > A_IN_MAX))
            u[k] = wrap24(decay(u[k], f.du + 1) + (a << ACT_SHIFT))
            v[k] = np.clip(decay(v[k], f.dv) + u[k] + f.v_bias, -UV_MAX + 1, UV_MAX - 1)
            s = v[k] > (f.vth << VTH_SHIFT)
            v[k][s] = 0
            if f.node.readout:
                readout.append(v[k].copy())
            else:
                last[k] = s.astype(np.int64)
                spikes[k].append(s.astype(np.int8))
                now.append(torch.as_tensor(s, dtype=torch.float64))
    return FixedRun([np.stack(s) for s in spikes], np.stack(readout), overflow)


def readout_steps(fixed: list[FixedNode], readout_v: np.ndarray) -> np.ndarray:
    steps = np.diff(readout_v, axis=0, prepend=np.zeros_like(readout_v[:1]))
    return fixed[-1].to_float(steps.astype(np.float64))


def describe(fixed: list[FixedNode]) -> list[dict[str, Any]]:
    return [{"layer": f.node.name, "neurons": f.node.size, "depth": f.node.depth, "readout": f.node.readout,
             "state_scale": f.scale, "vth_mant": f.vth, "du": f.du, "dv": f.dv,
             "synapses": [{"from": "input" if fe.edge.source == INPUT else fixed[fe.edge.source].node.name,
                           "kind": fe.edge.kind, "weight_exp": fe.q.exp, "extra_delay": fe.delay,
                           "weight_range": [int(fe.q.mant.min()), int(fe.q.mant.max())],
                           "clipped_weights": fe.q.clipped} for fe in f.edges],
             "bias_exp": f.bias.exp, "v0_exp": f.v0.exp,
             "self_inhibition": None if f.inhibit is None else [int(f.inhibit.mant[0]), f.inhibit.exp]}
            for f in fixed]
