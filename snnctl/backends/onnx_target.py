"""The ONNX target: the single-step graph with explicit state, and the same step wrapped in a Scan.

`model.step.onnx`: inputs `x` and `<layer>.v` per stateful layer; outputs `y` (this step's output),
`<layer>.spikes` per neuron layer and `<layer>.v.next` per stateful layer; batch axis dynamic; the
initial state (zeros, or a converted neuron's initial potential), reset mode and threshold convention
are in metadata_props. Converted SNNs export too: their threshold-scaled IF (or graded) neurons keep
per-channel thresholds, and max pooling of currents (differenced or gated) carries its running sums as state.
`model.seq.onnx` runs that step over axis 0 of `xs` (`[T, B, ...]`, T dynamic) with an ONNX Scan:
outputs the final states, `ys` and per-layer spikes.
Spikes are computed forward-only as (h >= threshold), the same rule as the PyTorch neurons.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper
from torch import Tensor, nn

from snnctl.backends.extract import node_name
from snnctl.backends.roundtrip import Run, compare, encoded, neuron_layers, run_torch
from snnctl.conversion.neuron import Converted, RateMaxPool, per_channel
from snnctl.errors import UserError
from snnctl.nn import LIF, LearnableLIF, SpikingActivation

OPSET = 17


class StepNeuron(nn.Module):
    """One step of an IF/LIF layer, state in through `v_in`, out through `v_out` and `s_out`."""

    def __init__(self, act: SpikingActivation, where: str) -> None:
        super().__init__()
        neuron = act.neuron
        if not isinstance(neuron, (LIF, LearnableLIF)):
            raise UserError(f"layer {where}: {type(neuron).__name__} has no ONNX step export yet",
                            hint="IF, LIF and PLIF neurons export")
        self.register_buffer("decay", torch.as_tensor(neuron.decay).detach().clone().float())
        self.register_buffer("threshold", neuron.threshold.detach().clone().float())
        self.reset = neuron.reset
        self.v_init = neuron.v_init
        self.v_in: Tensor | None = None
        self.v_out: Tensor | None = None
        self.s_out: Tensor | None = None

    def initial(self, shape: torch.Size) -> Tensor:
        return torch.full(shape, self.v_init * float(self.threshold))

    def forward(self, x: Tensor) -> Tensor:
        h = self.decay * self.v_in + x
        s = (h >= self.threshold).to(h.dtype)
        self.v_out = h - s * self.threshold if self.reset == "subtract" else h * (1 - s)
        self.s_out = s
        return s


class StepConverted(nn.Module):
    """One step of a converted neuron: IF (or graded) on x / theta + shift with threshold 1 and reset
    by subtraction, output spikes * theta; its initial potential v0 is the initial state."""

    reset = "subtract"

    def __init__(self, neuron: Converted) -> None:
        super().__init__()
        for name in ("theta", "shift", "v0"):
            self.register_buffer(name, getattr(neuron, name).detach().clone().float())
        self.levels = neuron.graded_levels
        self.v_in: Tensor | None = None
        self.v_out: Tensor | None = None
        self.s_out: Tensor | None = None

    def initial(self, shape: torch.Size) -> Tensor:
        zeros = torch.zeros(shape)
        return zeros + per_channel(self.v0, zeros)

    def forward(self, x: Tensor) -> Tensor:
        theta = per_channel(self.theta, x)
        h = self.v_in + x / theta + per_channel(self.shift, x)
        s = (h >= 1.0).to(h.dtype) if self.levels is None else torch.clamp(torch.floor(h), 0, self.levels)
        self.v_out = h - s
        self.s_out = s
        return s * theta


class StepRateMaxPool(nn.Module):
    """One step of RateMaxPool: the running sums are the state; each window passes the change of the
    largest running sum (differenced) or the current of the input whose running sum is largest (gated)."""

    def __init__(self, pool: RateMaxPool, where: str) -> None:
        super().__init__()
        if not isinstance(pool.pool, nn.MaxPool2d):
            raise UserError(f"layer {where}: only 2-d max pooling exports to ONNX", hint="use MaxPool2d")
        self.pool = pool.pool
        self.differenced = pool.differenced
        self.v_in: Tensor | None = None
        self.v_out: Tensor | None = None

    def initial(self, shape: torch.Size) -> Tensor:
        return torch.zeros(shape)

    def forward(self, x: Tensor) -> Tensor:
        running = self.v_in + x
        self.v_out = running
        p = self.pool
        args = (p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode)
        if self.differenced:
            before = self.v_in.expand_as(running)  # a 0-d zero while initial_state probes shapes
            return torch.nn.functional.max_pool2d(running, *args) - torch.nn.functional.max_pool2d(before, *args)
        _, idx = torch.nn.functional.max_pool2d(running, *args, return_indices=True)
        return x.flatten(2).gather(2, idx.flatten(2)).view_as(idx)


Stateful = StepNeuron | StepConverted | StepRateMaxPool


class StepGraph(nn.Module):
    """(x_t, *states) -> (y_t, *spikes, *states_next): the body with each stateful layer made a single
    step. Neuron layers are named as the round trip records them; pooling states by their path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body = copy.deepcopy(model.body).eval()
        self.names: list[str] = []  # neuron layers (spikes and a state each)
        self.state_names: list[str] = []  # every state, neurons first
        self.steps: list[Stateful] = []
        self.stateful: list[Stateful] = []
        pools: list[tuple[str, StepRateMaxPool]] = []
        act_names = {id(m): name for name, m in neuron_layers(self.body)}
        inside_converted = {id(m.act) for m in self.body.modules() if isinstance(m, Converted)}
        for path, module in list(self.body.named_modules()):
            if isinstance(module, Converted):
                step: Stateful = StepConverted(module)
                name = act_names[id(module.act)]
            elif isinstance(module, SpikingActivation) and id(module) in act_names:
                if id(module) in inside_converted:
                    continue
                step, name = StepNeuron(module, act_names[id(module)]), act_names[id(module)]
            elif isinstance(module, RateMaxPool):
                pools.append((f"{node_name(path)}.running", StepRateMaxPool(module, path)))
                self.body.set_submodule(path, pools[-1][1])
                continue
            elif getattr(module, "needs_T", False):
                raise UserError(f"layer {path}: {type(module).__name__} has no ONNX step export yet")
            else:
                continue
            self.body.set_submodule(path, step)
            self.names.append(name)
            self.steps.append(step)
        self.stateful = [*self.steps, *(p for _, p in pools)]
        self.state_names = [*self.names, *(n for n, _ in pools)]
        scale = getattr(model, "readout_scale", None)
        self.register_buffer("readout_scale", None if scale is None else scale.detach().clone())
        self.eval()  # the exporter restores this flag afterwards: train mode would make BatchNorm use batch stats

    def initial_state(self, x: Tensor) -> list[Tensor]:
        """Initial states of the right shapes, found by one probe step."""
        shapes: dict[int, torch.Size] = {}

        def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:  # a pre-hook's return value replaces args
            shapes.setdefault(id(module), args[0].shape)

        hooks = [s.register_forward_pre_hook(record) for s in self.stateful]
        for s in self.stateful:
            s.v_in = torch.zeros(())
        with torch.no_grad():
            self.body(x)
        for h in hooks:
            h.remove()
        return [s.initial(shapes[id(s)]) for s in self.stateful]

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        for step, v in zip(self.stateful, states, strict=True):
            step.v_in = v
        y = self.body(x)
        if self.readout_scale is not None:
            y = y * self.readout_scale
        return (y, *[s.s_out for s in self.steps], *[s.v_out for s in self.stateful])


def export_step(step: StepGraph, x: Tensor) -> onnx.ModelProto:
    states = step.initial_state(x)
    names = step.names
    inputs = ["x", *[f"{n}.v" for n in step.state_names]]
    outputs = ["y", *[f"{n}.spikes" for n in names], *[f"{n}.v.next" for n in step.state_names]]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that inlines our autograd spike Function without a
        # symbolic and needs no onnxscript; torch 2.9+ warns that it is legacy.
        warnings.simplefilter("ignore", DeprecationWarning)
        # per_channel's branches test a buffer's size and a tensor's rank: constants of the model.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(step, (x, *states), buffer, input_names=inputs, output_names=outputs,
                          dynamic_axes={k: {0: "batch"} for k in inputs + outputs}, opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in {"snnctl.state_init": "zeros (v_init * threshold; a converted neuron's v0)",
                       "snnctl.spike": "h >= threshold",
                       "snnctl.reset": ",".join(sorted({s.reset for s in step.steps})),
                       "snnctl.layers": ",".join(names)}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model


def scan_over_time(step_model: onnx.ModelProto, names: list[str], state_names: list[str] | None = None
                   ) -> onnx.ModelProto:
    """Wrap the step graph in a Scan over axis 0: states carried, x scanned, y and spikes stacked."""
    g = step_model.graph
    by_name = {v.name: v for v in list(g.input) + list(g.output)}
    state_names = names if state_names is None else state_names
    state_in = [f"{n}.v" for n in state_names]
    state_out = [f"{n}.v.next" for n in state_names]
    scanned_out = ["y", *[f"{n}.spikes" for n in names]]
    body = helper.make_graph(
        list(g.node), "step",
        [by_name[n] for n in state_in] + [by_name["x"]],
        [by_name[n] for n in state_out] + [by_name[n] for n in scanned_out],
        initializer=list(g.initializer),
    )
    def like(source: str, name: str, time: bool = False) -> onnx.ValueInfoProto:
        dims = [d.dim_param or d.dim_value for d in by_name[source].type.tensor_type.shape.dim]
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, (["T"] if time else []) + dims)

    seq_out = ["ys", *[f"{n}.spike_train" for n in names]]
    outer_in = [like(f"{n}.v", f"{n}.v0") for n in state_names] + [like("x", "xs", time=True)]
    outer_out = [like(f"{n}.v.next", f"{n}.v.final") for n in state_names]
    outer_out += [like(src, dst, time=True) for src, dst in zip(scanned_out, seq_out, strict=False)]
    scan = helper.make_node("Scan", [f"{n}.v0" for n in state_names] + ["xs"],
                            [f"{n}.v.final" for n in state_names] + seq_out, num_scan_inputs=1, body=body)
    graph = helper.make_graph([scan], "snn_over_time", outer_in, outer_out)
    model = helper.make_model(graph, opset_imports=list(step_model.opset_import))
    model.ir_version = step_model.ir_version
    model.metadata_props.extend(step_model.metadata_props)
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run_scan(path: Path, step: StepGraph, seq: Tensor, batch: int = 256) -> Run:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs, spikes = [], {n: [] for n in step.names}
    for start in range(0, seq.shape[1], batch):
        chunk = seq[:, start:start + batch]
        feeds = {"xs": chunk.numpy()}
        for n, v in zip(step.state_names, step.initial_state(chunk[0]), strict=True):
            feeds[f"{n}.v0"] = v.numpy()
        result = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=False))
        outs.append(result["ys"])
        for n in step.names:
            spikes[n].append(result[f"{n}.spike_train"])
    return Run(np.concatenate(outs, 1), {n: np.concatenate(v, 1) for n, v in spikes.items()})


def check_step_with_state(path: Path, step: StepGraph, x: Tensor) -> float:
    """The step graph from random nonzero states: largest difference from PyTorch's step."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(1)
    states = [torch.rand(v.shape, generator=gen) * 2 - 0.5 for v in step.initial_state(x)]
    with torch.no_grad():
        expected = [t.numpy() for t in step(x, *states)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), **{f"{n}.v": v.numpy() for n, v in zip(step.state_names, states, strict=True)}}
    got = session.run(None, feeds)
    return float(max(np.max(np.abs(a - b)) for a, b in zip(expected, got, strict=False)))


def compile_and_check(bundle: Any, out: Path, options: Any, inputs: Any, T: int) -> tuple[dict, dict]:
    model = bundle.model
    step = StepGraph(model)
    seq = encoded(model, inputs.x, T)
    step_model = export_step(step, seq[0, :2])
    save(step_model, out / "model.step.onnx")
    save(scan_over_time(step_model, step.names, step.state_names), out / "model.seq.onnx")
    reference = run_torch(model, seq)
    report = compare(reference, run_scan(out / "model.seq.onnx", step, seq), inputs.labels, model.readout_delay)
    report.update(inputs=inputs.source, compared_with="onnxruntime running model.seq.onnx (Scan over T)",
                  step_max_abs_diff_random_state=check_step_with_state(out / "model.step.onnx", step, seq[0, :8]),
                  opset=OPSET)
    return report, {"step": "model.step.onnx", "sequence": "model.seq.onnx"}
