"""A netx-style HDF5 file (lava-dl's exchange format) for a fixed-point chain, and its reader.

Layout as lava-dl's `netx.hdf5.Network` reads it: `/layer/{i}/type` ('dense' | 'conv'), `shape`
(C, H, W) or (N,), integer `weight` (dense (out, in); conv (out, in, kH, kW) in PyTorch order, netx
flips it), `bias` (the bias mantissa, netx uses bias_exp 6), conv geometry, and the neuron group
`neuron/{type='CUBA', iDecay, vDecay, vThMant, refDelay, gradedSpike}` with iDecay = du + 1. snnctl
adds its own attributes (state scale, input scale, bias exponent, snnctl version) that netx ignores.
The first layer takes graded input messages; the last is the non-spiking readout integrator.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from snnctl import __version__
from snnctl.backends.chain import Population
from snnctl.backends.loihi_fixed import FixedPopulation


def write(path: Path, fixed: list[FixedPopulation], T: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with h5py.File(tmp, "w") as h:
            h.attrs["snnctl_version"] = __version__
            sim = h.create_group("simulation")
            sim.create_dataset("Ts", data=1)
            sim.create_dataset("tSample", data=T)
            layers = h.create_group("layer")
            # netx infers every shape from an input layer's (features, y, x) when the first layer is a conv
            first = layers.create_group("0")
            first.create_dataset("type", data=np.array([b"input"], dtype="S10"))
            first.create_dataset("shape", data=np.array(fixed[0].pop.in_shape))
            index, previous = 1, None
            for f in fixed:
                if previous == "conv" and f.pop.kind == "dense":  # netx flattens (x, y, f) as PyTorch does (f, y, x)
                    layers.create_group(str(index)).create_dataset("type", data=np.array([b"flatten"], dtype="S10"))
                    index += 1
                _layer(layers.create_group(str(index)), f)
                index, previous = index + 1, f.pop.kind
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _layer(g: h5py.Group, f: FixedPopulation) -> None:
    p = f.pop
    g.create_dataset("type", data=np.array([p.kind.encode()], dtype="S10"))
    g.create_dataset("shape", data=np.array(p.out_shape))
    g.create_dataset("weight", data=f.weight.astype(np.int32))
    bias = f.bias_mant.astype(np.int32)
    if p.kind == "conv":  # netx broadcasts a conv bias onto its (x, y, features) neurons
        bias = bias.reshape(p.out_shape).transpose(2, 1, 0)
    g.create_dataset("bias", data=bias)
    if p.kind == "dense":
        g.create_dataset("inFeatures", data=int(np.prod(p.in_shape)))
        g.create_dataset("outFeatures", data=p.size)
    else:
        g.create_dataset("inChannels", data=p.in_shape[0])
        g.create_dataset("outChannels", data=p.out_shape[0])
        g.create_dataset("kernelSize", data=np.array(p.weight.shape[2:]))
        for key in ("stride", "padding", "dilation"):
            g.create_dataset(key, data=np.array(p.conv[key]))
        g.create_dataset("groups", data=int(p.conv["groups"]))
    n = g.create_group("neuron")
    n.create_dataset("type", data=np.array([b"CUBA"], dtype="S10"))
    n.create_dataset("iDecay", data=f.du + 1)
    n.create_dataset("vDecay", data=f.dv)
    n.create_dataset("vThMant", data=f.vth)
    n.create_dataset("refDelay", data=1)
    n.create_dataset("gradedSpike", data=False)
    g.attrs.update({"snnctl_name": p.name, "snnctl_state_scale": f.scale, "snnctl_input_scale": f.in_scale,
                    "snnctl_bias_exp": f.bias_exp, "snnctl_in_shape": np.array(p.in_shape),
                    "snnctl_readout": p.readout, "snnctl_decay": -1.0 if p.decay is None else p.decay,
                    "snnctl_threshold": -1.0 if p.threshold is None else p.threshold})


def read(path: Path) -> list[FixedPopulation]:
    """Rebuild the fixed-point chain from the file alone (the round trip of the artifact)."""
    fixed = []
    with h5py.File(path, "r") as h:
        layers = h["layer"]
        for i in range(len(layers)):
            g = layers[str(i)]
            kind = g["type"][0].decode()
            if kind in ("input", "flatten"):
                continue
            weight = g["weight"][()].astype(np.int64)
            attrs = g.attrs
            readout = bool(attrs["snnctl_readout"])
            conv = None
            if kind == "conv":
                conv = {"stride": tuple(int(v) for v in g["stride"][()]),
                        "padding": tuple(int(v) for v in g["padding"][()]),
                        "dilation": tuple(int(v) for v in g["dilation"][()]), "groups": int(g["groups"][()])}
            pop = Population(str(attrs["snnctl_name"]), kind, weight.astype(np.float64), np.zeros(weight.shape[0]),
                             tuple(int(v) for v in attrs["snnctl_in_shape"]), tuple(int(v) for v in g["shape"][()]),
                             None if readout else float(attrs["snnctl_decay"]),
                             None if readout else float(attrs["snnctl_threshold"]), conv)
            n = g["neuron"]
            bias = g["bias"][()].astype(np.int64)
            if kind == "conv":
                bias = bias.transpose(2, 1, 0).reshape(-1)
            fixed.append(FixedPopulation(pop, weight, bias, int(attrs["snnctl_bias_exp"]),
                                         du=int(n["iDecay"][()]) - 1, dv=int(n["vDecay"][()]),
                                         vth=int(n["vThMant"][()]), scale=float(attrs["snnctl_state_scale"]),
                                         in_scale=float(attrs["snnctl_input_scale"])))
    return fixed
