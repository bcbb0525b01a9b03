"""Lower a converted SNN (ANN->SNN) to a graph of populations for Loihi: IF neurons with threshold 1,
reset by subtraction, fed by synapses from the input and from earlier populations.

A converted neuron computes IF(z / theta + shift) * theta with per-channel theta. Folding theta into
the weights makes every threshold 1: a synapse from population j into k is scaled by theta_j on its
inputs and 1 / theta_k on its outputs, and the neuron's constant drive (bias / theta + shift) and
initial potential v0 become per-neuron inputs. Residual adds are several synapses into one population.

Each synapse keeps the simplest exact form the graph allows: a single convolution stays a convolution,
an identity path (the residual shortcut) is a per-channel scale, anything else (pooling, flatten, a
chain of linear ops) is composed into one dense matrix by pushing the identity through it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn

from snnctl.backends.chain import MAX_DENSE_ENTRIES
from snnctl.conversion.graph import describe, is_linear
from snnctl.conversion.neuron import Converted, RateMaxPool
from snnctl.errors import UserError

ADDS = {operator.add, operator.iadd, torch.add}
TRANSPARENT = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
INPUT = -1  # Edge.source for the network input
PROBE_CHUNK = 1024


@dataclass
class Edge:
    """A synapse from `source` (a population index, or INPUT) into one population, theta folded in.
    kind "conv": weight (C_out, C_in/g, kh, kw) with `conv` params; "scale": weight per channel (an
    identity path); "dense": weight (out, in)."""

    source: int
    kind: str
    weight: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    conv: dict[str, Any] | None = None

    def apply(self, x: Tensor, weight: np.ndarray | None = None) -> Tensor:
        """This synapse on a batch `[B, in...]` in float64 (exact on integers), flattened `[B, out]`."""
        w = torch.as_tensor(self.weight if weight is None else weight, dtype=torch.float64)
        x = x.reshape(x.shape[0], *self.in_shape).double()
        if self.kind == "conv":
            return torch.nn.functional.conv2d(x, w, **self.conv).reshape(x.shape[0], -1)
        if self.kind == "scale":
            return (x * w.reshape(1, -1, *([1] * (x.ndim - 2)))).reshape(x.shape[0], -1)
        return x.reshape(x.shape[0], -1) @ w.T

    def synapses(self) -> int:
        """Nonzero connections (a conv counted unrolled)."""
        if self.kind == "dense":
            return int(np.count_nonzero(self.weight))
        mask = (self.weight != 0).astype(np.float64)
        return int(self.apply(torch.ones(1, *self.in_shape, dtype=torch.float64), mask).sum())


@dataclass
class Node:
    """One population: IF neurons with threshold 1 and subtractive reset, or (readout) the output
    integrator. `bias` is the constant drive per step and `v0` the initial potential, per neuron."""

    name: str
    out_shape: tuple[int, ...]
    edges: list[Edge]
    bias: np.ndarray
    v0: np.ndarray
    readout: bool = False
    depth: int = 1

    @property
    def size(self) -> int:
        return int(np.prod(self.out_shape))


def _per_neuron(value: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel (or single) buffer expanded to every neuron of a `[C, ...]` layer."""
    v = value.detach().double().reshape(-1)
    if v.numel() == 1:
        return np.full(int(np.prod(shape)), float(v))
    return v.reshape(-1, *([1] * (len(shape) - 1))).expand(*shape).reshape(-1).numpy().copy()


def _fetch(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _Cone:
    """The linear sub-graph feeding one node, from its sources (populations or the input)."""

    def __init__(self, gm: fx.GraphModule, target: fx.Node, is_source: dict[fx.Node, int]) -> None:
        self.gm, self.modules = gm, dict(gm.named_modules())
        self.sources: dict[fx.Node, int] = {}
        inside: set[fx.Node] = set()
        stack = [target]
        while stack:
            node = stack.pop()
            if node in inside or node in self.sources:
                continue
            if node in is_source:
                self.sources[node] = is_source[node]
                continue
            self._check(node)
            inside.add(node)
            stack.extend(n for n in node.all_input_nodes)
        self.nodes = [n for n in gm.graph.nodes if n in inside]
        self.target = target

    def _check(self, node: fx.Node) -> None:
        if node.op == "get_attr":
            return
        module = self.modules.get(str(node.target)) if node.op == "call_module" else None
        if isinstance(module, RateMaxPool):
            raise UserError(f"layer {node.target}: rate-gated max pooling has no Loihi neuron form",
                            hint="use average pooling in the ANN (or --set stem_type=small for resnet18), "
                                 "or compile to onnx")
        if node.op == "placeholder" or not is_linear(node, self.modules):
            raise UserError(f"{describe(node, self.modules)} ('{node.name}') is not linear; Loihi synapses only "
                            "sum weighted spikes", hint="compile this model to onnx")

    def run(self, values: dict[fx.Node, Tensor]) -> Tensor:
        """Evaluate the cone with the given source values (float64)."""
        env: dict[fx.Node, Any] = dict(values)
        for node in self.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "call_module":
                env[node] = self.modules[str(node.target)](*args, **kwargs)
            elif node.op == "call_function":
                env[node] = node.target(*args, **kwargs)
            elif node.op == "call_method":
                env[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
            elif node.op == "get_attr":
                env[node] = _fetch(self.gm, str(node.target))
        return env[self.target]

    def consumers(self, source: fx.Node) -> list[fx.Node]:
        return [u for u in source.users if u in self.nodes]

    def descendants(self, source: fx.Node) -> list[fx.Node]:
        seen: list[fx.Node] = []
        stack = self.consumers(source)
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.append(node)
                stack.extend(self.consumers(node))
        return seen

    def _joins(self, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in ADDS and not node.kwargs
        if node.op == "call_module":
            return isinstance(self.modules[str(node.target)], TRANSPARENT)
        return False

    def form(self, source: fx.Node) -> tuple[str, nn.Conv2d | None]:
        """How `source` reaches the target: through adds only ("scale"), through one conv and adds
        ("conv"), or otherwise ("dense")."""
        later = self.descendants(source)
        if all(self._joins(n) for n in later):
            return "scale", None
        direct = self.consumers(source)
        if len(direct) == 1 and direct[0].op == "call_module":
            conv = self.modules[str(direct[0].target)]
            if type(conv) is nn.Conv2d and all(self._joins(n) for n in later if n is not direct[0]):
                return "conv", conv
        return "dense", None


def lower(model: nn.Module, input_shape: tuple[int, ...]) -> list[Node]:
    """The populations of a converted SNN in graph order, the readout last (see module doc)."""
    from snnctl.backends.roundtrip import neuron_layers

    gm = model.body
    if not isinstance(gm, fx.GraphModule):
        raise UserError("this converted bundle has no traced graph to lower", hint="compile it to onnx")
    modules = dict(gm.named_modules())
    names = {id(m): name for name, m in neuron_layers(gm)}
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    pop_nodes = [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[str(n.target)], Converted)]
    for n in pop_nodes:
        if modules[str(n.target)].graded_levels is not None:
            raise UserError(f"layer {n.target}: graded spikes (method graded) are not mapped to Loihi",
                            hint="convert with --method rate or qcfs, or compile to onnx")
    shapes = _shapes(model, gm, input_shape)
    is_source = {placeholder: INPUT, **{n: i for i, n in enumerate(pop_nodes)}}
    output = next(n for n in gm.graph.nodes if n.op == "output")
    targets = [(n.args[0], modules[str(n.target)], names[id(modules[str(n.target)].act)]) for n in pop_nodes]
    targets.append((output.args[0], None, "readout"))
    thetas = [modules[str(n.target)].theta for n in pop_nodes]
    nodes: list[Node] = []
    gm.double()  # probe the linear maps in float64; restored below
    try:
        for into, neuron, name in targets:
            nodes.append(_node(model, gm, into, neuron, name, shapes, is_source, thetas, nodes))
    finally:
        gm.float()
    for node in nodes:
        for e in node.edges:
            if e.source == INPUT and node.depth != 1:
                raise UserError(f"layer {node.name} takes the network input and deeper layers at once",
                                hint="Loihi's input is delivered once, to the first layer")
    return nodes


def _node(model: nn.Module, gm: fx.GraphModule, into: fx.Node, neuron: Converted | None, name: str,
          shapes: dict[fx.Node, tuple[int, ...]], is_source: dict[fx.Node, int], thetas: list[Tensor],
          earlier: list[Node]) -> Node:
    """The population (or readout) fed by `into`, its synapses found and theta folded in."""
    out_shape = shapes[into]
    cone = _Cone(gm, into, is_source)
    zero = {s: torch.zeros(1, *shapes[s], dtype=torch.float64) for s in cone.sources}
    with torch.no_grad():
        bias = cone.run(zero).reshape(-1).numpy().copy()
        edges = [_edge(cone, s, idx, shapes[s], out_shape, zero) for s, idx in cone.sources.items()]
    inv = 1.0 / _per_neuron(neuron.theta, out_shape) if neuron is not None else np.ones(int(np.prod(out_shape)))
    if neuron is None and model.readout_scale is not None:
        inv = inv * _per_neuron(model.readout_scale, out_shape)
    for e in edges:
        _fold(e, thetas[e.source] if e.source != INPUT else None, inv)
    if neuron is None:
        v0 = np.zeros_like(bias)
        bias = bias * inv
    else:
        bias = bias * inv + _per_neuron(neuron.shift, out_shape)
        v0 = float(neuron.neuron.decay) * _per_neuron(neuron.v0, out_shape)
    edges.sort(key=lambda e: e.source)
    depth = 1 + max((earlier[e.source].depth for e in edges if e.source != INPUT), default=0)
    return Node(name, tuple(out_shape), edges, bias, v0, readout=neuron is None, depth=depth)


def _shapes(model: nn.Module, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> dict[fx.Node, tuple[int, ...]]:
    """Per-example output shape of every node, from one step of one example."""
    from torch.fx.passes.shape_prop import ShapeProp

    saved = model.T
    model.forward_sequence(torch.zeros(1, 1, *input_shape))  # sets T = 1 on every time-aware module
    try:
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    finally:
        model.T = saved
    return {n: tuple(n.meta["tensor_meta"].shape[1:]) for n in gm.graph.nodes if "tensor_meta" in n.meta}


def _edge(cone: _Cone, source: fx.Node, index: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
          zero: dict[fx.Node, Tensor]) -> Edge:
    kind, conv = cone.form(source)
    if kind == "scale":
        if tuple(in_shape) != tuple(out_shape):
            kind = "dense"
        else:
            return Edge(index, "scale", np.ones(in_shape[0]), in_shape, out_shape)
    if kind == "conv":
        params = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}
        return Edge(index, "conv", conv.weight.detach().double().numpy().copy(), in_shape, out_shape, params)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if n_in * n_out > MAX_DENSE_ENTRIES:
        raise UserError(f"the synapse from {source.name} into {cone.target.name} composes to a {n_out}x{n_in} "
                        "dense matrix, too large", hint="put a neuron after each conv, or pool less")
    base = cone.run(zero).reshape(1, n_out)
    columns = []
    for start in range(0, n_in, PROBE_CHUNK):  # the identity pushed through in slices, to bound memory
        rows = torch.eye(n_in, dtype=torch.float64)[start:start + PROBE_CHUNK].reshape(-1, *in_shape)
        values = {s: v.expand(rows.shape[0], *v.shape[1:]) for s, v in zero.items()}
        values[source] = rows
        columns.append((cone.run(values).reshape(rows.shape[0], n_out) - base).T)
    return Edge(index, "dense", torch.cat(columns, 1).numpy().copy(), in_shape, out_shape)


def _fold(edge: Edge, theta_in: Tensor | None, inv_out: np.ndarray) -> None:
    """Scale an edge by theta of its source on the inputs and 1/theta of its target on the outputs."""
    t_in = _per_neuron(theta_in, edge.in_shape) if theta_in is not None else None
    if edge.kind == "dense":
        if t_in is not None:
            edge.weight = edge.weight * t_in[None, :]
        edge.weight = edge.weight * inv_out[:, None]
        return
    channels_out = inv_out.reshape(edge.out_shape[0], -1)[:, 0]
    if not np.allclose(inv_out.reshape(edge.out_shape[0], -1), channels_out[:, None]):
        raise UserError("a readout scale that varies inside a channel cannot fold into a conv synapse")
    channels_in = t_in.reshape(edge.in_shape[0], -1)[:, 0] if t_in is not None else None
    if edge.kind == "scale":
        edge.weight = edge.weight * (channels_in if channels_in is not None else 1.0) * channels_out
        return
    w = edge.weight * channels_out[:, None, None, None]
    if channels_in is not None:
        groups = edge.conv["groups"]
        per_group = w.shape[1]
        idx = np.arange(w.shape[0])[:, None] // (w.shape[0] // groups) * per_group + np.arange(per_group)[None, :]
        w = w * channels_in[idx][:, :, None, None]
    edge.weight = w


def float_run(nodes: list[Node], seq: Tensor) -> tuple[list[Tensor], Tensor, list[float], list[float]]:
    """The lowered graph in float64 with the PyTorch rule (h >= 1, subtract): spikes per population
    `[T, B, N]`, per-step outputs `[T, B, C]`, and each population's largest |input| and |h|."""
    T, B = seq.shape[:2]
    h = [torch.as_tensor(n.v0, dtype=torch.float64).expand(B, -1).clone() for n in nodes]
    spikes: list[list[Tensor]] = [[] for _ in nodes[:-1]]
    outputs = []
    max_in = [0.0 for _ in nodes]
    max_h = [0.0 for _ in nodes]
    for t in range(T):
        now: list[Tensor] = []
        for k, node in enumerate(nodes):
            a = sum((e.apply(seq[t] if e.source == INPUT else now[e.source]) for e in node.edges),
                    torch.zeros(B, node.size, dtype=torch.float64)) + torch.as_tensor(node.bias)
            max_in[k] = max(max_in[k], float(a.abs().max()) + (float(np.abs(node.v0).max()) if t == 0 else 0.0))
            h[k] = h[k] + a
            max_h[k] = max(max_h[k], float(h[k].abs().max()))  # the readout's h is its summed output
            if node.readout:
                outputs.append(a)
                continue
            s = (h[k] >= 1.0).double()
            h[k] = h[k] - s
            spikes[k].append(s)
            now.append(s)
    return [torch.stack(s) for s in spikes], torch.stack(outputs), max_in, max_h
