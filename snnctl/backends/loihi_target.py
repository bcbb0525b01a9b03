"""The lava (float) and loihi (fixed point) targets: lower to a population chain, then check it.

loihi: quantise (see `loihi_fixed`), simulate bit-accurately, compare with the PyTorch SNN (spikes per
layer, accuracy float vs fixed), write `model.net` (netx HDF5) and re-simulate from that file alone,
run the same network in lava under `Loihi2SimCfg(select_tag="fixed_pt")` and require bit-exact
agreement with our simulation, and estimate the Loihi 2 resources.
lava: the float network under `Loihi2SimCfg(select_tag="floating_pt")`, compared with PyTorch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save as save_numpy

from snnctl.artifact import write_atomic
from snnctl.backends import lava_run, netx
from snnctl.backends import loihi_fixed as LF
from snnctl.backends.chain import Population, lower
from snnctl.backends.extract import to_nir
from snnctl.backends.nir_target import network_from_nir
from snnctl.backends.roundtrip import Run, compare, encoded, run_torch
from snnctl.data.encoders import ENCODINGS
from snnctl.errors import UserError

# Loihi 2 chip totals (Intel; open-neuromorphic.org's Loihi 2 page): 128 neuro cores, up to 1 M
# neurons and 120 M synapses per chip. Per-core figures below are those totals divided by 128: an
# estimate of how many cores the network needs at least, not a placement.
LOIHI2 = {"cores_per_chip": 128, "neurons_per_core": 8192, "synapses_per_core": 120_000_000 // 128}


def synapse_count(p: Population) -> int:
    """Connections with a nonzero weight (a conv counted unrolled, as each core stores its fan-in)."""
    if p.kind == "dense":
        return int(np.count_nonzero(p.weight))
    mask = (p.weight != 0).astype(np.float64)
    return int(p.synapse(torch.ones(1, *p.in_shape, dtype=torch.float64), mask).sum())


def resources(pops: list[Population]) -> dict[str, Any]:
    return summarise_resources([(p.name, p.size, synapse_count(p)) for p in pops])


def summarise_resources(counts: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Per layer (name, neurons, synapses): the cores each needs at least and the totals."""
    layers = [{"layer": name, "neurons": neurons, "synapses": syn,
               "cores": max(math.ceil(neurons / LOIHI2["neurons_per_core"]),
                            math.ceil(syn / LOIHI2["synapses_per_core"]), 1)} for name, neurons, syn in counts]
    total_cores = sum(layer["cores"] for layer in layers)
    return {"neurons": sum(x["neurons"] for x in layers), "synapses": sum(x["synapses"] for x in layers),
            "cores": total_cores, "chips": math.ceil(total_cores / LOIHI2["cores_per_chip"]), "layers": layers,
            "limits": LOIHI2, "note": "lower bound from Loihi 2 chip totals per core; one population per core group"}


def _chain(bundle: Any, options: Any, inputs: Any, T: int) -> tuple[list[Population], torch.Tensor, Run]:
    model = bundle.model
    shape = tuple(inputs.x.shape[1:])
    if model.encoding not in ENCODINGS:
        raise UserError(f"encoding {model.encoding} is not supported on lava/loihi")
    net, _ = network_from_nir(to_nir(model, shape, options.export), options.export, T, model.encoding)
    pops = lower(net, shape)
    seq = encoded(model, inputs.x, T)
    return pops, seq, run_torch(model, seq)


def _spike_run(pops: list[Population], spikes: list[np.ndarray], outputs: np.ndarray) -> Run:
    T, B = outputs.shape[:2]
    return Run(outputs, {p.name: s.reshape(T, B, *p.out_shape) for p, s in zip(pops, spikes, strict=False)})


def compile_and_check(bundle: Any, out: Path, options: Any, inputs: Any, T: int, fixed: bool,
                      ) -> tuple[dict, dict, dict]:
    if bundle.manifest["kind"] == "converted":
        from snnctl.backends import loihi_graph

        return loihi_graph.compile_and_check(bundle, out, options, inputs, T)
    pops, seq, reference = _chain(bundle, options, inputs, T)
    if fixed:
        return _loihi(pops, seq, reference, bundle, out, options, inputs, T)
    return _lava_float(pops, seq, reference, bundle, out, options, inputs)


def _loihi(pops, seq, reference, bundle, out, options, inputs, T) -> tuple[dict, dict, dict]:
    acts = LF.float_ranges(pops, seq)
    q = LF.input_scale(seq, options.input_bits)
    fixed = LF.quantise(pops, acts, q, options.weight_percentile)
    clipped = {f.pop.name: f.clipped_weights for f in fixed if f.clipped_weights}
    if clipped and options.strict:
        name, n = next(iter(clipped.items()))
        raise UserError(f"layer {name}: {n} weights saturate 8 bits at weight percentile {options.weight_percentile}",
                        hint="drop --strict to accept the clipping, or use --weight-percentile 100")
    seq_int = LF.input_messages(seq, q)
    sim = LF.simulate(fixed, seq_int)
    compiled = _spike_run(pops, sim.spikes, LF.readout_steps(fixed, sim.readout_v))
    report = compare(reference, compiled, inputs.labels, bundle.model.readout_delay)
    report.update(inputs=inputs.source, compared_with="snnctl's bit-accurate Loihi 2 fixed-point simulation")
    options.warnings += LF.saturation_warnings([p.name for p in pops], clipped, sim.overflow,
                                               report["spike_mismatch"], "to 8 bits")

    path = out / "model.net"
    netx.write(path, fixed, T)
    again = LF.simulate(netx.read(path), seq_int)
    same = [np.array_equal(a, b) for a, b in zip(again.spikes, sim.spikes, strict=True)]
    report["netx_file_identical"] = bool(all(same) and np.array_equal(again.readout_v, sim.readout_v))
    report["lava_fixed_pt"] = _lava_fixed(pops, fixed, seq_int, sim, options.lava_samples)
    report["quantisation"] = LF.describe(fixed)
    extra = {"resources": resources(pops)}
    write_atomic(out / "resources.json", (json.dumps(extra["resources"], indent=2) + "\n").encode())
    return report, {"netx": path.name, "resources": "resources.json"}, extra


def _lava_fixed(pops, fixed, seq_int, sim, samples: int) -> dict[str, Any]:
    """Lava fixed_pt against our simulation: every spike and every readout membrane value must match."""
    n = min(samples, seq_int.shape[1])
    if n == 0:
        return {"checked": False, "note": "--lava-samples 0"}
    spikes, readout_v = lava_run.run(pops, seq_int[:, :n], fixed)
    diffs = [int(np.count_nonzero(a != b[:, :n])) for a, b in zip(spikes, sim.spikes, strict=False)]
    total = sum(a.size for a in spikes)
    v_diff = int(np.count_nonzero(readout_v != sim.readout_v[:, :n]))
    return {"checked": True, "samples": n, "spikes_compared": total, "spikes_differing": sum(diffs),
            "readout_values_differing": v_diff, "bit_exact": sum(diffs) == 0 and v_diff == 0,
            "per_layer_differing": dict(zip([p.name for p in pops[:-1]], diffs, strict=False))}


def _lava_float(pops, seq, reference, bundle, out, options, inputs) -> tuple[dict, dict, dict]:
    n = min(options.lava_samples, seq.shape[1])
    if n == 0:
        raise UserError("--lava-samples must be at least 1 for the lava target")
    spikes, readout_v = lava_run.run(pops, seq[:, :n].double().numpy())
    outputs = np.diff(readout_v, axis=0, prepend=np.zeros_like(readout_v[:1]))
    sub = Run(reference.outputs[:, :n], {k: v[:, :n] for k, v in reference.spikes.items()})
    labels = inputs.labels[:n] if inputs.labels is not None else None
    report = compare(sub, _spike_run(pops, spikes, outputs), labels, bundle.model.readout_delay)
    report.update(inputs=f"{inputs.source} (first {n})", compared_with="lava-nc Loihi2SimCfg(floating_pt)",
                  note="lava fires on v > threshold, PyTorch on v >= threshold")
    tensors = {}
    for i, p in enumerate(pops):
        tensors[f"{i}.weight"] = np.ascontiguousarray(p.dense_matrix(), dtype=np.float32)
        tensors[f"{i}.bias"] = p.bias.astype(np.float32)
    write_atomic(out / "lava_weights.safetensors", save_numpy(tensors))
    layout = [{"index": i, "name": p.name, "process": "Dense -> LIFReset", "neurons": p.size,
               "in": int(np.prod(p.in_shape)), "du": 1.0, "dv": 0.0 if p.readout else 1.0 - p.decay,
               "vth": None if p.readout else p.threshold, "readout": p.readout} for i, p in enumerate(pops)]
    write_atomic(out / "lava_network.json", (json.dumps({"T": int(seq.shape[0]), "populations": layout},
                                                        indent=2) + "\n").encode())
    artifacts = {"weights": "lava_weights.safetensors", "network": "lava_network.json"}
    return report, artifacts, {"resources": resources(pops)}
