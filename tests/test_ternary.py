"""Logic-gated layers: ternary codes, 2-bit packing, additions-only inference equal to the float math."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from snnctl.errors import UserError
from snnctl.nn import kernels
from snnctl.robust import ternary as T
from snnctl.zoo import build_network

MULTIPLYING = {
    torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.Tensor.mul_,
    torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm, torch.addmm,
    torch.einsum, F.linear, F.conv2d, torch.conv2d, torch.Tensor.__truediv__, torch.div, torch.prod,
}


class NoMultiplications(TorchFunctionMode):
    """Fails the test if any multiplying torch function runs inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in MULTIPLYING:
            raise AssertionError(f"multiplication in the synaptic path: {getattr(func, '__name__', func)}")
        self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.fixture(params=["native", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native" and kernels.clib() is None:
        pytest.skip("native kernel not built")
    if request.param == "torch":
        monkeypatch.setattr(T, "clib", lambda: None)
    return request.param


def test_codes_and_scale() -> None:
    w = torch.tensor([[1.0, -0.05, -2.0, 0.5]])  # mean |w| = 0.8875, delta = 0.62
    codes, scale = T.ternary_codes(w)
    assert codes.tolist() == [[1, 0, -1, 0]] and codes.dtype == torch.int8
    assert scale.item() == pytest.approx(1.5)


def test_pack_unpack_round_trip_at_two_bits() -> None:
    codes = torch.randint(-1, 2, (7, 13), dtype=torch.int8)
    packed = T.pack2(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == (7 * 13 + 3) // 4
    assert torch.equal(T.unpack2(packed, codes.numel()).view(7, 13), codes)


def test_straight_through_gradient() -> None:
    w = torch.randn(5, 4, requires_grad=True)
    (T.ste_ternary(w) * torch.arange(20.0).view(5, 4)).sum().backward()
    assert torch.equal(w.grad, torch.arange(20.0).view(5, 4))


@pytest.mark.parametrize("binary", [True, False])
def test_logic_gated_linear_equals_float_math(path: str, binary: bool) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 12)
    codes, scale = T.ternary_codes(linear.weight)
    gated = T.LogicGatedLinear(40, 12)
    gated.store(codes, scale, linear.bias)
    x = (torch.rand(6, 40) < 0.3).float() if binary else torch.randn(6, 40)
    expected = F.linear(x, codes.float(), linear.bias.detach() / scale)
    torch.testing.assert_close(gated(x), expected, atol=1e-5, rtol=1e-5)


def test_logic_gated_conv_equals_float_math(path: str) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=2)
    codes, scale = T.ternary_codes(conv.weight)
    gated = T.LogicGatedConv2d(conv)
    gated.store(codes, scale, conv.bias)
    x = (torch.rand(2, 3, 9, 9) < 0.4).float()
    expected = F.conv2d(x, codes.float(), conv.bias.detach() / scale, stride=2, padding=1)
    torch.testing.assert_close(gated(x), expected, atol=1e-5, rtol=1e-5)


def test_synaptic_path_has_no_multiplications(path: str) -> None:
    gated = T.LogicGatedLinear(30, 8)
    gated.store(torch.randint(-1, 2, (8, 30), dtype=torch.int8), torch.tensor(0.3), torch.randn(8))
    conv = T.LogicGatedConv2d(torch.nn.Conv2d(2, 4, 3))
    conv.store(torch.randint(-1, 2, (4, 2, 3, 3), dtype=torch.int8), torch.tensor(0.5), torch.randn(4))
    gated.index(), conv.index()  # unpacking the codes once at load time is not part of the path
    with NoMultiplications() as guard:
        gated((torch.rand(5, 30) < 0.5).float())
        conv((torch.rand(1, 2, 6, 6) < 0.5).float())
    assert guard.calls  # the guard saw the layers run


def test_guard_catches_a_float_linear() -> None:
    with pytest.raises(AssertionError, match="multiplication"), NoMultiplications():
        torch.nn.Linear(3, 2)(torch.ones(1, 3))


def test_folded_network_matches_ternary_training_network() -> None:
    torch.manual_seed(2)
    net = build_network("mlp", {"in_features": 16, "hidden": [32, 32], "num_classes": 5}, kind="snn",
                        neuron={"type": "lif", "tau": 2.0}, T=4).eval()
    T.make_ternary(net.body)
    x = (torch.rand(20, 16) < 0.4).float()
    with torch.no_grad():
        expected = net(x)
        net.readout_scale = T.to_logic_gated(net.body)
        torch.testing.assert_close(net(x), expected, atol=1e-4, rtol=1e-4)
    assert len(T.logic_gated_layers(net)) == 3


def conv_relu_body() -> torch.nn.Sequential:
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 5))


def test_a_ternary_ann_folds_its_scales_past_relu_and_pooling() -> None:
    """Each layer's scale rides through ReLU and max pooling to the readout: the packed ANN computes
    what the ternary training network does, with real (not binary) inputs."""
    torch.manual_seed(3)
    mlp = build_network("mlp", {"in_features": 16, "hidden": [32, 32], "num_classes": 5}, kind="ann").eval()
    for body, x in ((mlp.body, torch.rand(20, 16)), (conv_relu_body().eval(), torch.rand(6, 1, 8, 8))):
        T.make_ternary(body)
        last_own = float(T.ternary_codes(body[-1].weight)[1])
        with torch.no_grad():
            expected = body(x)
            scale = T.to_logic_gated(body)
            torch.testing.assert_close(body(x) * scale, expected, atol=1e-4, rtol=1e-4)
        assert len(T.logic_gated_layers(body)) == 3
        assert float(scale) != pytest.approx(last_own)  # the product of the layers' scales, not the last one's


def test_layers_that_need_multiplications_are_refused_by_name() -> None:
    net = build_network("cnn", {"channels": [4, 8]}, kind="snn", neuron={})
    with pytest.raises(UserError, match=r"layer 1 \(BatchNorm2d\)"):
        T.make_ternary(net.body)
    resnet = build_network("resnet18", {"stem_type": "small"}, kind="snn", neuron={})
    with pytest.raises(UserError, match="nested block"):
        T.check_convertible(resnet.body)
