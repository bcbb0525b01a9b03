"""Loihi 2 fixed point: quantise a chain of populations and simulate it bit-accurately in numpy.

The arithmetic is lava-nc 0.10's bit-accurate LIF and Dense models (`PyLifModelBitAcc`,
`PyDenseModelBitAcc`), written out for a batch at once:

    u <- sign(u) * ((|u| * (4096 - (du + 1))) >> 12) + (a_in << 6)      wrapped to 24 bits
    v <- sign(v) * ((|v| * (4096 - dv)) >> 12) + u + (bias_mant << bias_exp)   clipped to 24 bits
    spike where v > vth << 6, then v <- 0

with 8-bit weights (even values in [-256, 254] for mixed signs), weight exponent 0, du = 4095 (the
current is this step's input: our neurons have no synaptic filter), dv = round(4096 * (1 - decay)).
Each population has its own state scale S: a float value 1.0 is 64*S in the 24-bit registers, so
vth = round(threshold * S), weights = round(W * S / Q) with Q the input message scale (1 for
spikes), bias_mant * 2^bias_exp = round(64 * S * bias) with bias_exp 6 (netx's convention) unless the
mantissa would overflow. S is the largest value that keeps every weight in 8 bits, the threshold in
17, the synaptic input in 16 and the membrane in 24 bits on the given data. The last population is
a non-spiking integrator (dv = 0) whose membrane is the summed output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from snnctl.backends.chain import Population

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = VTH_SHIFT = 6
UV_MAX = 1 << 23
VTH_MAX = (1 << 17) - 1
BIAS_MANT_MAX = 4095
A_IN_MAX = (1 << 15) - 1
W_MIN, W_MAX = -256, 254
NETX_BIAS_EXP = 6
MARGIN = 0.9


@dataclass
class FixedPopulation:
    pop: Population
    weight: np.ndarray  # int64, same layout as pop.weight
    bias_mant: np.ndarray  # int64 per output neuron
    bias_exp: int
    du: int
    dv: int
    vth: int
    scale: float  # S
    in_scale: float  # Q
    clipped_weights: int = 0

    def to_float(self, values: np.ndarray) -> np.ndarray:
        """Register values (u, v) back to float units."""
        return values / (64.0 * self.scale)


@dataclass
class Activity:
    """Per-population maxima of a float run: synaptic input and membrane (for range limits)."""

    max_current: float
    max_membrane: float


def float_ranges(pops: list[Population], seq: torch.Tensor) -> list[Activity]:
    """Run the chain in float64 with our neurons' rule (h >= threshold, reset to zero) and keep what
    quantisation needs: each population's largest synaptic input and membrane."""
    T, B = seq.shape[:2]
    state = [torch.zeros(B, p.size, dtype=torch.float64) for p in pops]
    acts = [Activity(0.0, 0.0) for _ in pops]
    for t in range(T):
        x = seq[t].double()
        for k, p in enumerate(pops):
            a = p.synapse(x)
            acts[k].max_current = max(acts[k].max_current, float(a.abs().max()))
            if p.readout:
                state[k] = state[k] + a + torch.as_tensor(p.bias)
                acts[k].max_membrane = max(acts[k].max_membrane, float(state[k].abs().max()))
                continue
            h = p.decay * state[k] + a + torch.as_tensor(p.bias)
            acts[k].max_membrane = max(acts[k].max_membrane, float(h.abs().max()))
            x = (h >= p.threshold).double()
            state[k] = h * (1 - x)
    return acts


def input_scale(seq: torch.Tensor, bits: int) -> float:
    """Q: 1 for binary spikes; else the largest power of two keeping |x| * Q within `bits` bits."""
    values = seq.unique()
    if bool(((values == 0) | (values == 1)).all()):
        return 1.0
    peak = float(seq.abs().max()) or 1.0
    return float(2 ** math.floor(math.log2(((1 << bits) - 1) / peak)))


def input_messages(seq: torch.Tensor, q: float) -> np.ndarray:
    """The input as Loihi's graded messages: round(x * Q), which must fit 24 bits."""
    from snnctl.errors import UserError

    seq_int = np.rint(seq.numpy() * q).astype(np.int64)
    if np.abs(seq_int).max() >= 1 << 23:
        raise UserError("input values are too large for 24-bit input messages", hint="normalise the inputs")
    return seq_int


def saturation_warnings(names: list[str], clipped: dict[str, int], overflow: list[int], mismatch: float,
                        why: str) -> list[str]:
    """One warning per layer whose weights were clipped (`why`) or whose summed input left 16 bits."""
    found = [f"layer {name}: {n} weights clipped {why}; spike mismatch against the PyTorch SNN over all "
             f"layers is {mismatch:.4f}" for name, n in clipped.items()]
    return found + [f"layer {name}: synaptic input left 16 bits {n} times (lava's a_in is int16)"
                    for name, n in zip(names, overflow, strict=True) if n]


def quantise(pops: list[Population], acts: list[Activity], q_in: float, weight_percentile: float = 100.0,
             ) -> list[FixedPopulation]:
    fixed = []
    q = q_in
    for p, act in zip(pops, acts, strict=False):
        w_ref = float(np.percentile(np.abs(p.weight), weight_percentile)) if p.weight.size else 0.0
        limits = [254.0 * q / w_ref if w_ref > 0 else math.inf]
        if not p.readout:
            limits.append(VTH_MAX / p.threshold if p.threshold > 0 else math.inf)
        limits.append(MARGIN * A_IN_MAX / act.max_current if act.max_current > 0 else math.inf)
        limits.append(MARGIN * (UV_MAX - 1) / (64.0 * act.max_membrane) if act.max_membrane > 0 else math.inf)
        S = min(limits)
        if not math.isfinite(S):
            S = 1.0
        raw = 2.0 * np.round(p.weight * S / (2.0 * q))
        weight = np.clip(raw, W_MIN, W_MAX).astype(np.int64)
        bias_exp = NETX_BIAS_EXP
        mant = np.round(64.0 * S * p.bias / 2 ** bias_exp)
        while np.abs(mant).max(initial=0) > BIAS_MANT_MAX and bias_exp < 7:
            bias_exp += 1
            mant = np.round(64.0 * S * p.bias / 2 ** bias_exp)
        bias_mant = np.clip(mant, -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
        if p.readout:
            dv, vth = 0, VTH_MAX
        else:
            dv = int(min(max(round(DECAY_UNITY * (1.0 - p.decay)), 0), DECAY_UNITY - 1))
            vth = int(min(max(round(p.threshold * S), 0), VTH_MAX))
        fixed.append(FixedPopulation(p, weight, bias_mant, bias_exp, du=DECAY_UNITY - 1, dv=dv, vth=vth, scale=S,
                                     in_scale=q, clipped_weights=int(np.count_nonzero(raw != weight))))
        q = 1.0
    return fixed


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """Loihi's decay: sign(x) * ((|x| * (4096 - d)) >> 12), truncating toward zero."""
    return np.sign(x) * ((np.abs(x) * (DECAY_UNITY - d)) >> DECAY_SHIFT)


def wrap24(x: np.ndarray) -> np.ndarray:
    wrapped = np.where(x > UV_MAX, x - 2 * UV_MAX, x)
    return np.where(wrapped <= -UV_MAX, x + 2 * UV_MAX, wrapped)


@dataclass
class FixedRun:
    spikes: list[np.ndarray]  # per spiking population [T, B, N] (0/1)
    readout_v: np.ndarray  # the integrator's membrane after each step [T, B, C] (int)
    overflow: list[int]  # steps*neurons whose synaptic input left 16 bits, per population


def simulate(fixed: list[FixedPopulation], seq_int: np.ndarray) -> FixedRun:
    """Run the fixed-point chain over `seq_int` `[T, B, ...]` (integer input messages)."""
    T, B = seq_int.shape[:2]
    u = [np.zeros((B, f.pop.size), np.int64) for f in fixed]
    v = [np.zeros((B, f.pop.size), np.int64) for f in fixed]
    bias = [(f.bias_mant << f.bias_exp) if f.bias_exp >= 0 else (f.bias_mant >> -f.bias_exp) for f in fixed]
    spikes: list[list[np.ndarray]] = [[] for _ in fixed[:-1]]
    overflow = [0 for _ in fixed]
    readout = []
    for t in range(T):
        x = torch.as_tensor(seq_int[t].reshape(B, -1), dtype=torch.float64)
        for k, f in enumerate(fixed):
            a = np.rint(f.pop.synapse(x, f.weight.astype(np.float64)).numpy()).astype(np.int64)
            overflow[k] += int(np.count_nonzero(np.abs(a) > A_IN_MAX))
            u[k] = wrap24(decay(u[k], f.du + 1) + (a << ACT_SHIFT))
            v[k] = np.clip(decay(v[k], f.dv) + u[k] + bias[k], -UV_MAX + 1, UV_MAX - 1)
            s = v[k] > (f.vth << VTH_SHIFT)
            v[k][s] = 0
            if k == len(fixed) - 1:
                readout.append(v[k].copy())
            else:
                spikes[k].append(s.astype(np.int8))
                x = torch.as_tensor(s, dtype=torch.float64)
    return FixedRun([np.stack(s) for s in spikes], np.stack(readout), overflow)


def readout_steps(fixed: list[FixedPopulation], readout_v: np.ndarray) -> np.ndarray:
    """Per-step outputs in float units from the integrator's cumulative membrane."""
    steps = np.diff(readout_v, axis=0, prepend=np.zeros_like(readout_v[:1]))
    return fixed[-1].to_float(steps.astype(np.float64))


def describe(fixed: list[FixedPopulation]) -> list[dict[str, Any]]:
    return [{"layer": f.pop.name, "kind": f.pop.kind, "neurons": f.pop.size, "state_scale": round(f.scale, 4),
             "input_scale": f.in_scale, "vth_mant": f.vth, "du": f.du, "dv": f.dv, "bias_exp": f.bias_exp,
             "weight_range": [int(f.weight.min()), int(f.weight.max())], "clipped_weights": f.clipped_weights,
             "readout": f.pop.readout} for f in fixed]
