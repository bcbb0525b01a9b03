"""Event-driven streaming: same outputs as the dense multi-step model, and the path chosen by rate."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from snnctl.nn.events import EventLinear, Streamer, event_linear_torch
from snnctl.nn.kernels import clib
from snnctl.zoo import build_network


def spikes(n: int, active: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, n)
    x[0, torch.randperm(n, generator=g)[:active]] = 1.0
    return x


@pytest.mark.parametrize("bias", [True, False])
def test_event_linear_matches_dense_below_crossover(bias: bool) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(300, 70, bias=bias)
    layer = EventLinear(linear, crossover=0.5)
    x = spikes(300, 40)
    with torch.no_grad():
        out = layer(x)
        torch.testing.assert_close(out, F.linear(x, linear.weight, linear.bias), atol=1e-5, rtol=1e-5)
    assert (layer.events, layer.dense) == (1, 0)


def test_event_linear_goes_dense_above_crossover_for_non_binary_and_batches() -> None:
    linear = torch.nn.Linear(100, 10)
    layer = EventLinear(linear, crossover=0.2)
    with torch.no_grad():
        layer(spikes(100, 30))  # 30% active > 20%
        layer(torch.rand(1, 100))  # not binary
        layer(torch.cat([spikes(100, 5), spikes(100, 5, seed=1)]))  # batch 2
    assert (layer.events, layer.dense) == (0, 3)
    layer(spikes(100, 5))  # grad enabled: training never takes the event path
    assert layer.events == 0


def test_event_linear_follows_weight_updates() -> None:
    linear = torch.nn.Linear(50, 5)
    layer = EventLinear(linear, crossover=1.0)
    x = spikes(50, 10)
    with torch.no_grad():
        layer(x)
        linear.weight.mul_(2)
        torch.testing.assert_close(layer(x), F.linear(x, linear.weight, linear.bias), atol=1e-5, rtol=1e-5)


def test_torch_fallback_matches_dense() -> None:
    linear = torch.nn.Linear(64, 8)
    x = spikes(64, 9)
    out = event_linear_torch(x, linear.weight.detach().t().contiguous(), linear.bias.detach())
    torch.testing.assert_close(out, F.linear(x, linear.weight, linear.bias).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(clib() is None, reason="native kernel not built")
def test_native_event_kernel_in_use() -> None:
    linear = torch.nn.Linear(64, 8)
    layer = EventLinear(linear, crossover=1.0)
    with torch.no_grad():
        assert layer._event(spikes(64, 3)) is not None
        assert layer._event(torch.full((1, 64), 0.5)) is None


@pytest.mark.parametrize("neuron", ["lif", "alif", "if"])
def test_streamer_equals_multistep_network(neuron: str) -> None:
    torch.manual_seed(1)
    net = build_network(
        "mlp", {"in_features": 16, "hidden": [64, 64], "num_classes": 4}, kind="snn", neuron={"type": neuron}, T=6
    ).eval()
    seq = torch.rand(6, 1, 16) * 2
    with torch.no_grad():
        expected = net.forward_sequence(seq)
    streamer = Streamer(net, crossover=1.0)
    torch.testing.assert_close(streamer.run(seq), expected, atol=1e-5, rtol=1e-5)
    counts = streamer.path_counts()
    assert counts["event"] > 0  # the hidden->hidden and readout layers see binary spikes
    streamer.reset()
    torch.testing.assert_close(streamer.run(seq), expected, atol=1e-5, rtol=1e-5)  # state was reset


def test_streamer_shares_weights_and_leaves_network_alone() -> None:
    net = build_network("mlp", {"in_features": 8, "hidden": [16], "num_classes": 2}, kind="snn", neuron={}, T=2)
    streamer = Streamer(net)
    linear = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    assert any(layer.linear.weight is linear.weight for layer in streamer.event_layers)
    assert not any(isinstance(m, EventLinear) for m in net.modules())
    with pytest.raises(ValueError, match="batch 1"):
        streamer.step(torch.rand(2, 8))


def test_crossover_table_is_the_recorded_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from pathlib import Path

    from snnctl.nn import events

    recorded = json.loads((Path(__file__).parents[1] / "benchmarks/results/event_driven.json").read_text())
    assert [list(row) for row in events.CROSSOVER] == recorded["table"]
    monkeypatch.delenv("SNNCTL_EVENT_CROSSOVER", raising=False)
    assert events.crossover_rate(64, 64) == 0.0  # tiny layers: per-call overhead, dense wins
    assert events.crossover_rate(512, 512) == 0.5
    assert events.crossover_rate(4096, 4096) == 0.7
    monkeypatch.setenv("SNNCTL_EVENT_CROSSOVER", "0")
    assert EventLinear(torch.nn.Linear(512, 512)).max_active == 0
