"""Compile targets: NIR (write, read back, peer import), ONNX (onnxruntime), Lava float, Loihi 2 fixed
point (bit-exact against lava fixed_pt), netx HDF5, and the CLI's contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
import torch

from snnctl.artifact import load_bundle, make_manifest, save_bundle
from snnctl.backends import lava_compat
from snnctl.backends import loihi_fixed as LF
from snnctl.backends.extract import ExportOptions, to_nir
from snnctl.backends.nir_target import network_from_nir
from snnctl.backends.roundtrip import encoded, run_torch
from snnctl.backends.targets import CompileOptions, compile_lava, compile_loihi, compile_nir, compile_onnx
from snnctl.errors import UserError
from snnctl.zoo import build_network

CNN = {"channels": [4, 8], "pool": "avg"}
RESNET = {"num_classes": 10, "in_channels": 1, "stem_type": "small", "width": 4}
ZERO = {"type": "lif", "tau": 2.0, "reset": "zero", "threshold": 0.3}


def make_bundle(path: Path, name: str = "cnn", config: dict | None = None, neuron: dict | None = None,
                T: int = 4, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = CNN if config is None else config
    neuron = ZERO if neuron is None else neuron
    model = build_network(name, config, kind="snn", neuron=neuron, T=T).eval()
    save_bundle(path, model, make_manifest(zoo_name=name, zoo_config=config, kind="snn", neuron=neuron, T=T,
                                           encoding="direct"))
    return path


def opts(**kw) -> CompileOptions:
    base = {"input_shape": (1, 8, 8), "samples": 32, "lava_samples": 6}
    return CompileOptions(**{**base, **kw})


# ------------------------------------------------------------------ lava on Python 3.11

def test_hook_rewrites_mutable_dataclass_defaults_and_the_fork_call():
    src = "@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n"
    assert "default_factory=ByteEncoder" in lava_compat.patch_source(src)
    mp = "import multiprocessing as mp\nmp.set_start_method('fork')\n"
    assert "allow_none=True" in lava_compat.patch_source(mp, lava_compat.MULTIPROCESSING)


def test_lava_imports_through_the_hook():
    module = lava_compat.import_lava(lava_compat.VAR_MODEL)
    assert lava_compat._patched(module)
    assert module.CoreEncoder().x is not module.CoreEncoder().x  # a factory: no shared mutable default


# ------------------------------------------------------------------ NIR

def test_nir_round_trip_is_exact_and_records_its_conventions(tmp_path):
    summary = compile_nir(make_bundle(tmp_path / "b"), tmp_path / "out", opts())
    rt = summary["roundtrip"]
    assert rt["spike_mismatch"] == 0.0 and rt["output_max_abs_diff"] < 1e-5
    assert all(layer["rate_reference"] > 0 for layer in rt["layers"])  # the comparison saw spikes
    graph = nir.read(str(tmp_path / "out" / "model.nir"))
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine"} <= kinds
    assert tuple(int(v) for v in graph.nodes["0"].input_shape) == (8, 8)
    assert tuple(graph.nodes["input"].input_type["input"]) == (1, 8, 8)  # no batch dimension
    manifest = json.loads((tmp_path / "out" / "compile.json").read_text())
    assert manifest["options"]["dt"] == 1e-4 and manifest["options"]["discretisation"] == "euler"


def test_nir_exports_residual_adds_as_summed_edges(tmp_path):
    summary = compile_nir(make_bundle(tmp_path / "b", "resnet18", RESNET), tmp_path / "out",
                          opts(input_shape=(1, 16, 16)))
    assert summary["roundtrip"]["spike_mismatch"] == 0.0
    graph = nir.read(str(tmp_path / "out" / "model.nir"))
    into = {}
    for a, b in graph.edges:
        into.setdefault(b, []).append(a)
    assert max(len(v) for v in into.values()) == 2  # a block's neuron fed by conv path and shortcut


@pytest.mark.parametrize("scheme", ["euler", "exact"])
def test_tau_and_r_follow_dt_and_the_discretisation(scheme):
    model = build_network("mlp", {"in_features": 4, "hidden": [3], "num_classes": 2}, kind="snn",
                          neuron={"type": "lif", "decay": 0.8, "reset": "zero"})
    graph = to_nir(model, (4,), ExportOptions(dt=1e-3, discretisation=scheme))
    lif = next(n for n in graph.nodes.values() if isinstance(n, nir.LIF))
    tau, r = float(lif.tau[0]), float(lif.r[0])
    decay = 1 - 1e-3 / tau if scheme == "euler" else np.exp(-1e-3 / tau)
    assert decay == pytest.approx(0.8, rel=1e-6)  # the decay buffer is float32
    assert r * (1 - 0.8) == pytest.approx(1.0)  # unit input gain, as snnTorch reads it


def test_subtract_reset_is_refused_unless_asked_and_then_the_cost_is_shown(tmp_path):
    neuron = {**ZERO, "reset": "subtract", "threshold": 0.1}
    bundle = make_bundle(tmp_path / "b", neuron=neuron)
    with pytest.raises(UserError, match="resets by subtraction"):
        compile_nir(bundle, tmp_path / "refused", opts())
    assert not (tmp_path / "refused").exists()  # nothing written
    summary = compile_nir(bundle, tmp_path / "out", opts(reset="zero"))
    assert summary["roundtrip"]["spike_mismatch"] > 0.0


def test_max_pooling_is_refused_naming_the_layer(tmp_path):
    bundle = make_bundle(tmp_path / "b", config={"channels": [4, 8], "pool": "max"})
    with pytest.raises(UserError, match=r"layer 3: max pooling"):
        compile_nir(bundle, tmp_path / "out", opts())


def agreement_with_snntorch(peer: torch.nn.Module, neurons: list[torch.nn.Module], ours: Any, seq: torch.Tensor,
                            min_rate: float) -> float:
    """Step snnTorch's network one sample at a time (it imports NIR Flatten(0) as torch Flatten(0)),
    record each neuron layer's spikes and return the fraction equal to ours (each layer must fire)."""
    from snntorch import utils as snn_utils

    T, B = seq.shape[:2]
    recorded: list[list[torch.Tensor]] = [[] for _ in neurons]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: recorded[k].append(o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(neurons)]
    with torch.no_grad():
        for b in range(B):
            snn_utils.reset(peer)
            for t in range(T):
                peer(seq[t, b])
    for h in hooks:
        h.remove()
    agree = total = 0
    for k, (name, spikes) in enumerate(ours.spikes.items()):
        theirs = torch.stack(recorded[k]).reshape(B, T, -1).transpose(0, 1).numpy()
        agree += int((theirs == spikes.reshape(T, B, -1)).sum())
        total += spikes.size
        assert spikes.mean() > min_rate, name
    return agree / total


def test_snntorch_imports_our_nir_and_spikes_the_same(tmp_path):
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    torch.manual_seed(0)
    T = 16
    model = build_network("mlp", {"in_features": 20, "hidden": [64, 48], "num_classes": 5}, kind="snn",
                          neuron={"type": "lif", "tau": 2.0, "reset": "zero", "threshold": 0.5}, T=T).eval()
    peer = import_from_nir(to_nir(model, (20,), ExportOptions()))
    leaky = [m for m in peer.modules() if isinstance(m, snn.Leaky)]
    assert len(leaky) == 2
    seq = encoded(model, torch.rand(24, 20) * 2, T)
    assert agreement_with_snntorch(peer, leaky, run_torch(model, seq), seq, min_rate=0.01) >= 0.99


def cuba_graph() -> nir.NIRGraph:
    """Affine -> CubaLIF -> Affine -> CubaLIF in snnTorch's conventions (dt 1e-4, unit input gains)."""
    rng = np.random.default_rng(0)
    dt = 1e-4

    def cuba(n: int, alpha: float, beta: float) -> nir.CubaLIF:
        tau_syn, tau_mem = np.full(n, dt / (1 - alpha)), np.full(n, dt / (1 - beta))
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(n), w_in=tau_syn / dt,
                           v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))

    return nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([10])),
        nir.Affine(weight=rng.normal(0, 0.5, (16, 10)).astype(np.float32),
                   bias=rng.normal(0, 0.1, 16).astype(np.float32)),
        cuba(16, 0.8, 0.9),
        nir.Affine(weight=rng.normal(0, 0.5, (4, 16)).astype(np.float32), bias=np.zeros(4, np.float32)),
        cuba(4, 0.7, 0.85),
        nir.Output(output_type=np.array([4])),
    )


@pytest.mark.parametrize("source", ["graph", "re-exported"])
def test_cubalif_imports_and_spikes_as_snntorch_does(source):
    """The same CubaLIF graph read by snnTorch (import_from_nir -> Synaptic) and by snnctl (a synaptic
    current node before an LIF): identical spikes over T steps. Also for snnctl's own export of the
    imported network (the pairs written back as CubaLIF nodes) read by snnTorch."""
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    T, graph = 20, cuba_graph()
    ours, spec = network_from_nir(graph, ExportOptions(), T)
    assert [e["type"] for e in spec["nodes"]].count("synapse") == 2
    if source == "re-exported":
        graph = to_nir(ours, (10,), ExportOptions())
        assert sum(isinstance(n, nir.CubaLIF) for n in graph.nodes.values()) == 2
    peer = import_from_nir(graph)
    synaptic = [m for m in peer.modules() if isinstance(m, snn.Synaptic)]
    assert [m.reset_mechanism for m in synaptic] == ["zero", "zero"]
    seq = encoded(ours, torch.rand(32, 10) * 2, T)
    assert agreement_with_snntorch(peer, synaptic, run_torch(ours, seq), seq, min_rate=0.05) >= 0.99


def test_cubalif_file_converts_to_a_bundle_that_round_trips_through_nir(tmp_path, cli):
    """Imported CubaLIFs become a synaptic-current layer + LIF; exported again, the current is NIR's LI."""
    nir.write(str(tmp_path / "cuba.nir"), cuba_graph())
    result = cli("convert", tmp_path / "cuba.nir", "--T", "8", "--out", tmp_path / "cuba", "--json")
    assert result.code == 0, result.err
    bundle = load_bundle(tmp_path / "cuba")
    with torch.no_grad():
        assert bundle.model(torch.rand(3, 10)).shape == (3, 4)
    again = cli("compile", tmp_path / "cuba", "--target", "nir", "--out", tmp_path / "nir", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["roundtrip"]["spike_agreement"] == 1.0
    exported = nir.read(str(tmp_path / "nir" / "model.nir"))
    assert sum(isinstance(n, nir.CubaLIF) for n in exported.nodes.values()) == 2  # current + LIF fused again
    assert not any(isinstance(n, nir.LI) for n in exported.nodes.values())
    refused = cli("compile", tmp_path / "cuba", "--target", "onnx", "--out", tmp_path / "onnx")
    assert refused.code == 2 and "Synapse" in refused.err and not (tmp_path / "onnx").exists()
    refused = cli("compile", tmp_path / "cuba", "--target", "loihi", "--out", tmp_path / "loihi")
    assert refused.code == 2 and "cubalif__synapse is a synaptic current" in refused.err


def test_convert_imports_a_nir_file_as_an_snn_bundle(tmp_path, cli):
    compile_nir(make_bundle(tmp_path / "b"), tmp_path / "nir", opts())
    result = cli("convert", tmp_path / "nir" / "model.nir", "--T", "4", "--out", tmp_path / "imported", "--json")
    assert result.code == 0, result.err
    original, imported = load_bundle(tmp_path / "b").model, load_bundle(tmp_path / "imported").model
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(original(x), imported(x), atol=1e-5)


# ------------------------------------------------------------------ ONNX

@pytest.mark.parametrize("name,config,shape,reset", [("cnn", CNN, (1, 8, 8), "subtract"),
                                                     ("resnet18", RESNET, (1, 16, 16), "zero")])
def test_onnx_scan_matches_pytorch_exactly(tmp_path, name, config, shape, reset):
    bundle = make_bundle(tmp_path / "b", name, config, {**ZERO, "reset": reset})
    summary = compile_onnx(bundle, tmp_path / "out", opts(input_shape=shape))
    rt = summary["roundtrip"]
    assert rt["spike_mismatch"] == 0.0 and rt["output_max_abs_diff"] < 1e-5
    assert rt["step_max_abs_diff_random_state"] < 1e-5
    assert (tmp_path / "out" / "model.step.onnx").is_file() and (tmp_path / "out" / "model.seq.onnx").is_file()


# ------------------------------------------------------------------ Loihi 2 fixed point and lava

def test_loihi_decay_truncates_toward_zero_like_the_chip():
    x = np.array([5, -5, 4095, -4095])
    assert LF.decay(x, 2048).tolist() == [2, -2, 2047, -2047]
    assert LF.wrap24(np.array([(1 << 23) + 1, -(1 << 23)])).tolist() == [-(1 << 23) + 1, 1 << 23]


def test_loihi_simulation_is_bit_exact_with_lava_fixed_pt_and_the_netx_file(tmp_path):
    summary = compile_loihi(make_bundle(tmp_path / "b"), tmp_path / "out", opts())
    rt = summary["roundtrip"]
    lava = rt["lava_fixed_pt"]
    assert lava["checked"] and lava["spikes_compared"] > 0
    assert lava["bit_exact"], lava
    assert rt["netx_file_identical"]
    assert all(layer["rate_compiled"] > 0 for layer in rt["layers"])
    assert rt["spike_mismatch"] < 0.05  # quantisation, not a broken mapping
    quant = rt["quantisation"]
    assert all(q["weight_range"][0] >= -256 and q["weight_range"][1] <= 254 for q in quant)
    assert all(q["vth_mant"] <= 131071 and q["dv"] == 2048 for q in quant if not q["readout"])
    res = summary["resources"]
    assert res["neurons"] == 4 * 8 * 8 + 8 * 4 * 4 + 10
    assert res["cores"] >= len(res["layers"])


def test_netx_file_has_the_layout_netx_reads(tmp_path):
    import h5py

    compile_loihi(make_bundle(tmp_path / "b"), tmp_path / "out", opts(lava_samples=0))
    with h5py.File(tmp_path / "out" / "model.net", "r") as h:
        layers = h["layer"]
        types = [layers[str(i)]["type"][0] for i in range(len(layers))]
        assert types == [b"input", b"conv", b"flatten", b"dense", b"dense"]
        assert list(layers["0"]["shape"][()]) == [1, 8, 8]  # (features, y, x): netx reverses it to (x, y, f)
        conv = layers["1"]
        assert conv["weight"].shape == (4, 1, 3, 3) and conv["weight"].dtype.kind == "i"
        neuron = conv["neuron"]
        assert neuron["type"][0] == b"CUBA" and int(neuron["iDecay"][()]) == 4096 and int(neuron["vDecay"][()]) == 2048


def test_lava_float_agrees_with_pytorch(tmp_path):
    summary = compile_lava(make_bundle(tmp_path / "b"), tmp_path / "out", opts())
    rt = summary["roundtrip"]
    assert rt["samples"] == 6 and rt["spike_agreement"] >= 0.999
    assert (tmp_path / "out" / "lava_weights.safetensors").is_file()


def test_loihi_refuses_a_residual_network_naming_the_join(tmp_path):
    bundle = make_bundle(tmp_path / "b", "resnet18", RESNET)
    with pytest.raises(UserError, match="residual add"):
        compile_loihi(bundle, tmp_path / "out", opts(input_shape=(1, 16, 16)))


def test_weight_saturation_warns_with_its_cost_or_fails_under_strict(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    summary = compile_loihi(bundle, tmp_path / "out", opts(weight_percentile=90.0, lava_samples=0))
    assert any("clipped to 8 bits" in w and "spike mismatch" in w for w in summary["warnings"])
    with pytest.raises(UserError, match="saturate 8 bits"):
        compile_loihi(bundle, tmp_path / "strict", opts(weight_percentile=90.0, strict=True))
    assert not (tmp_path / "strict").exists()


# ------------------------------------------------------------------ CLI

def test_compile_list_names_the_targets(cli):
    result = cli("compile", "--list", "--json")
    assert result.code == 0
    assert {t["name"] for t in json.loads(result.out)} >= {"nir", "onnx", "lava", "loihi"}


def test_compile_cli_json_and_bad_input(tmp_path, cli):
    bundle = make_bundle(tmp_path / "b")
    ok = cli("compile", bundle, "--target", "onnx", "--input-shape", "1,8,8", "--samples", "8", "--json",
             "--out", tmp_path / "onnx")
    assert ok.code == 0 and json.loads(ok.out)["roundtrip"]["spike_mismatch"] == 0.0
    for args, message in [
        (("--target", "spinnaker"), "no compile target 'spinnaker'"),
        (("--target", "nir", "--discretisation", "rk4"), "unknown discretisation 'rk4'"),
        (("--target", "nir", "--input-shape", "a,b"), "--input-shape expects"),
    ]:
        bad = cli("compile", bundle, *args, "--out", tmp_path / "bad")
        assert bad.code == 2 and message in bad.err and bad.err.count("\n") == 1, bad.err
    assert not (tmp_path / "bad").exists()
    missing = cli("compile", tmp_path / "nope", "--target", "nir")
    assert missing.code == 2 and "bundle not found" in missing.err


def test_compile_dot_names_the_output_after_the_folder(tmp_path, cli, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    monkeypatch.chdir(bundle)
    ok = cli("compile", ".", "--target", "nir", "--input-shape", "1,8,8", "--samples", "4", "--json")
    assert ok.code == 0, ok.err
    assert (tmp_path / "b-nir" / "compile.json").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    bad = cli("compile", ".", "--target", "nir")
    assert bad.code == 2 and "not an snnctl bundle" in bad.err and bad.err.count("\n") == 1, bad.err


def test_compile_input_shape_that_does_not_fit_is_one_line(tmp_path, cli):
    bundle = make_bundle(tmp_path / "b")
    bad = cli("compile", bundle, "--target", "nir", "--input-shape", "3,32,32", "--out", tmp_path / "out")
    assert bad.code == 2 and bad.err.count("\n") == 1, bad.err
    assert "--input-shape 3x32x32 does not fit" in bad.err and "1 input channel" in bad.err
    assert "Traceback" not in bad.err and "ShapeProp" not in bad.err  # nothing from torch's tracer
    assert not (tmp_path / "out").exists()
    from snnctl.config import load_recipe

    recorded = tmp_path / "r"  # a bundle whose recipe names its dataset (digits: 1x8x8)
    model = build_network("cnn", CNN, kind="snn", neuron=ZERO, T=4).eval()
    recipe = load_recipe("digits-snn").model_dump(mode="json")
    save_bundle(recorded, model, make_manifest(zoo_name="cnn", zoo_config=CNN, kind="snn", neuron=ZERO, T=4,
                                               encoding="direct", recipe=recipe))
    named = cli("compile", recorded, "--target", "onnx", "--input-shape", "3,8,8", "--out", tmp_path / "o2")
    assert named.code == 2 and "3x8x8 does not fit the model, which takes 1x8x8" in named.err, named.err
    assert "use --input-shape 1,8,8" in named.err and named.err.count("\n") == 1


def test_result_table_copes_with_a_third_party_target_report(capsys):
    from snnctl_plugins.compile import print_summary

    print_summary({"target": "echo", "out": "o", "artifacts": {"echo": "echo.json"}, "roundtrip": {}})
    assert "Wrote o (echo.json, compile.json)" in capsys.readouterr().out
    print_summary({"out": "o", "roundtrip": {"layers": [{"layer": "lif1", "mismatch": 0.5}]}})
    assert "lif1" in capsys.readouterr().out


def test_targets_declare_whether_they_take_converted_snns():
    from snnctl.backends.targets import find_target

    assert find_target("onnx", converted=True) is compile_onnx
    assert find_target("loihi", converted=True) is compile_loihi
    for name in ("nir", "lava"):
        with pytest.raises(UserError, match=r"does not take converted SNNs.*use --target loihi or onnx"):
            find_target(name, converted=True)
    with pytest.raises(UserError, match=r"no compile target 'x'.*installed: lava, loihi, nir, onnx"):
        find_target("x")
