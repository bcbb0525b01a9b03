"""Converted SNNs on Loihi 2: the population graph (thresholds folded into weights, residual synapses),
the fixed-point IF neuron with reset by subtraction, and bit-exact agreement with lava fixed_pt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from snnctl.artifact import load_bundle
from snnctl.backends import dag
from snnctl.backends import loihi_dag as LD
from snnctl.backends.roundtrip import compare, encoded, run_torch
from snnctl.backends.targets import CompileOptions, compile_loihi
from snnctl.cli import run
from snnctl.data import load_dataset

RESNET = ["--set", "stem_type=small", "--set", "width=2", "--set", "in_channels=1", "--set", "num_classes=10"]


@pytest.fixture(scope="module")
def converted_resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 (small stem, width 2, random init) converted on digits: residual adds, 1x1 shortcuts."""
    out = tmp_path_factory.mktemp("graph") / "resnet"
    assert run(["convert", "resnet18", *RESNET, "--dataset", "digits", "--T", "4", "--calibration-samples", "64",
                "--out", str(out), "--json"]) == 0
    return out


def test_lowering_folds_thresholds_and_is_exact(converted_resnet):
    model = load_bundle(converted_resnet).model
    x = load_dataset("digits").x_test[:24].float()
    nodes = dag.lower(model, tuple(x.shape[1:]))
    kinds = {e.kind for n in nodes for e in n.edges}
    assert kinds == {"conv", "scale", "dense"}  # convs, identity shortcuts, pooled readout
    joins = [n for n in nodes if len(n.edges) == 2]
    assert len(joins) == 8 and all(n.depth > max(nodes[e.source].depth for e in n.edges) for n in joins)
    assert nodes[-1].readout and not any(n.readout for n in nodes[:-1])
    seq = encoded(model, x, 4)
    spikes, outputs, _, _ = dag.float_run(nodes, seq)
    reference = run_torch(model, seq)
    lowered = {n.name: s.reshape(4, -1, *n.out_shape).numpy() for n, s in zip(nodes, spikes, strict=False)}
    assert set(lowered) == set(reference.spikes)
    report = compare(reference, type(reference)(outputs.numpy(), lowered))
    assert report["spike_agreement"] >= 0.999  # float32 PyTorch against float64: a threshold-edge flip at most


def test_converted_resnet_on_loihi_is_bit_exact_with_lava(converted_resnet, tmp_path):
    summary = compile_loihi(converted_resnet, tmp_path / "out", CompileOptions(dataset="digits", samples=16,
                                                                              lava_samples=1))
    trip = summary["roundtrip"]
    lava = trip["lava_fixed_pt"]
    assert lava["checked"] and lava["spikes_compared"] > 0 and lava["bit_exact"], lava
    assert trip["network_files_identical"] and trip["float_graph"]["spike_agreement"] >= 0.999
    assert trip["accuracy"]["compiled"] is not None and len(trip["layers"]) == 17
    for layer in trip["quantisation"][:-1]:
        mant, exp = layer["self_inhibition"]
        assert mant * 2 ** exp == -layer["vth_mant"]  # subtracts exactly one threshold
    graph = json.loads((tmp_path / "out" / "loihi_graph.json").read_text())
    assert graph["format"] == "snnctl-loihi-graph" and len(graph["populations"]) == 18
    assert any(s["extra_delay"] == 1 for p in graph["populations"] for s in p["synapses"])  # shortcuts wait a hop
    resources = json.loads((tmp_path / "out" / "resources.json").read_text())
    assert resources["neurons"] == sum(int(np.prod(p["shape"])) for p in graph["populations"])


def one_population(weight: float, v0: float) -> dag.Node:
    edge = dag.Edge(dag.INPUT, "dense", np.array([[weight]]), (1,), (1,))
    return dag.Node("if", (1,), [edge], bias=np.zeros(1), v0=np.array([v0]))


def readout(source: int) -> dag.Node:
    return dag.Node("readout", (1,), [dag.Edge(source, "dense", np.array([[1.0]]), (1,), (1,))], np.zeros(1),
                    np.zeros(1), readout=True, depth=2)


def test_fixed_point_if_resets_by_subtraction_and_fires_at_the_threshold():
    """Hand-worked: v0 0.5, input 0.625 per step. h = 1.125 (fire, keep 0.125), 0.75, 1.375 (fire, keep
    0.375), 1.0 (fire: h >= threshold, as in PyTorch), 0.625."""
    nodes = [one_population(0.625, 0.5), readout(0)]
    S = 64.0  # one threshold = 64 * 64 in the registers; 0.625 and 0.5 are exact at this scale
    fixed = [LD.FixedNode(nodes[0], [LD.FixedEdge(nodes[0].edges[0], LD.Quantised(np.array([[40]]), 0), 0)],
                          LD.Quantised(np.zeros(1, np.int64), 0), LD.Quantised(np.array([32]), 0), S, vth=64, du=0,
                          dv=4095, inhibit=LD.Quantised(np.array([-64]), 0), v_bias=LD.AT_THRESHOLD),
             LD.FixedNode(nodes[1], [LD.FixedEdge(nodes[1].edges[0], LD.Quantised(np.array([[2]]), 0), 0)],
                          LD.Quantised(np.zeros(1, np.int64), 0), LD.Quantised(np.zeros(1, np.int64), 0), 2.0,
                          vth=LD.VTH_MAX, du=4095, dv=0, inhibit=None)]
    seq = torch.ones(5, 1, 1)
    expected = [1, 0, 1, 1, 0]
    sim = LD.simulate(fixed, seq.numpy().astype(np.int64))
    assert sim.spikes[0].ravel().tolist() == expected
    float_spikes, outputs, _, _ = dag.float_run(nodes, seq)
    assert float_spikes[0].ravel().tolist() == expected
    assert LD.readout_steps(fixed, sim.readout_v).ravel().tolist() == outputs.ravel().tolist()


def test_loihi_refuses_max_pooling_and_graded_spikes_by_layer(cli, tmp_path):
    # --maxpool rate keeps the max pooling (auto swaps it for average pooling on loihi, reported)
    for extra, words in ((["--set", "pool=max", "--maxpool", "rate"],
                          "rate-gated max pooling has no Loihi neuron form"),
                         (["--method", "graded"], "graded spikes (method graded) are not mapped to Loihi")):
        r = cli("convert", "cnn", "--set", "channels=[4, 8]", *extra, "--dataset", "digits", "--T", "2",
                "--target", "loihi", "--out", tmp_path / "never")
        assert r.code == 2 and words in r.err and "Traceback" not in r.err
        assert not (tmp_path / "never").exists()
