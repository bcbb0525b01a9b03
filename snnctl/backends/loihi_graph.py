"""The loihi target for converted SNNs: lower to a population graph (`dag`), quantise and simulate in
Loihi 2 fixed point (`loihi_dag`), and check every step of the way.

Checks: the float graph against the PyTorch SNN (the lowering is exact up to float summation order),
the fixed-point simulation against the PyTorch SNN (spikes per layer, accuracy), the written network
files re-read and re-simulated, and lava-nc's bit-accurate models (`Loihi2SimCfg(fixed_pt)`) against
our simulation, bit for bit, one sample per lava run.

The network is written as `loihi_graph.json` (populations, synapses, exponents, delays, neuron
parameters) and `loihi_weights.safetensors` (integer mantissas). There is no netx file: netx describes
chains of CUBA layers, and this graph has residual synapses, delays and self-inhibition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from snnctl.artifact import write_atomic
from snnctl.backends import dag, lava_run
from snnctl.backends import loihi_dag as LD
from snnctl.backends.loihi_fixed import input_messages, input_scale, saturation_warnings
from snnctl.backends.loihi_target import summarise_resources
from snnctl.backends.roundtrip import Run, compare, encoded, run_torch
from snnctl.errors import UserError

GRAPH, WEIGHTS = "loihi_graph.json", "loihi_weights.safetensors"
LAVA_SAMPLES = 4  # each is a lava run of its own, from rest (a few seconds each)


def compile_and_check(bundle: Any, out: Path, options: Any, inputs: Any, T: int) -> tuple[dict, dict, dict]:
    model = bundle.model
    if model.encoding != "direct":
        raise UserError(f"encoding {model.encoding} is not supported for converted SNNs on loihi")
    nodes = dag.lower(model, tuple(inputs.x.shape[1:]))
    seq = encoded(model, inputs.x, T)
    reference = run_torch(model, seq)
    float_spikes, float_out, max_in, max_h = dag.float_run(nodes, seq)
    q = input_scale(seq, options.input_bits)
    try:
        fixed = LD.quantise(nodes, max_in, max_h, q)
    except ValueError as err:
        raise UserError(str(err), hint="the layer's inputs are too large for 24-bit Loihi state") from None
    if options.weight_percentile < 100:
        options.warnings.append("--weight-percentile applies to LIF chains; converted graphs use each synapse's "
                                "largest weight (every synapse has its own exponent)")
    clipped = {f.node.name: sum(e.q.clipped for e in f.edges) for f in fixed if any(e.q.clipped for e in f.edges)}
    if clipped and options.strict:
        name, n = next(iter(clipped.items()))
        raise UserError(f"layer {name}: {n} weights exceed 8 bits x 2^7 after folding the thresholds in",
                        hint="drop --strict to accept the clipping")
    seq_int = input_messages(seq, q)
    sim = LD.simulate(fixed, seq_int)
    report = compare(reference, _run(nodes, sim.spikes, LD.readout_steps(fixed, sim.readout_v), T), inputs.labels,
                     model.readout_delay)
    lowering = compare(reference, _run(nodes, [s.numpy() for s in float_spikes], float_out.numpy(), T))
    report.update(inputs=inputs.source, compared_with="snnctl's bit-accurate Loihi 2 fixed-point simulation",
                  neuron="IF, reset by subtraction: CUBA LIF with du=0 (u integrates), dv=4095, v bias 63, "
                         "self-inhibition -vth; thresholds folded into the weights",
                  float_graph={"spike_agreement": lowering["spike_agreement"],
                               "output_max_abs_diff": lowering["output_max_abs_diff"]})
    options.warnings += saturation_warnings([f.node.name for f in fixed], clipped, sim.overflow,
                                            report["spike_mismatch"], "(a tiny threshold folded into them)")

    write_network(out, fixed, T, q)
    again = LD.simulate(read_network(out), seq_int)
    report["network_files_identical"] = bool(
        all(np.array_equal(a, b) for a, b in zip(again.spikes, sim.spikes, strict=True))
        and np.array_equal(again.readout_v, sim.readout_v))
    report["lava_fixed_pt"] = _lava(fixed, seq_int, sim, options)
    report["quantisation"] = LD.describe(fixed)
    extra = {"resources": resources(fixed)}
    write_atomic(out / "resources.json", (json.dumps(extra["resources"], indent=2) + "\n").encode())
    return report, {"graph": GRAPH, "weights": WEIGHTS, "resources": "resources.json"}, extra


def _run(nodes: list[dag.Node], spikes: list[np.ndarray], outputs: np.ndarray, T: int) -> Run:
    return Run(outputs, {n.name: s.reshape(T, -1, *n.out_shape) for n, s in zip(nodes, spikes, strict=False)})


def _lava(fixed: list[LD.FixedNode], seq_int: np.ndarray, sim: LD.FixedRun, options: Any) -> dict[str, Any]:
    n = min(options.lava_samples, LAVA_SAMPLES, seq_int.shape[1])
    if n == 0:
        return {"checked": False, "note": "--lava-samples 0"}
    if not lava_run.fits_lava(fixed):
        note = (f"not run: a synapse exceeds {lava_run.LAVA_MAX_ENTRIES:,} entries, and lava's CPU models hold "
                "every synapse as a dense matrix")
        options.warnings.append(f"lava cross-check {note}")
        return {"checked": False, "note": note}
    spike_diff = readout_diff = total = 0
    for i in range(n):
        spikes, readout_v = lava_run.run_graph(fixed, seq_int[:, i])
        for got, ours in zip(spikes, sim.spikes, strict=True):
            spike_diff += int(np.count_nonzero(got != ours[:, i].reshape(got.shape)))
            total += got.size
        readout_diff += int(np.count_nonzero(readout_v != sim.readout_v[:, i]))
    return {"checked": True, "samples": n, "spikes_compared": total, "spikes_differing": spike_diff,
            "readout_values_differing": readout_diff, "bit_exact": spike_diff == 0 and readout_diff == 0,
            "note": "one lava run per sample, from rest"}


def resources(fixed: list[LD.FixedNode]) -> dict[str, Any]:
    """Neurons and synapses per population (self-inhibition and control synapses included), and the
    cores they need at least, from Loihi 2 chip totals."""
    counts = []
    for f in fixed:
        syn = sum(e.edge.synapses() for e in f.edges) + int(np.count_nonzero(f.bias.mant))
        syn += int(np.count_nonzero(f.v0.mant)) + (f.node.size if f.inhibit is not None else 0)
        counts.append((f.node.name, f.node.size, syn))
    return summarise_resources(counts)


def write_network(out: Path, fixed: list[LD.FixedNode], T: int, q_in: float) -> None:
    """The graph as JSON (structure, exponents, neuron parameters) plus safetensors (mantissas)."""
    tensors: dict[str, np.ndarray] = {}
    layers = []
    for k, f in enumerate(fixed):
        node = f.node
        synapses = []
        for j, fe in enumerate(f.edges):
            e = fe.edge
            tensors[f"{k}.{j}.weight"] = fe.q.mant.astype(np.int32)
            synapses.append({"from": e.source, "kind": e.kind, "weight_exp": fe.q.exp, "extra_delay": fe.delay,
                             "in_shape": list(e.in_shape), "conv": _conv_json(e.conv)})
        tensors[f"{k}.bias"], tensors[f"{k}.v0"] = f.bias.mant.astype(np.int32), f.v0.mant.astype(np.int32)
        layers.append({"name": node.name, "shape": list(node.out_shape), "depth": node.depth, "readout": node.readout,
                       "du": f.du, "dv": f.dv, "vth": f.vth, "v_bias": f.v_bias, "state_scale": f.scale,
                       "synapses": synapses,
                       "bias_exp": f.bias.exp, "v0_exp": f.v0.exp,
                       "self_inhibition": None if f.inhibit is None else [int(f.inhibit.mant[0]), f.inhibit.exp]})
    doc = {"format": "snnctl-loihi-graph", "version": 1, "T": T, "input_scale": q_in,
           "input": "graded messages round(x * input_scale), one per step, into depth-1 populations",
           "control_lines": "per depth d: a line on during the sample (drives 'bias') and one on at its first "
                            "step (drives 'v0'); population at depth d sees step t at time t + d + 1",
           "populations": layers}
    write_atomic(out / WEIGHTS, save_numpy(tensors))
    write_atomic(out / GRAPH, (json.dumps(doc, indent=2) + "\n").encode())


def _conv_json(conv: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if conv is None else {k: list(v) if isinstance(v, tuple) else v for k, v in conv.items()}


def read_network(folder: Path) -> list[LD.FixedNode]:
    """Rebuild the fixed-point graph from the two files alone (what the round trip re-simulates)."""
    doc = json.loads((folder / GRAPH).read_text())
    tensors = load_numpy((folder / WEIGHTS).read_bytes())
    fixed: list[LD.FixedNode] = []
    for k, layer in enumerate(doc["populations"]):
        shape = tuple(layer["shape"])
        edges = []
        for j, s in enumerate(layer["synapses"]):
            mant = tensors[f"{k}.{j}.weight"].astype(np.int64)
            conv = None if s["conv"] is None else {key: tuple(v) if isinstance(v, list) else v
                                                   for key, v in s["conv"].items()}
            edge = dag.Edge(s["from"], s["kind"], mant.astype(np.float64), tuple(s["in_shape"]), shape, conv)
            edges.append(LD.FixedEdge(edge, LD.Quantised(mant, s["weight_exp"]), s["extra_delay"]))
        node = dag.Node(layer["name"], shape, [fe.edge for fe in edges], np.zeros(0), np.zeros(0),
                        readout=layer["readout"], depth=layer["depth"])
        inhibit = layer["self_inhibition"]
        fixed.append(LD.FixedNode(
            node, edges, LD.Quantised(tensors[f"{k}.bias"].astype(np.int64), layer["bias_exp"]),
            LD.Quantised(tensors[f"{k}.v0"].astype(np.int64), layer["v0_exp"]), layer["state_scale"],
            vth=layer["vth"], du=layer["du"], dv=layer["dv"], v_bias=layer["v_bias"],
            inhibit=None if inhibit is None else LD.Quantised(np.array([inhibit[0]], np.int64), inhibit[1])))
    return fixed
