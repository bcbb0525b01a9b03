"""Noise models: each does what its table row says, at the level given, per example."""

from __future__ import annotations

import pytest
import torch

from snnctl.errors import UserError
from snnctl.robust import noise as N


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return (torch.rand(shape, generator=gen(seed)) < 0.3).float()


def test_bitflip_rate_per_example_and_extremes() -> None:
    x = binary((4, 20_000))
    out = N.bitflip(x, torch.tensor([0.0, 0.1, 0.5, 1.0]), gen())
    flipped = (out != x).float().mean(1)
    assert flipped[0] == 0 and flipped[3] == 1
    assert abs(flipped[1] - 0.1) < 0.01 and abs(flipped[2] - 0.5) < 0.015
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_salt_pepper_gaussian_dropout() -> None:
    x = torch.full((2, 10_000), 0.4)
    sp = N.salt_pepper(x, torch.tensor([0.0, 0.3]), gen())
    assert torch.equal(sp[0], x[0])
    hit = sp[1] != 0.4
    assert abs(hit.float().mean() - 0.3) < 0.02 and set(sp[1][hit].unique().tolist()) == {0.0, 1.0}
    g = N.gaussian(x, torch.tensor([0.0, 0.2]), gen())
    assert torch.equal(g[0], x[0]) and abs((g[1] - x[1]).std() - 0.2) < 0.01
    d = N.dropout(torch.ones(1, 10_000), torch.tensor([0.25]), gen())
    assert abs((d == 0).float().mean() - 0.25) < 0.02


def test_spike_train_noise_deletes_inserts_and_jitters() -> None:
    seq = binary((8, 3, 500))  # [T, B, N], batch axis 1
    level = torch.tensor([0.0, 0.5, 1.0])
    deleted = N.spike_delete(seq, level, gen())
    assert torch.equal(deleted[:, 0], seq[:, 0]) and deleted[:, 2].sum() == 0
    assert bool((deleted <= seq).all())
    inserted = N.spike_insert(seq, level, gen())
    assert bool((inserted >= seq).all()) and bool((inserted[:, 2] == 1).all())
    jittered = N.spike_jitter(seq, level, gen())
    assert torch.equal(jittered[:, 0], seq[:, 0])
    assert set(jittered.unique().tolist()) <= {0.0, 1.0}
    # spikes only move, by one step: per neuron the count never grows, and every spike of the output
    # sits where the input had a spike at t-1, t or t+1
    assert bool((jittered.sum(0) <= seq.sum(0)).all())
    near = seq.clone()
    near[1:] = torch.maximum(near[1:], seq[:-1])
    near[:-1] = torch.maximum(near[:-1], seq[1:])
    assert bool((jittered <= near).all())
    assert not torch.equal(jittered[:, 2], seq[:, 2])


def test_weight_noise_is_restored() -> None:
    layer = torch.nn.Sequential(torch.nn.Linear(10, 10))
    before = layer[0].weight.detach().clone()
    with N.noisy_weights(layer, 0.3, gen()):
        assert not torch.equal(layer[0].weight, before)
    assert torch.equal(layer[0].weight, before)


@pytest.mark.parametrize("text", ["0:1.5", "-0.1:0.2", "0.4:0.1", "a:b", "1:2:3"])
def test_bad_ranges_are_user_errors(text: str) -> None:
    with pytest.raises(UserError):
        N.parse_range(text)


def test_ranges_and_levels_parse() -> None:
    assert N.parse_range("0:0.45") == (0.0, 0.45) and N.parse_range("0.2") == (0.2, 0.2)
    assert N.parse_levels("0,0.1, 0.5") == [0.0, 0.1, 0.5]
    with pytest.raises(UserError, match="outside"):
        N.parse_levels("0,1.2")
    with pytest.raises(UserError, match="unknown noise model"):
        N.noise_model("pink")


def test_bitflip_refuses_real_valued_inputs() -> None:
    net = torch.nn.Linear(4, 2)
    with pytest.raises(UserError, match="binary"):
        N.noisy_logits(net, torch.rand(3, 4), N.NOISE_MODELS["bitflip"], torch.zeros(3), gen())
