"""Zoo models as ANN and SNN twins; datasets; encoders."""

from __future__ import annotations

import pytest
import torch

from snnctl.data import load_dataset
from snnctl.data.encoders import encode
from snnctl.errors import UserError
from snnctl.nn import SpikingActivation
from snnctl.zoo import build_network

LIF = {"type": "lif", "tau": 2.0}


@pytest.mark.parametrize(
    ("name", "config", "shape"),
    [
        ("mlp", {"in_features": 64, "hidden": [32]}, (1, 8, 8)),
        ("cnn", {"channels": [4, 8]}, (1, 8, 8)),
        ("resnet18", {"num_classes": 10, "stem_type": "small", "width": 8}, (3, 32, 32)),
        ("resnet18", {"num_classes": 10, "stem_type": "imagenet", "width": 8}, (3, 64, 64)),
    ],
)
def test_ann_and_snn_twins_share_one_definition(name: str, config: dict, shape: tuple[int, ...]):
    ann = build_network(name, config, kind="ann")
    snn = build_network(name, config, kind="snn", neuron=LIF, T=3)
    x = torch.rand(2, *shape)
    assert ann(x).shape == snn(x).shape == (2, config.get("num_classes", 10))
    ann_keys = set(ann.state_dict())
    snn_weights = {k for k in snn.state_dict() if not k.endswith((".threshold", ".decay"))}
    assert ann_keys == snn_weights  # same layers, same names: weights move between the twins
    assert not any(isinstance(m, SpikingActivation) for m in ann.modules())
    assert any(isinstance(m, SpikingActivation) for m in snn.modules())


def test_resnet18_has_eighteen_weight_layers():
    net = build_network("resnet18", {"num_classes": 1000}, kind="ann")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 18
    assert sum(p.numel() for p in net.parameters()) == 11_689_512  # torchvision's resnet18 count


def test_snn_outputs_spikes_inside_and_reads_out_the_mean():
    snn = build_network("mlp", {"in_features": 4, "hidden": [8], "num_classes": 2}, kind="snn",
                        neuron={"type": "if"}, T=5)
    seen = []
    snn.body[2].register_forward_hook(lambda m, i, o: seen.append(o))
    seq = torch.rand(5, 3, 4)
    per_step = snn.forward_sequence(seq)
    assert per_step.shape == (5, 3, 2)
    assert set(seen[0].unique().tolist()) <= {0.0, 1.0}


def test_unknown_model_and_bad_config_are_user_errors():
    with pytest.raises(UserError, match="unknown model 'vgg99'"):
        build_network("vgg99", {})
    with pytest.raises(UserError, match="model 'mlp'"):
        build_network("mlp", {"depth": 3})


def test_unknown_neuron_type_is_a_user_error():
    with pytest.raises(UserError, match="unknown neuron 'hh'"):
        build_network("mlp", {}, kind="snn", neuron={"type": "hh"})


def test_digits_split_is_stratified_and_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert torch.equal(a.y_test, b.y_test)
    assert float(a.x_train.max()) == 1.0 and float(a.x_train.min()) == 0.0
    assert torch.bincount(a.y_test).min() >= 35


def test_digits_can_be_resized_for_imagenet_style_nets():
    ds = load_dataset("digits", size=32, channels=3)
    assert ds.input_shape == (3, 32, 32)


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_encoders():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    assert torch.equal(encode(x, 3, "direct"), x.expand(3, 1, 3))
    g = torch.Generator().manual_seed(0)
    r = encode(x.expand(4000, 3), 5, "rate", g)
    assert set(r.unique().tolist()) <= {0.0, 1.0}
    assert r.mean((0, 1)).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=0.02)
    p = encode(torch.full((4000, 1), 0.7), 5, "poisson", g)
    assert p.mean().item() == pytest.approx(0.7, abs=0.02)
    lat = encode(x, 5, "latency")
    assert lat[:, 0].sum(0).tolist() == [0.0, 1.0, 1.0]  # zero never fires, others once
    assert lat[0, 0, 2] == 1 and lat[2, 0, 1] == 1  # strongest first, half-way at the middle step
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(x, 2, "phase")
