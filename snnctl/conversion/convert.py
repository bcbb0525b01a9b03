"""Conversion methods (rate, qcfs, graded), threshold balancing, and accuracy against T."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnctl.conversion.graph import Report, neurons, rewrite
from snnctl.conversion.methods import MAXPOOL_MODES, METHODS, listed
from snnctl.conversion.neuron import Converted
from snnctl.data.encoders import encode
from snnctl.errors import UserError
from snnctl.nn.qcfs import QCFS
from snnctl.zoo import Network

TABLE_T = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Options:
    method: str = "rate"
    T: int = 8
    levels: int = 4  # graded: most spikes per step
    percentile: float = 99.9
    allow_partial: bool = False
    maxpool: str = "diff"  # one of methods.MAXPOOL_MODES
    signed: bool = False  # signed IF neurons: spikes of -1 and +1 (targets that take negative spikes)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'", hint=f"use one of: {', '.join(METHODS)}")


def check_options(options: Options) -> None:
    """The choices an Options may hold, checked before any work (a job built in code as the CLI's is)."""
    check_method(options.method)
    if options.maxpool not in MAXPOOL_MODES:
        raise UserError(f"unknown max pooling mode '{options.maxpool}'", where="--maxpool",
                        hint=f"use auto, {listed(MAXPOOL_MODES)}")
    if options.signed and options.method == "graded":
        raise UserError("signed neurons take one spike per step; method graded emits several", where="--signed",
                        hint="drop --signed, or use --method rate or qcfs")


def has_qcfs(model: nn.Module) -> bool:
    return any(isinstance(m, QCFS) for m in model.modules())


def needs_data(options: Options, ann: nn.Module) -> bool:
    """Rate and graded thresholds come from activation statistics, unless the ANN's QCFS ceilings give them."""
    return options.method == "rate" or (options.method == "graded" and not has_qcfs(ann))


def graded_levels(options: Options, ann: nn.Module) -> int | None:
    if options.method != "graded":
        return None
    return qcfs_levels(ann) if has_qcfs(ann) else options.levels


def qcfs_levels(ann: nn.Module) -> int:
    levels = {m.levels for m in ann.modules() if isinstance(m, QCFS)}
    if len(levels) != 1:
        raise UserError(f"QCFS layers use different level counts {sorted(levels)}", hint="train with one L")
    return levels.pop()


@contextmanager
def analog(model: nn.Module, on: bool = True) -> Iterator[None]:
    """Run every converted neuron as the ANN op it replaced (the converted graph is then the ANN)."""
    found = [m for m in model.modules() if isinstance(m, Converted)]
    timed = [m for m in model.modules() if getattr(m, "needs_T", False)]
    before = [m.analog for m in found]
    steps = [m.T for m in timed]
    for m in found:
        m.analog = on
    for m in timed:  # the analog graph is the ANN: one step, no time folded into the batch
        m.T = 1
    try:
        yield
    finally:
        for m, was in zip(found, before, strict=True):
            m.analog = was
        for m, T in zip(timed, steps, strict=True):
            m.T = T


@torch.no_grad()
def preactivations(
    body: nn.Module, x: Tensor, batch_size: int = 128, per_channel: int = 50_000, seed: int = 0
) -> dict[str, Tensor]:
    """Inputs each neuron receives in the ANN, as [C, n] per neuron, subsampled to at most
    `per_channel` values per channel (torch.quantile refuses huge tensors; memory stays bounded)."""
    found = neurons(body)
    gen = torch.Generator().manual_seed(seed)
    batches = max(1, -(-len(x) // batch_size))
    keep = max(1, per_channel // batches)
    samples: dict[str, list[Tensor]] = {name: [] for name, _ in found}

    def hook(name: str):
        def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            a = args[0].detach()
            flat = a.transpose(0, 1).reshape(a.shape[1], -1) if a.ndim >= 2 else a.reshape(1, -1)
            if flat.shape[1] > keep:
                flat = flat[:, torch.randperm(flat.shape[1], generator=gen)[:keep]]
            samples[name].append(flat.float().cpu())
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in found]
    try:
        with analog(body):
            for start in range(0, len(x), batch_size):
                body(x[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(parts, dim=1) for name, parts in samples.items()}


def percentile_thresholds(values: Tensor, q: float) -> Tensor:
    """Per-channel q-th percentile of positive activity; channels that never activate get 1."""
    theta = torch.quantile(values.clamp(min=0), q / 100.0, dim=1)
    return torch.where(theta > 1e-6, theta, torch.ones_like(theta))


def balance(body: nn.Module, x: Tensor, options: Options) -> None:
    """Set every neuron's threshold: from activation percentiles (rate, graded) or QCFS ceilings."""
    stats = preactivations(body, x) if x is not None else {}
    for name, neuron in neurons(body):
        levels = neuron.graded_levels or 1
        op = neuron.analog_op
        if op.kind == "qcfs":
            ceiling = neuron.lam.reshape(1).clone()
            if options.method == "graded":
                levels = int(op.levels or 1)  # one graded step of L levels is exactly the QCFS quantiser
            theta = ceiling / levels
        else:
            theta = percentile_thresholds(stats[name], options.percentile)
            if op.kind == "clip" and op.high is not None:
                theta = theta.clamp(max=op.high)
            theta = theta / levels
        neuron.theta = theta.to(neuron.theta.device)
        neuron.shift = torch.zeros_like(theta)
        neuron.v0 = torch.full_like(theta, 0.5)


def convert(
    ann_body: nn.Module, options: Options, calib_x: Tensor | None
) -> tuple[fx.GraphModule, Report]:
    """Rewrite an ANN body into a converted SNN body and balance its thresholds."""
    check_options(options)
    if options.method == "qcfs" and not has_qcfs(ann_body):
        raise UserError("method 'qcfs' needs an ANN trained with QCFS activations",
                        hint="train it with --set model.activation=qcfs, or use --method rate")
    if needs_data(options, ann_body) and calib_x is None:
        raise UserError(f"method '{options.method}' sets thresholds from activations and needs calibration data",
                        hint="add --dataset NAME (e.g. --dataset digits)")
    gm, report = rewrite(ann_body, graded_levels=graded_levels(options, ann_body),
                         allow_partial=options.allow_partial, maxpool=options.maxpool, signed=options.signed)
    balance(gm, calib_x, options)
    return gm, report


@torch.no_grad()
def step_logits(model: Network, x: Tensor, T: int, batch_size: int = 64) -> Tensor:
    """Per-step logits `[T, N, classes]` for the whole of x (direct input, causal, so step t does not
    depend on T: one run at the largest T gives every shorter T as a prefix)."""
    was = model.training
    model.eval()
    parts = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        parts.append(model.forward_sequence(encode(xb, T, "direct")).float().cpu())
    model.train(was)
    return torch.cat(parts, dim=1)


def accuracy_from_steps(steps: Tensor, y: Tensor, T: int, delay: int = 0) -> float:
    delay = min(delay, T - 1)
    pred = steps[delay:T].mean(0).argmax(-1)
    return float((pred == y.cpu()).float().mean())


def accuracy_by_T(
    model: Network, x: Tensor, y: Tensor, Ts: Sequence[int] = TABLE_T, delay_fraction: float = 0.0
) -> dict[int, float]:
    steps = step_logits(model, x, max(Ts))
    return {T: accuracy_from_steps(steps, y, T, int(delay_fraction * T)) for T in Ts}


def ann_accuracy(body: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Accuracy of the converted graph run as its ANN (neurons in analog mode, BatchNorm folded)."""
    correct = 0
    was = body.training
    body.eval()
    with torch.no_grad(), analog(body):
        for start in range(0, len(x), batch_size):
            correct += int((body(x[start : start + batch_size]).argmax(-1) == y[start : start + batch_size]).sum())
    body.train(was)
    return correct / max(len(x), 1)


def spikes_per_sample(model: Network, x: Tensor, T: int) -> float:
    """Spikes (graded counts summed) over all converted neurons, per sample, at T steps."""
    total = 0.0

    def count(module: nn.Module, args: Any, out: Tensor) -> None:
        nonlocal total
        total += float(out.detach().abs().sum())

    handles = [m.act.register_forward_hook(count) for _, m in neurons(model)]
    try:
        step_logits(model, x, T)
    finally:
        for h in handles:
            h.remove()
    return total / max(len(x), 1)


def build_converted(manifest: dict[str, Any]) -> Network:
    """The converted model a manifest describes: rebuild its ANN, rewrite it again (deterministic),
    ready for the bundle's weights and thresholds."""
    from snnctl.conversion.source import rebuild

    info = manifest.get("conversion") or {}
    if "source" not in info:
        raise UserError("manifest of a converted bundle lacks 'conversion.source'")
    ann = rebuild(info["source"])
    gm, _ = rewrite(ann, graded_levels=info.get("graded_levels"), allow_partial=bool(info.get("hybrid")),
                    maxpool=info.get("maxpool", "rate"), signed=bool(info.get("signed", False)))
    net = Network(gm, kind="converted", encoding="direct", T=int(manifest.get("T") or 1))
    net.readout_delay = int(info.get("readout_delay", 0))
    return net
