"""Fused kernels give the reference's outputs and gradients, for every surrogate and reset."""

from __future__ import annotations

import itertools

import pytest
import torch

from snnctl.nn import IF, LIF, LearnableLIF, kernels
from snnctl.nn import functional as F
from snnctl.nn.kernels import lif as fused
from snnctl.nn.surrogate import SURROGATES, surrogate

CASES = list(itertools.product(sorted(SURROGATES), ["subtract", "zero"], [False, True]))


def run_both(fn_a, fn_b, dtype, learn_decay=True):
    torch.manual_seed(0)
    x = (torch.randn(25, 3, 11, dtype=dtype) * 0.8 + 0.3).requires_grad_()
    v0 = (torch.rand(3, 11, dtype=dtype) * 0.5).requires_grad_()
    w = torch.tensor(0.3, dtype=dtype, requires_grad=learn_decay)
    results = []
    for fn in (fn_a, fn_b):
        s, v = fn(x, v0, 1 - torch.sigmoid(w))
        weights = torch.linspace(-1, 1, s.numel(), dtype=dtype, device=s.device).view_as(s)
        loss = (s * weights).sum() + 0.7 * v.sum()
        inputs = (x, v0, w) if learn_decay else (x, v0)
        results.append((s, v, *torch.autograd.grad(loss, inputs)))
    return results


@pytest.mark.parametrize(("name", "reset", "detach"), CASES)
def test_torch_fused_equals_reference_in_float64(name, reset, detach):
    sg = surrogate(name, 0.5)
    kw = {"threshold": torch.tensor(1.0, dtype=torch.float64), "sg": sg, "reset": reset, "detach_reset": detach}
    ref, got = run_both(
        lambda x, v, d: F.lif(x, v, decay=d, **kw),
        lambda x, v, d: fused.lif(x, v, decay=d, kernel="torch", **kw),
        torch.float64,
    )
    assert ref[0].sum() > 0  # the case fires, so the reset path is exercised
    for a, b in zip(ref, got, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(kernels.clib() is None, reason="native kernel not built (make kernels)")
@pytest.mark.parametrize(("name", "reset", "detach"), CASES)
def test_native_kernel_equals_reference_in_float32(name, reset, detach):
    sg = surrogate(name, 0.5)
    kw = {"threshold": torch.tensor(1.0), "sg": sg, "reset": reset, "detach_reset": detach}
    ref, got = run_both(
        lambda x, v, d: F.lif(x, v, decay=d, **kw),
        lambda x, v, d: fused.lif(x, v, decay=d, kernel="c", **kw),
        torch.float32,
    )
    assert torch.equal(ref[0], got[0])
    for a, b in zip(ref[1:], got[1:], strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_native_kernel_is_used_by_default_and_reference_on_request():
    x = torch.rand(6, 4, 600)  # more neurons than one chunk of the C kernel
    outputs = {}
    for kernel in ("reference", "torch", "auto"):
        outputs[kernel] = LIF(tau=2.0, kernel=kernel)(x)
    assert torch.equal(outputs["reference"], outputs["torch"])
    assert torch.equal(outputs["reference"], outputs["auto"])


def test_global_default_switches_every_neuron(monkeypatch):
    calls = []
    monkeypatch.setattr(F, "lif", lambda *a, **k: calls.append(1) or (a[0], a[1]))
    kernels.set_default("reference")
    try:
        IF()(torch.rand(3, 2, 4))
    finally:
        kernels.set_default("auto")
    assert calls == [1]
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.set_default("cuda-magic")


def test_learnable_leak_gets_the_same_gradient_through_fused_kernels():
    x = torch.rand(12, 2, 5, dtype=torch.float64) * 1.5
    grads = []
    for kernel in ("reference", "torch"):
        neuron = LearnableLIF(tau=3.0, kernel=kernel).double()
        neuron(x).sum().backward()
        grads.append(neuron.w.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-12)


@pytest.mark.parametrize(("name", "reset", "detach"), CASES)
@pytest.mark.parametrize("neuron", ["alif", "graded"])
def test_fused_adaptive_and_graded_equal_reference_in_float64(neuron, name, reset, detach):
    from snnctl.nn import AdaptiveLIF, GradedLIF

    torch.manual_seed(0)
    x = (torch.randn(20, 3, 7, dtype=torch.float64) * 1.2 + 0.6).requires_grad_()
    results = []
    for kernel in ("reference", "torch"):
        common = {"surrogate": name, "reset": reset, "detach_reset": detach, "kernel": kernel, "v_init": 0.3}
        if neuron == "alif":
            module = AdaptiveLIF(tau=4.0, adapt_scale=0.3, adapt_decay=0.9, **common).double()
        else:
            module = GradedLIF(levels=3, threshold=0.5, decay=0.9, **common).double()
        spikes, state = module.run(x)
        finals = state if isinstance(state, tuple) else (state,)
        weights = torch.linspace(-1, 1, spikes.numel(), dtype=torch.float64).view_as(spikes)
        loss = (spikes * weights).sum() + sum(0.5 * f.sum() for f in finals)
        results.append((spikes, *finals, *torch.autograd.grad(loss, x)))
    assert results[0][0].sum() > 0
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


cuda_triton = pytest.mark.skipif(fused.triton_module() is None, reason="needs CUDA and Triton")


@cuda_triton
@pytest.mark.parametrize(("name", "reset", "detach"), CASES)
def test_triton_kernel_equals_reference_on_gpu(name, reset, detach):
    sg = surrogate(name, 0.5)
    kw = {"threshold": torch.tensor(1.0, device="cuda"), "sg": sg, "reset": reset, "detach_reset": detach}

    def on_gpu(fn):
        def run(x, v, d):
            return fn(x.cuda(), v.cuda(), d.cuda())

        return run

    ref, got = run_both(
        on_gpu(lambda x, v, d: F.lif(x, v, decay=d, **kw)),
        on_gpu(lambda x, v, d: fused.lif(x, v, decay=d, kernel="triton", **kw)),
        torch.float32,
    )
    assert torch.equal(ref[0], got[0])
    for a, b in zip(ref[1:], got[1:], strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@cuda_triton
def test_auto_uses_triton_on_gpu_and_matches_for_a_sum_loss():
    x = (torch.rand(50, 8, 3000, device="cuda") * 1.5).requires_grad_()
    assert fused.choose("auto", x, torch.tensor(0.5, device="cuda"), torch.tensor(1.0, device="cuda")) == "triton"
    grads = []
    for kernel in ("reference", "auto"):
        x.grad = None
        LIF(tau=2.0, kernel=kernel).cuda()(x).sum().backward()
        grads.append(x.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
