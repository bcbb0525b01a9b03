"""The ONNX target: the single-step graph with explicit state, and the same step wrapped in a Scan.

`model.step.onnx`: inputs `x` and `<layer>.v` per neuron layer; outputs `y` (this step's output),
`<layer>.spikes` and `<layer>.v.next`; batch axis dynamic; the initial state is zeros, reset mode and
threshold convention are in metadata_props. `model.seq.onnx` runs that step over axis 0 of `xs`
(`[T, B, ...]`, T dynamic) with an ONNX Scan: outputs the final states, `ys` and per-layer spikes.
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

from snnctl.backends.roundtrip import Run, compare, encoded, neuron_layers, run_torch
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

    def forward(self, x: Tensor) -> Tensor:
        h = self.decay * self.v_in + x
        s = (h >= self.threshold).to(h.dtype)
        self.v_out = h - s * self.threshold if self.reset == "subtract" else h * (1 - s)
        self.s_out = s
        return s


class StepGraph(nn.Module):
    """(x_t, *v) -> (y_t, *spikes, *v_next): the body with each neuron layer made a single step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if any(getattr(m, "needs_T", False) or getattr(m, "emits_scaled_spikes", False) for m in model.modules()):
            raise UserError("the onnx target does not export converted SNNs yet",
                            hint="compile a trained SNN bundle, or a NIR import")
        self.body = copy.deepcopy(model.body).eval()
        self.names: list[str] = []
        self.steps: list[StepNeuron] = []
        for name, act in neuron_layers(self.body):
            path = next(p for p, m in self.body.named_modules() if m is act)
            step = StepNeuron(act, name)
            self.body.set_submodule(path, step)
            self.names.append(name)
            self.steps.append(step)
        scale = getattr(model, "readout_scale", None)
        self.register_buffer("readout_scale", None if scale is None else scale.detach().clone())
        self.eval()  # the exporter restores this flag afterwards: train mode would make BatchNorm use batch stats

    def initial_state(self, x: Tensor) -> list[Tensor]:
        """Zero (or v_init * threshold) membranes of the right shapes, found by one probe step."""
        shapes: list[torch.Size] = []
        hooks = [s.register_forward_pre_hook(lambda m, a: shapes.append(a[0].shape)) for s in self.steps]
        for s in self.steps:
            s.v_in = torch.zeros(())
        with torch.no_grad():
            self.body(x)
        for h in hooks:
            h.remove()
        return [torch.full(shape, s.v_init * float(s.threshold)) for shape, s in zip(shapes, self.steps, strict=False)]

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        for step, v in zip(self.steps, states, strict=False):
            step.v_in = v
        y = self.body(x)
        if self.readout_scale is not None:
            y = y * self.readout_scale
        return (y, *[s.s_out for s in self.steps], *[s.v_out for s in self.steps])


def export_step(step: StepGraph, x: Tensor) -> onnx.ModelProto:
    states = step.initial_state(x)
    names = step.names
    inputs = ["x", *[f"{n}.v" for n in names]]
    outputs = ["y", *[f"{n}.spikes" for n in names], *[f"{n}.v.next" for n in names]]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that inlines our autograd spike Function without a
        # symbolic and needs no onnxscript; torch 2.9+ warns that it is legacy.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(step, (x, *states), buffer, input_names=inputs, output_names=outputs,
                          dynamic_axes={k: {0: "batch"} for k in inputs + outputs}, opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in {"snnctl.state_init": "zeros (v_init * threshold)", "snnctl.spike": "h >= threshold",
                       "snnctl.reset": ",".join(sorted({s.reset for s in step.steps})),
                       "snnctl.layers": ",".join(names)}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model


def scan_over_time(step_model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Wrap the step graph in a Scan over axis 0: states carried, x scanned, y and spikes stacked."""
    g = step_model.graph
    by_name = {v.name: v for v in list(g.input) + list(g.output)}
    state_in = [f"{n}.v" for n in names]
    state_out = [f"{n}.v.next" for n in names]
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
    outer_in = [like(f"{n}.v", f"{n}.v0") for n in names] + [like("x", "xs", time=True)]
    outer_out = [like(f"{n}.v.next", f"{n}.v.final") for n in names]
    outer_out += [like(src, dst, time=True) for src, dst in zip(scanned_out, seq_out, strict=False)]
    scan = helper.make_node("Scan", [f"{n}.v0" for n in names] + ["xs"], [f"{n}.v.final" for n in names] + seq_out,
                            num_scan_inputs=1, body=body)
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
        for n, v in zip(step.names, step.initial_state(chunk[0]), strict=False):
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
    feeds = {"x": x.numpy(), **{f"{n}.v": v.numpy() for n, v in zip(step.names, states, strict=False)}}
    got = session.run(None, feeds)
    return float(max(np.max(np.abs(a - b)) for a, b in zip(expected, got, strict=False)))


def compile_and_check(bundle: Any, out: Path, options: Any, inputs: Any, T: int) -> tuple[dict, dict]:
    model = bundle.model
    step = StepGraph(model)
    seq = encoded(model, inputs.x, T)
    step_model = export_step(step, seq[0, :2])
    save(step_model, out / "model.step.onnx")
    save(scan_over_time(step_model, step.names), out / "model.seq.onnx")
    reference = run_torch(model, seq)
    report = compare(reference, run_scan(out / "model.seq.onnx", step, seq), inputs.labels, model.readout_delay)
    report.update(inputs=inputs.source, compared_with="onnxruntime running model.seq.onnx (Scan over T)",
                  step_max_abs_diff_random_state=check_step_with_state(out / "model.step.onnx", step, seq[0, :8]),
                  opset=OPSET)
    return report, {"step": "model.step.onnx", "sequence": "model.seq.onnx"}
