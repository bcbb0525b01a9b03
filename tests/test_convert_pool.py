"""The differenced max pool and the signed IF neuron of conversion (benchmarks/studies/conversion-28x28.md)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snnctl.conversion import convert as C
from snnctl.conversion.graph import neurons, rewrite
from snnctl.conversion.neuron import AnalogOp, Converted, RateMaxPool, SignedIF


def currents(T: int, seed: int = 0) -> torch.Tensor:
    """Fluctuating currents [T*B, C, H, W] whose windows are nearly tied in mean: the hard case."""
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 + 0.02 * torch.rand(1, 2, 3, 4, 4, generator=g)
    return (mean + torch.randn(T, 2, 3, 4, 4, generator=g)).reshape(T * 2, 3, 4, 4)


def test_differenced_pool_sums_to_T_times_the_max_of_the_means_exactly():
    T = 16
    x = currents(T)
    pool = RateMaxPool(nn.MaxPool2d(2), differenced=True)
    pool.T = T
    total = pool(x).reshape(T, 2, 3, 2, 2).sum(0)
    expected = nn.functional.max_pool2d(x.reshape(T, 2, 3, 4, 4).sum(0), 2)
    assert torch.allclose(total, expected, atol=1e-5)
    # The gate it replaces is biased upwards on the same near-tied windows.
    gate = RateMaxPool(nn.MaxPool2d(2), differenced=False)
    gate.T = T
    assert float(gate(x).reshape(T, 2, 3, 2, 2).sum(0).mean()) > float(expected.mean()) + 0.5


@pytest.mark.parametrize("differenced", [True, False])
def test_streaming_a_pool_in_chunks_equals_one_batch_run(differenced):
    T = 12
    x = currents(T, seed=1)
    batch = RateMaxPool(nn.MaxPool2d(2), differenced)
    batch.T = T
    whole = batch(x)
    stream = RateMaxPool(nn.MaxPool2d(2), differenced)
    stream.carry_state = True
    parts = []
    for start, steps in ((0, 1), (1, 4), (5, 7)):
        stream.T = steps
        parts.append(stream(x[start * 2 : (start + steps) * 2]))
    assert torch.allclose(torch.cat(parts), whole, atol=1e-5)


def test_signed_neuron_count_follows_the_floor_of_the_summed_input():
    """Input that rises then falls: a plain IF neuron keeps the spikes of the rise, the signed one
    takes them back, so its net count is clamp(floor(v0 + summed input), 0, t) at every step."""
    T = 40
    ramp = torch.cat([torch.full((10,), 0.75), torch.full((30,), -0.25)])
    x = torch.stack([ramp, torch.full((T,), 0.375), -ramp]).T.reshape(T, 3)  # [T, B=3]
    v0 = 0.5
    signed = SignedIF()
    x0 = x.clone()
    x0[0] += v0
    spikes, _ = signed.run(x0)
    count = spikes.cumsum(0)
    steps = torch.arange(1, T + 1).unsqueeze(1).float()
    expected = torch.minimum(torch.floor(v0 + x.cumsum(0)).clamp(min=0), steps)
    assert torch.equal(count, expected)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0} and (spikes < 0).any()


def test_signed_and_graded_are_refused_together():
    with pytest.raises(ValueError, match="signed or graded"):
        Converted(AnalogOp("relu"), graded_levels=4, signed=True)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    from snnctl.errors import UserError

    with pytest.raises(UserError, match="signed neurons take one spike per step"):
        C.convert(model, C.Options(method="graded", signed=True), torch.rand(8, 4))
    with pytest.raises(UserError, match="unknown max pooling mode"):
        C.convert(model, C.Options(maxpool="fast"), torch.rand(8, 4))


def test_rewrite_picks_the_pool_and_neuron_the_options_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)).eval()
    for maxpool, differenced in (("diff", True), ("rate", False)):
        gm, _ = rewrite(model, maxpool=maxpool, signed=True)
        pools = [m for m in gm.modules() if isinstance(m, RateMaxPool)]
        assert [p.differenced for p in pools] == [differenced]
        assert all(n.signed and isinstance(n.neuron, SignedIF) for _, n in neurons(gm))


def test_signed_bundle_reloads_and_is_refused_by_targets_without_negative_spikes(cli, trained, tmp_path):
    out = tmp_path / "signed"
    r = cli("convert", trained["ann"], "--dataset", "digits", "--T", "4", "--signed", "--out", out, "--json")
    assert r.code == 0, r.err
    manifest = json.loads((out / "snnctl.json").read_text())
    assert manifest["conversion"]["signed"] is True and manifest["conversion"]["maxpool"] == "diff"
    assert manifest["neuron"]["type"] == "signed-if" and json.loads(r.out)["spikes"].startswith("signed")
    bench = cli("bench", out, "--dataset", "digits", "--json")
    assert bench.code == 0, bench.err
    assert json.loads(bench.out)["model"]["accuracy"] == pytest.approx(json.loads(r.out)["test_acc"], abs=1e-6)
    refused = cli("compile", out, "--target", "onnx", "--out", tmp_path / "onnx")
    assert refused.code == 2 and "takes no negative spikes" in refused.err and not (tmp_path / "onnx").exists()
    early = cli("convert", trained["ann"], "--dataset", "digits", "--signed", "--target", "onnx",
                "--out", tmp_path / "never")
    assert early.code == 2 and "--signed" in early.err and not (tmp_path / "never").exists()


def test_bundles_converted_with_the_gate_keep_it_on_reload(cli, trained, tmp_path):
    out = tmp_path / "gated"
    r = cli("convert", trained["ann"], "--dataset", "digits", "--T", "4", "--maxpool", "rate", "--out", out,
            "--target", "onnx", "--json")
    assert r.code == 0, r.err
    trip = json.loads(r.out)["compiled"]["roundtrip"]
    assert trip["spike_agreement"] == 1.0 and trip["output_max_abs_diff"] < 1e-5
    from snnctl.artifact import load_bundle

    pools = [m for m in load_bundle(out).model.modules() if isinstance(m, RateMaxPool)]
    assert pools and not any(p.differenced for p in pools)
