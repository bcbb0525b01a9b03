"""Calibration stages for a converted SNN, each switchable and measured before and after.

- threshold: per-channel threshold refinement, minimising the error between the ANN activation and
  the quantiser an IF neuron realises in T steps (SNN Calibration's MSE search, Li et al. 2021);
- bias: layer by layer in one pass, add to each neuron's input current the mean gap between the ANN
  activation and the SNN rate (bias correction);
- potential: the same gap, paid once through the initial membrane potential (potential correction);
- delay: read out only after the first d steps, d chosen on calibration data (delayed readout);
- hseo: an evolutionary search over per-layer threshold scale, leak and T under a spike budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from snnctl.conversion.convert import (
    accuracy_from_steps,
    analog,
    preactivations,
    spikes_per_sample,
    step_logits,
)
from snnctl.conversion.graph import neurons
from snnctl.conversion.neuron import Converted
from snnctl.nn.qcfs import qcfs
from snnctl.zoo import Network

SCALES = torch.linspace(0.3, 1.2, 19)


@dataclass
class Data:
    x_cal: Tensor
    y_cal: Tensor
    x_test: Tensor
    y_test: Tensor


def accuracy_at(model: Network, x: Tensor, y: Tensor, T: int | None = None) -> float:
    T = T or model.T
    return accuracy_from_steps(step_logits(model, x, T), y, T, model.readout_delay)


def _target(neuron: Converted, x: Tensor) -> Tensor:
    op = neuron.analog_op
    if op.kind == "qcfs":
        return qcfs(x, neuron.lam, int(op.levels or 1))
    return torch.clamp(x, 0, op.high) if op.kind == "clip" else torch.relu(x)


def _quantised(x: Tensor, theta: Tensor, T: int, v0: Tensor, levels: int) -> Tensor:
    """What an IF neuron with threshold theta, initial potential v0 and soft reset outputs on a constant
    input x over T steps, as a rate times theta: theta/T * clamp(floor(x*T/theta + v0), 0, levels*T)."""
    return theta / T * torch.clamp(torch.floor(x * T / theta + v0), 0, levels * T)


@torch.no_grad()
def refine_thresholds(model: Network, data: Data) -> None:
    """Per channel, scale theta by the factor in SCALES that minimises the quantisation error at T."""
    stats = preactivations(model.body, data.x_cal)
    for name, neuron in neurons(model.body):
        x = stats[name]  # [C, n]
        C = x.shape[0]
        theta = neuron.theta.reshape(-1, 1).expand(C, 1) if neuron.theta.numel() in (1, C) else None
        if theta is None:
            continue
        v0 = neuron.v0.reshape(-1, 1).expand(C, 1)
        target = _target(neuron, x)
        levels = neuron.graded_levels or 1
        errors = torch.stack([((_quantised(x, theta * s, model.T, v0, levels) - target) ** 2).mean(1)
                              for s in SCALES])  # [scales, C]
        best = SCALES[errors.argmin(0)].reshape(C)
        neuron.theta = (theta.reshape(C) * best).to(neuron.theta.dtype)
        neuron.shift = neuron.shift.expand(C).clone()
        neuron.v0 = neuron.v0.expand(C).clone()


Correction = Callable[[Converted, Tensor, Tensor, int], None]


@torch.no_grad()
def layerwise(model: Network, x: Tensor, correct: Correction, batch_size: int = 256) -> None:
    """One pass, in graph order: each neuron compares its SNN rate with the ANN activation at its place
    (upstream neurons already corrected), updates its buffers, and passes on its corrected output."""
    body = model.body
    found = neurons(body)
    x = x[:batch_size]
    ann: dict[str, Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=name: ann.__setitem__(n, o.detach())) for name, m in found]
    with analog(body):
        body(x)
    for h in hooks:
        h.remove()

    T = model.T
    busy = {"on": False}

    def fix(name: str):
        def hook(module: Converted, args: tuple[Tensor, ...], out: Tensor) -> Tensor | None:
            if busy["on"]:
                return None
            rate = out.reshape(T, -1, *out.shape[1:]).mean(0)
            correct(module, ann[name], rate, T)
            busy["on"] = True
            try:
                return module(args[0])
            finally:
                busy["on"] = False
        return hook

    hooks = [m.register_forward_hook(fix(name)) for name, m in found]
    try:
        model.forward_sequence(x.unsqueeze(0).expand(T, *x.shape))
    finally:
        for h in hooks:
            h.remove()


def _channel_gap(neuron: Converted, ann_out: Tensor, snn_out: Tensor) -> Tensor:
    """Mean (ANN - SNN) per channel, in units of theta."""
    gap = (ann_out - snn_out)
    gap = gap.transpose(0, 1).reshape(gap.shape[1], -1).mean(1) if gap.ndim >= 2 else gap.mean().reshape(1)
    theta = neuron.theta.reshape(-1)
    return gap / theta


def correct_bias(neuron: Converted, ann_out: Tensor, snn_out: Tensor, T: int) -> None:
    neuron.shift = neuron.shift + _channel_gap(neuron, ann_out, snn_out)


def correct_potential(neuron: Converted, ann_out: Tensor, snn_out: Tensor, T: int) -> None:
    neuron.v0 = (neuron.v0 + _channel_gap(neuron, ann_out, snn_out) * T).clamp(-1.0, 2.0)


@torch.no_grad()
def choose_delay(model: Network, data: Data) -> int:
    """The readout delay (0 .. T/2) with the best calibration accuracy; ties go to the shortest."""
    steps = step_logits(model, data.x_cal, model.T)
    scores = [(accuracy_from_steps(steps, data.y_cal, model.T, d), -d) for d in range(model.T // 2 + 1)]
    return -max(scores)[1]


# ---------------------------------------------------------------------------------------------
# hseo: evolutionary search over threshold scale, leak and T under a spike budget
# ---------------------------------------------------------------------------------------------


@dataclass
class Genome:
    scales: Tensor  # per layer, multiplies theta
    decays: Tensor  # per layer, membrane decay (1 = IF)
    T: int


def _apply(model: Network, base: list[Tensor], g: Genome) -> None:
    for (_, neuron), theta, s, d in zip(neurons(model.body), base, g.scales, g.decays, strict=True):
        neuron.theta = theta * s
        neuron.neuron.decay.fill_(float(d))
    model.T = g.T


def hseo(
    model: Network,
    data: Data,
    population: int = 8,
    generations: int = 5,
    budget: float | None = None,
    T_choices: tuple[int, ...] | None = None,
    seed: int = 0,
    on_generation: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """(mu + lambda) evolution: keep the best half, mutate it (log-normal scales, leak in [0.9, 1],
    T among `T_choices`); fitness = calibration accuracy, minus the excess over the spike budget."""
    gen = torch.Generator().manual_seed(seed)
    layers = neurons(model.body)
    base = [n.theta.clone() for _, n in layers]
    T0 = model.T
    T_choices = T_choices or tuple(sorted({max(1, T0 // 2), T0}))
    x, y = data.x_cal, data.y_cal
    budget = budget if budget is not None else spikes_per_sample(model, x, T0)

    def fitness(g: Genome) -> tuple[float, float, float]:
        _apply(model, base, g)
        acc = accuracy_at(model, x, y, g.T)
        spikes = spikes_per_sample(model, x, g.T)
        return acc - max(0.0, spikes / budget - 1.0), acc, spikes

    def mutate(g: Genome) -> Genome:
        n = len(g.scales)
        scales = g.scales * torch.exp(0.1 * torch.randn(n, generator=gen))
        decays = (g.decays + 0.02 * torch.randn(n, generator=gen)).clamp(0.9, 1.0)
        T = g.T
        if torch.rand((), generator=gen) < 0.3:
            T = T_choices[int(torch.randint(len(T_choices), (), generator=gen))]
        return Genome(scales, decays, T)

    start = Genome(torch.ones(len(layers)), torch.ones(len(layers)), T0)
    pool = [(fitness(start), start)] + [(fitness(g), g) for g in (mutate(start) for _ in range(population - 1))]
    history = []
    for generation in range(generations):
        pool.sort(key=lambda item: item[0][0], reverse=True)
        parents = pool[: max(1, population // 2)]
        children = [mutate(parents[i % len(parents)][1]) for i in range(population - len(parents))]
        pool = parents + [(fitness(c), c) for c in children]
        best = max(pool, key=lambda item: item[0][0])
        info = {"generation": generation + 1, "fitness": best[0][0], "cal_acc": best[0][1],
                "spikes_per_sample": best[0][2], "T": best[1].T}
        history.append(info)
        if on_generation is not None:
            on_generation(generation + 1, info)
    (_fit, acc, spikes), best_g = max(pool, key=lambda item: item[0][0])
    _apply(model, base, best_g)
    return {"budget_spikes_per_sample": budget, "best": {"cal_acc": acc, "spikes_per_sample": spikes,
            "T": best_g.T, "scales": best_g.scales.tolist(), "decays": best_g.decays.tolist()},
            "history": history}


@torch.no_grad()
def agreement(model: Network, data: Data) -> tuple[float, float]:
    """How closely the SNN follows its ANN on calibration data: (argmax agreement, -logit MSE)."""
    with analog(model.body):
        ann = model.body(data.x_cal)
    steps = step_logits(model, data.x_cal, model.T)
    snn = steps[min(model.readout_delay, model.T - 1):].mean(0)
    return float((snn.argmax(-1) == ann.argmax(-1)).float().mean()), -float(((snn - ann) ** 2).mean())


def run_stage(
    stage: str, model: Network, data: Data, hseo_options: dict[str, Any] | None = None,
    on_generation: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one stage and keep it only if the SNN follows its ANN at least as well on calibration data
    (argmax agreement, then logit error); record test accuracy at T before and after."""
    before = accuracy_at(model, data.x_test, data.y_test)
    score_before = agreement(model, data)
    snapshot = ({k: v.clone() for k, v in model.state_dict().items()}, model.readout_delay, model.T)
    details: dict[str, Any] = {}
    if stage == "threshold":
        refine_thresholds(model, data)
    elif stage == "bias":
        layerwise(model, data.x_cal, correct_bias)
    elif stage == "potential":
        layerwise(model, data.x_cal, correct_potential)
    elif stage == "delay":
        model.readout_delay = choose_delay(model, data)
        details["readout_delay"] = model.readout_delay
    elif stage == "hseo":
        details = hseo(model, data, on_generation=on_generation, **(hseo_options or {}))
    else:  # pragma: no cover - the CLI validates names
        raise ValueError(stage)
    kept = stage == "hseo" or agreement(model, data) >= score_before  # hseo has its own objective
    if not kept:
        state, model.readout_delay, model.T = snapshot
        model.load_state_dict(state)  # Converted takes per-channel buffer shapes from the state
    after = accuracy_at(model, data.x_test, data.y_test)
    return {"stage": stage, "T": model.T, "acc_before": before, "acc_after": after, "kept": kept, **details}


def reset_calibration(model: nn.Module) -> None:
    """Undo bias and potential corrections (back to v0 = 1/2, no extra current)."""
    for _, neuron in neurons(model):
        neuron.shift = torch.zeros_like(neuron.shift)
        neuron.v0 = torch.full_like(neuron.v0, 0.5)
