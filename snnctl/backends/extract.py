"""Trace an snnctl SNN into a NIR graph: one NIR node per layer, shapes without batch, BN folded.

Neurons follow NIR's continuous-time equations, discretised with an explicit step `dt`:
- euler (snnTorch's convention): tau = dt / (1 - decay), r = tau / dt, so the input gain r*dt/tau is 1;
- exact: tau = -dt / ln(decay), r = 1 / (1 - decay), the same gain under v' = decay*v + (1-decay)*r*I.
A neuron without leak (decay 1) is NIR's IF with r = 1. NIR resets to v_reset only; a neuron that
resets by subtraction cannot be expressed, so it stops the export unless `reset="zero"` is asked for
(the round-trip check then shows what that costs).
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from snnctl.conversion.graph import Report, fold_batchnorm
from snnctl.errors import UserError
from snnctl.nn import LIF, LearnableLIF, SpikingActivation
from snnctl.nn.layers import Synapse

DISCRETISATIONS = ("euler", "exact")
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
ADDS = {operator.add, operator.iadd, torch.add}


@dataclass(frozen=True)
class ExportOptions:
    dt: float = 1e-4
    discretisation: str = "euler"
    reset: str | None = None  # "zero": export subtract-reset neurons as NIR's reset to zero anyway

    def check(self) -> None:
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise UserError(f"--dt must be a positive number of seconds, got {self.dt}")
        if self.discretisation not in DISCRETISATIONS:
            raise UserError(
                f"unknown discretisation '{self.discretisation}'", hint=f"use one of {', '.join(DISCRETISATIONS)}"
            )
        if self.reset not in (None, "zero"):
            raise UserError(f"unknown reset override '{self.reset}'", hint="the only override is 'zero'")


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (SpikingActivation, Synapse)) or super().is_leaf_module(m, qualname)


def trace_snn(body: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Trace (neurons as leaves), fold BatchNorm into the conv/linear before it, record shapes."""
    try:
        gm = fx.GraphModule(body, _Tracer().trace(body))
    except Exception as err:  # a user's forward that fx cannot follow
        raise UserError(f"torch.fx cannot trace the model ({type(err).__name__}: {err})") from None
    fold_batchnorm(gm, Report())
    for m in gm.modules():
        if isinstance(m, (SpikingActivation, Synapse)):
            m.T = 1  # one probe example, one step
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return gm


def node_name(target: str) -> str:
    """NIR names nested graphs with dots, so module paths use underscores."""
    return str(target).replace(".", "_")


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _array(value: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)  # float64: tau and r keep dt/tau exact enough


def neuron_node(act: SpikingActivation, shape: tuple[int, ...], opts: ExportOptions, where: str) -> nir.NIRNode:
    neuron = act.neuron
    if not isinstance(neuron, (LIF, LearnableLIF)):
        raise UserError(
            f"layer {where}: neuron {type(neuron).__name__} has no NIR primitive",
            hint="NIR carries IF and LIF neurons; retrain with [neuron] type = 'lif' or 'if'",
        )
    if neuron.reset == "subtract" and opts.reset != "zero":
        raise UserError(
            f"layer {where} resets by subtraction; NIR (and Lava's LIF) reset to v_reset",
            hint="retrain with --set neuron.reset=zero, or pass --reset zero to export anyway "
            "(the round-trip check reports the mismatch this causes)",
        )
    if neuron.v_init:
        raise UserError(f"layer {where} starts at v_init={neuron.v_init}; NIR neurons start at 0",
                        hint="retrain with neuron.v_init = 0")
    decay, theta = float(neuron.decay), float(neuron.threshold)
    meta = {"snnctl_decay": decay}
    if decay >= 1.0:
        return nir.IF(r=_array(1.0, shape), v_threshold=_array(theta, shape), v_reset=_array(0.0, shape),
                      metadata=meta)
    if decay <= 0.0:
        raise UserError(f"layer {where}: a neuron with decay {decay} (no memory) has no NIR LIF equivalent")
    if opts.discretisation == "euler":
        tau, r = opts.dt / (1.0 - decay), 1.0 / (1.0 - decay)
    else:
        tau, r = -opts.dt / math.log(decay), 1.0 / (1.0 - decay)
    return nir.LIF(tau=_array(tau, shape), r=_array(r, shape), v_leak=_array(0.0, shape),
                   v_threshold=_array(theta, shape), v_reset=_array(0.0, shape), metadata=meta)


def synapse_node(m: Synapse, shape: tuple[int, ...], opts: ExportOptions, where: str) -> nir.NIRNode:
    """A synaptic current I_t = d I_{t-1} + g x_t as NIR's leaky integrator LI (tau dI/dt = -I + r x),
    discretised as the neurons are: the input gain dt/tau * r equals g."""
    decay = float(m.decay)
    if not 0.0 <= decay < 1.0:
        raise UserError(f"layer {where}: a synaptic current with decay {decay} has no NIR LI equivalent")
    a = 1.0 - decay
    tau = opts.dt / a if opts.discretisation == "euler" else -opts.dt / math.log(decay) if decay > 0 else opts.dt
    gain = np.broadcast_to(m.gain.detach().numpy().astype(np.float64), shape)
    return nir.LI(tau=_array(tau, shape), r=gain / a, v_leak=_array(0.0, shape))


def _module_node(m: nn.Module, node: fx.Node, opts: ExportOptions, where: str) -> nir.NIRNode:
    src = node.args[0]
    in_shape, out_shape = _shape(src), _shape(node)
    if isinstance(m, SpikingActivation):
        return neuron_node(m, out_shape, opts, where)
    if isinstance(m, Synapse):
        return synapse_node(m, out_shape, opts, where)
    if isinstance(m, nn.Linear):
        bias = m.bias.detach().numpy() if m.bias is not None else np.zeros(m.out_features, np.float32)
        return nir.Affine(weight=m.weight.detach().numpy().copy(), bias=bias.copy())
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise UserError(f"layer {where}: conv padding {m.padding!r}/{m.padding_mode} is not exported",
                            hint="use integer zero padding")
        bias = m.bias.detach().numpy() if m.bias is not None else np.zeros(m.out_channels, np.float32)
        return nir.Conv2d(input_shape=in_shape[1:], weight=m.weight.detach().numpy().copy(), stride=_pair(m.stride),
                          padding=_pair(m.padding), dilation=_pair(m.dilation), groups=m.groups, bias=bias.copy())
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override:
            raise UserError(f"layer {where}: average pooling with ceil_mode/count_include_pad=False is not exported")
        k = _pair(m.kernel_size)
        stride = _pair(m.stride if m.stride is not None else m.kernel_size)
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(stride), padding=np.array(_pair(m.padding)))
    if isinstance(m, nn.AdaptiveAvgPool2d):
        (h, w), (oh, ow) = in_shape[1:], out_shape[1:]
        if h % oh or w % ow:
            raise UserError(f"layer {where}: adaptive pooling {h}x{w} -> {oh}x{ow} is not a plain pooling")
        k = np.array((h // oh, w // ow))
        return nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.array((0, 0)))
    if isinstance(m, nn.Flatten):
        end = m.end_dim if m.end_dim < 0 else m.end_dim - 1
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=m.start_dim - 1, end_dim=end)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        raise UserError(f"layer {where}: max pooling has no NIR or Loihi primitive",
                        hint="build the model with average pooling (cnn: config.pool = 'avg') and retrain")
    raise UserError(f"layer {where}: {type(m).__name__} has no NIR primitive",
                    hint="supported: Linear, Conv2d, BatchNorm after them, AvgPool2d, Flatten, IF/LIF neurons, +")


def to_nir(model: nn.Module, input_shape: tuple[int, ...], opts: ExportOptions) -> nir.NIRGraph:
    """The model's body as a NIR graph; residual adds become several edges into one node (NIR sums)."""
    opts.check()
    body = getattr(model, "body", model)
    gm = trace_snn(copy.deepcopy(body).eval(), torch.zeros(1, *input_shape))
    modules = dict(gm.named_modules())
    from snnctl.backends.graphnet import GraphNet  # here: graphnet imports this module

    strip = "layers." if isinstance(body, GraphNet) else ""  # a NIR import keeps its node names
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    sources: dict[fx.Node, list[str]] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
            sources[node] = ["input"]
        elif node.op == "output":
            out = node.args[0]
            nodes["output"] = nir.Output(output_type={"output": np.array(_shape(out))})
            edges += [(s, "output") for s in sources[out]]
        elif node.op == "call_module" and isinstance(modules[str(node.target)], PASS_THROUGH):
            sources[node] = sources[node.args[0]]
        elif node.op == "call_module":
            name = node_name(str(node.target).removeprefix(strip))
            nodes[name] = _module_node(modules[str(node.target)], node, opts, str(node.target))
            edges += [(s, name) for s in sources[node.args[0]]]
            sources[node] = [name]
        elif node.op == "call_function" and node.target in ADDS and all(isinstance(a, fx.Node) for a in node.args):
            sources[node] = [s for a in node.args for s in sources[a]]
        else:
            raise UserError(f"op {node.op} {getattr(node.target, '__name__', node.target)} ({node.name}) "
                            "has no NIR primitive", hint="use module layers (nn.Flatten, nn.AvgPool2d, ...)")
    if len(set(edges)) != len(edges):
        raise UserError("a value is added to itself (x + x); NIR cannot express a doubled edge")
    nodes, edges = fuse_cubalif(nodes, edges)
    metadata = {"source": "snnctl", "dt": opts.dt, "discretisation": opts.discretisation, "reset": "zero",
                "T": int(getattr(model, "T", 1)), "encoding": str(getattr(model, "encoding", "direct"))}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def fuse_cubalif(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
                 ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """A synaptic current (LI) that feeds one LIF and nothing else is that LIF's current: write the pair
    as one CubaLIF (named as the LIF), the node peers such as snnTorch read."""
    nodes, edges = dict(nodes), list(edges)
    for li_name, li in list(nodes.items()):
        if not isinstance(li, nir.LI):
            continue
        after = [b for a, b in edges if a == li_name]
        if len(after) != 1 or not isinstance(nodes[after[0]], nir.LIF):
            continue
        lif_name = after[0]
        if [a for a, b in edges if b == lif_name] != [li_name]:
            continue
        lif = nodes[lif_name]
        nodes[lif_name] = nir.CubaLIF(tau_syn=li.tau, tau_mem=lif.tau, r=lif.r, v_leak=lif.v_leak,
                                      v_threshold=lif.v_threshold, v_reset=lif.v_reset, w_in=li.r,
                                      metadata=lif.metadata)
        del nodes[li_name]
        edges = [(a, lif_name) if b == li_name else (a, b) for a, b in edges if (a, b) != (li_name, lif_name)]
    return nodes, edges
