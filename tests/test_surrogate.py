"""Surrogate gradients: every hand-written derivative checked against its primitive with gradcheck."""

from __future__ import annotations

import pytest
import torch

from snnctl.nn.surrogate import SURROGATES, GradedSpikeFunction, graded_spike, spike, surrogate


class Smooth(torch.autograd.Function):
    """primitive(x) forward, the hand-written derivative backward: gradcheck compares the two."""

    @staticmethod
    def forward(ctx, x, sg):
        ctx.save_for_backward(x)
        ctx.sg = sg
        return sg.primitive(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.sg.derivative(x), None


class SmoothGraded(torch.autograd.Function):
    """Sum of shifted primitives forward, GradedSpikeFunction's backward."""

    @staticmethod
    def forward(ctx, h, threshold, levels, sg):
        ctx.save_for_backward(h, threshold)
        ctx.levels, ctx.sg = levels, sg
        return sum(sg.primitive(h - j * threshold) for j in range(1, levels + 1))

    backward = GradedSpikeFunction.backward


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_derivative_matches_primitive(name: str, width: float):
    x = (torch.rand(64, dtype=torch.float64) - 0.5) * 6 * width
    assert torch.autograd.gradcheck(lambda t: Smooth.apply(t, surrogate(name, width)), (x.requires_grad_(),))


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_graded_backward_sums_the_levels(name: str):
    h = (torch.rand(48, dtype=torch.float64) * 5 - 0.5).requires_grad_()
    theta = torch.tensor(1.0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: SmoothGraded.apply(t, theta, 4, surrogate(name, 0.5)), (h,))


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_spike_is_heaviside_forward_and_surrogate_backward(name: str):
    sg = surrogate(name, 0.5)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    out = spike(x, sg)
    assert torch.equal(out, (x >= 0).to(x.dtype))
    out.sum().backward()
    assert torch.allclose(x.grad, sg.derivative(x.detach()))


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogates_peak_at_threshold_and_integrate_to_one(name: str):
    sg = surrogate(name, 0.5)
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    d = sg.derivative(x)
    assert d.argmax() == len(x) // 2
    ends = sg.primitive(x[[0, -1]])
    assert torch.trapezoid(d, x).item() == pytest.approx((ends[1] - ends[0]).item(), abs=1e-6)
    far = sg.primitive(torch.tensor([-1e12, 1e12], dtype=torch.float64))
    assert far.tolist() == pytest.approx([0.0, 1.0], abs=1e-9)


def test_graded_spike_counts_levels():
    h = torch.tensor([-0.3, 0.2, 1.0, 2.7, 9.0], dtype=torch.float64)
    k = graded_spike(h, torch.tensor(1.0, dtype=torch.float64), 4, surrogate("atan"))
    assert k.tolist() == [0, 0, 1, 2, 4]


def test_unknown_surrogate_is_named():
    with pytest.raises(ValueError, match="unknown surrogate 'boxcar'"):
        surrogate("boxcar")
