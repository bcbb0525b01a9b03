"""The torch.fx rewrite: trace, fold BatchNorm, replace ReLU-like ops, move max pooling, report.

Every node of the traced graph is put in one class, and the report lists them all:
- converted: a ReLU-like op (module, function or method) became a `Converted` neuron;
- passed through: ops that commute with summing over time (conv, linear, affine BatchNorm, average
  pooling, add, concat, flatten, reshapes), and any op that depends on the input alone (it sees the
  same input at every step, so it computes the same thing: embeddings, masks, a stem before the
  first neuron);
- unsupported: a non-linear op on spikes (softmax, a product of two activations, max pooling that
  cannot move in front of its neuron). These stop the conversion unless partial conversion is asked
  for, and then they run per step on spike values, and the bundle is labelled hybrid.
"""

from __future__ import annotations

import linecache
import operator
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snnctl.conversion.neuron import AnalogOp, Converted, RateMaxPool
from snnctl.errors import UserError
from snnctl.nn.qcfs import QCFS

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
MAXPOOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d}
LINEAR_MODULES = (
    *CONV, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear, *BATCHNORM, nn.AvgPool1d, nn.AvgPool2d,
    nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Unflatten,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.ZeroPad2d,
)
LINEAR_FUNCTIONS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.neg, operator.getitem, getattr,
    torch.add, torch.sub, torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape, torch.transpose,
    torch.permute, torch.squeeze, torch.unsqueeze, torch.mean, torch.sum, torch.chunk, torch.split,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.dropout,
    F.linear, F.conv1d, F.conv2d, F.pad,
}
LINEAR_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "size", "mean", "sum", "add", "add_",
    "sub", "unsqueeze", "squeeze", "expand", "chunk", "split", "unflatten", "dim", "neg",
}
SCALAR_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul, torch.div}
SCALAR_METHODS = {"mul", "div", "mul_", "div_"}


@dataclass
class Report:
    """What the rewrite did with every op of the model, for the user and for the manifest."""

    converted: list[dict[str, str]] = field(default_factory=list)
    passed: list[dict[str, str]] = field(default_factory=list)
    unsupported: list[dict[str, str]] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    replaced: list[dict[str, str]] = field(default_factory=list)  # ops swapped for another (the ANN changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "converted": self.converted, "passed_through": self.passed, "unsupported": self.unsupported,
            "folded_batchnorm": self.folded, "maxpool_moved_before_neuron": self.moved, "replaced": self.replaced,
        }


# ---------------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------------

# Traceable forwards for modules whose own forward checks input shapes in Python (which torch.fx
# cannot trace) or returns container objects; keyed by class name, so transformers stays optional.
TraceAdapter = Callable[..., Any]
ADAPTERS: dict[str, TraceAdapter] = {
    "ResNetEmbeddings": lambda m, x: m.pooler(m.embedder(x)),
    "ResNetEncoder": lambda m, x, *a, **k: _run_stages(m.stages, x),
    "ResNetModel": lambda m, x, *a, **k: m.pooler(m.encoder(m.embedder(x))),
    "ResNetForImageClassification": lambda m, x, *a, **k: m.classifier(m.resnet(x)),
}


def _run_stages(stages: nn.ModuleList, x: Any) -> Any:
    for stage in stages:
        x = stage(x)
    return x


class Tracer(fx.Tracer):
    """torch.fx tracer: our neurons and QCFS are leaves; adapted modules trace through their adapter."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (QCFS, Converted, RateMaxPool)):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        adapter = ADAPTERS.get(type(m).__name__)
        if adapter is not None:
            return adapter(m, *args, **kwargs)
        return super().call_module(m, forward, args, kwargs)


def _library_frame(filename: str) -> bool:
    here = str(Path(__file__).resolve().parent)
    roots = [str(Path(torch.__file__).parent), here, str(Path(sys.modules["typing"].__file__ or "").parent)]
    return any(filename.startswith(root) for root in roots) or "<" in filename


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace with torch.fx; a failure names the call that failed and the user's line that made it."""
    tracer = Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:  # any failure inside a user's forward: report where, not how
        frames = traceback.extract_tb(err.__traceback__)
        user = [f for f in frames if not _library_frame(f.filename)]
        where = None
        if user:
            f = user[-1]
            line = (f.line or linecache.getline(f.filename, f.lineno)).strip()
            where = f"{f.filename}:{f.lineno} in {f.name}: `{line}`"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"torch.fx cannot trace the model ({type(err).__name__}: {first})",
            where=where,
            hint="make that line independent of tensor values (no Python if/for on tensors or shapes)",
        ) from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


# ---------------------------------------------------------------------------------------------
# Classifying nodes
# ---------------------------------------------------------------------------------------------


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _clip_op(low: Any, high: Any) -> AnalogOp | None:
    if not isinstance(low, (int, float)) or low != 0:
        return None
    if high is None:
        return AnalogOp("relu")
    return AnalogOp("clip", high=float(high)) if isinstance(high, (int, float)) else None


def activation_of(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[AnalogOp, nn.Module | None] | None:
    """The ANN op a ReLU-like node computes, or None if the node is not ReLU-like."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, QCFS):
            return AnalogOp("qcfs", levels=m.levels), m
        if isinstance(m, nn.ReLU6):
            return AnalogOp("clip", high=6.0), m
        if isinstance(m, nn.Hardtanh):
            op = _clip_op(m.min_val, m.max_val)
            return (op, m) if op else None
        if type(m) is nn.ReLU:
            return AnalogOp("relu"), m
        return None
    if node.op == "call_function":
        fn = node.target
        if fn in (F.relu, torch.relu, torch.relu_, F.relu_):
            return AnalogOp("relu"), None
        if fn is F.relu6:
            return AnalogOp("clip", high=6.0), None
        if fn is F.hardtanh:
            op = _clip_op(_arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0))
            return (op, None) if op else None
        if fn in (torch.clamp, torch.clip, torch.clamp_min):
            high = None if fn is torch.clamp_min else _arg(node, 2, "max")
            op = _clip_op(_arg(node, 1, "min"), high)
            return (op, None) if op else None
        return None
    if node.op == "call_method":
        name = str(node.target)
        if name in ("relu", "relu_"):
            return AnalogOp("relu"), None
        if name in ("clamp", "clip", "clamp_", "clip_", "clamp_min", "clamp_min_"):
            high = None if name.startswith("clamp_min") else _arg(node, 2, "max")
            op = _clip_op(_arg(node, 1, "min"), high)
            return (op, None) if op else None
    return None


def _is_maxpool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], MAXPOOL_MODULES)
    return node.op == "call_function" and node.target in MAXPOOL_FUNCTIONS


def _only_scalars(node: fx.Node) -> bool:
    """mul/div where at most one operand is a tensor: a linear scaling."""
    return sum(isinstance(a, fx.Node) for a in node.args) <= 1


def is_linear(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], LINEAR_MODULES)
    if node.op == "call_function":
        if node.target in SCALAR_FUNCTIONS:
            return _only_scalars(node)
        return node.target in LINEAR_FUNCTIONS
    if node.op == "call_method":
        if node.target in SCALAR_METHODS:
            return _only_scalars(node)
        return node.target in LINEAR_METHODS
    return False


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[str(node.target)]).__name__} '{node.target}'"
    if node.op == "call_function":
        fn = node.target
        return f"{getattr(fn, '__module__', '') or ''}.{getattr(fn, '__name__', str(fn))}".lstrip(".")
    return f"Tensor.{node.target}"


def source_line(node: fx.Node) -> str:
    """The user's line that created the node (`file:line: code`), from fx's recorded stack trace."""
    lines = [ln.strip() for ln in (node.stack_trace or "").strip().splitlines()]
    found = ""
    for i, line in enumerate(lines):
        if not line.startswith('File "'):
            continue
        path, _, rest = line[len('File "'):].partition('", line ')
        if _library_frame(path):
            continue
        code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith('File "') else ""
        found = f"{path}:{rest.split(',')[0]}: `{code}`" if code else f"{path}:{rest.split(',')[0]}"
    return found


# ---------------------------------------------------------------------------------------------
# Rewrites
# ---------------------------------------------------------------------------------------------


def fold_batchnorm(gm: fx.GraphModule, report: Report) -> None:
    """Fold BatchNorm into the conv/linear feeding it alone (eval statistics); other BN stays affine."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[str(node.target)], BATCHNORM):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        layer, bn = modules[str(src.target)], modules[str(node.target)]
        if isinstance(layer, CONV):
            fused: nn.Module = fuse_conv_bn_eval(layer.eval(), bn.eval())
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer.eval(), bn.eval())
        else:
            continue
        _set_submodule(gm, str(src.target), fused)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        report.folded.append(f"{node.target} -> {src.target}")
    gm.graph.lint()


def _set_submodule(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, name, module)


def move_maxpool(gm: fx.GraphModule, report: Report, differenced: bool = True) -> None:
    """act -> maxpool becomes maxpool -> act: exact for the ANN (max commutes with ReLU), and the
    neuron then sees pooled currents instead of pooling spikes (which is not pooling rates)."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if not _is_maxpool(node, modules):
            continue
        act = node.args[0]
        if not (isinstance(act, fx.Node) and len(act.users) == 1 and activation_of(act, modules)):
            continue
        pre = act.args[0]
        node.args = (pre, *node.args[1:])
        node.replace_all_uses_with(act)
        act.args = (node, *act.args[1:])
        node.append(act)
        report.moved.append(f"{describe(node, modules)} before {describe(act, modules)}")
        _rate_maxpool(gm, node, modules, differenced)
    gm.graph.lint()


def _channels_before(node: fx.Node, modules: dict[str, nn.Module]) -> int | None:
    """Channel count of a node's output, read from the nearest conv or BatchNorm above it."""
    seen = node
    while isinstance(seen, fx.Node) and seen.op != "placeholder":
        module = modules.get(str(seen.target)) if seen.op == "call_module" else None
        if isinstance(module, CONV):
            return int(module.out_channels)
        if isinstance(module, BATCHNORM):
            return int(module.num_features)
        seen = seen.args[0] if seen.args else None
    return None


def average_maxpool(gm: fx.GraphModule, report: Report) -> None:
    """act -> MaxPool2d becomes act -> average pooling (a depthwise conv of 1/k^2 weights) -> ReLU, for
    targets with no max over spikes (Loihi). It changes the ANN (mean of the window instead of its
    max), so it is reported as a replacement; the ReLU is exact (a mean of ReLU outputs is >= 0) and
    gives the pooled currents a neuron, so each synapse stays a single convolution."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        pool = modules.get(str(node.target)) if node.op == "call_module" else None
        act = node.args[0] if node.args else None
        if not (type(pool) is nn.MaxPool2d and isinstance(act, fx.Node) and activation_of(act, modules)):
            continue
        channels = _channels_before(act, modules)
        if channels is None or pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
            continue
        k = nn.modules.utils._pair(pool.kernel_size)
        conv = nn.Conv2d(channels, channels, k, pool.stride, pool.padding, groups=channels, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0 / (k[0] * k[1]))
        conv.weight.requires_grad_(False)
        name = str(node.target)
        _set_submodule(gm, name, conv)
        gm.add_submodule(f"{name.replace('.', '_')}_relu", nn.ReLU())
        with gm.graph.inserting_after(node):
            relu = gm.graph.call_module(f"{name.replace('.', '_')}_relu", args=(node,))
        node.replace_all_uses_with(relu, delete_user_cb=lambda user, relu=relu: user is not relu)
        report.replaced.append({"op": f"MaxPool2d '{name}'", "as": f"{k[0]}x{k[1]} average pooling + ReLU",
                                "why": "the target has no max over spikes; the ANN changes (window mean)",
                                "where": source_line(node)})
    gm.graph.lint()
    gm.recompile()


def _rate_maxpool(gm: fx.GraphModule, node: fx.Node, modules: dict[str, nn.Module], differenced: bool) -> None:
    """Swap a moved max pool for `RateMaxPool`, which pools time-varying currents by their running sums."""
    if node.op == "call_module":
        pool = modules[str(node.target)]
        if isinstance(pool, (nn.MaxPool1d, nn.MaxPool2d)):
            _set_submodule(gm, str(node.target), RateMaxPool(pool, differenced))
        return
    if node.target not in (F.max_pool1d, F.max_pool2d):
        return
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    params = {n: node.args[i + 1] for i, n in enumerate(names) if len(node.args) > i + 1}
    params.update({k: v for k, v in node.kwargs.items() if k in names})
    cls = nn.MaxPool1d if node.target is F.max_pool1d else nn.MaxPool2d
    _replace_with_module(gm, node, f"maxpool_{node.name}", RateMaxPool(cls(**params), differenced))


def rewrite(
    model: nn.Module, graded_levels: int | None = None, allow_partial: bool = False, maxpool: str = "diff",
    signed: bool = False,
) -> tuple[fx.GraphModule, Report]:
    """Trace `model` (an ANN in eval mode) and return the converted graph module and its report.
    `maxpool`: one of methods.MAXPOOL_MODES; `signed`: signed IF neurons (spikes of -1 and +1)."""
    model = model.eval()
    gm = trace(model)
    report = Report()
    if maxpool == "average":
        average_maxpool(gm, report)
    fold_batchnorm(gm, report)
    move_maxpool(gm, report, differenced=maxpool == "diff")
    modules = dict(gm.named_modules())  # after move_maxpool: RateMaxPool modules are in place
    after_neuron: set[fx.Node] = set()
    used: set[str] = set()  # a ReLU module called twice (torchvision's self.relu) needs two neurons
    count = 0
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        downstream = any(a in after_neuron for a in node.all_input_nodes)
        found = activation_of(node, modules)
        where = source_line(node)
        if found is not None:
            op, original = found
            neuron = Converted(op, graded_levels=graded_levels, signed=signed)
            if isinstance(original, QCFS):
                neuron.lam.copy_(original.lam.detach())
            target = str(node.target) if node.op == "call_module" else f"neuron_{count}"
            if target in used:
                target = f"{target.replace('.', '_')}_call{count}"
            used.add(target)
            after_neuron.add(_replace_with_module(gm, node, target, neuron))
            count += 1
            report.converted.append({"op": describe(node, modules) if original is None else
                                     f"{type(original).__name__} '{target}'", "as": target, "where": where})
            continue
        if downstream:
            after_neuron.add(node)
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), RateMaxPool):
            report.passed.append({"op": f"MaxPool '{node.target}'", "why": "moved before its neuron, pools by "
                                  "running input sums", "where": where})
        elif not downstream:
            report.passed.append({"op": describe(node, modules), "why": "input stage", "where": where})
        elif is_linear(node, modules):
            report.passed.append({"op": describe(node, modules), "why": "linear in time", "where": where})
        else:
            why = ("max pooling of spikes is not max pooling of rates; put it right after a ReLU"
                   if _is_maxpool(node, modules) else "non-linear op on spikes")
            report.unsupported.append({"op": describe(node, modules), "why": why, "where": where})
    if report.unsupported and not allow_partial:
        first = report.unsupported[0]
        more = f" (and {len(report.unsupported) - 1} more)" if len(report.unsupported) > 1 else ""
        raise UserError(
            f"cannot convert {first['op']}: {first['why']}{more}",
            where=first["where"] or None,
            hint="replace it in the model, or pass --allow-partial for a hybrid model that runs it per step",
        )
    if not report.converted:
        raise UserError("the model has no ReLU-like activation to turn into a spiking neuron",
                        hint="convert a ReLU network (nn.ReLU, F.relu, clamp(min=0), ReLU6 or QCFS)")
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, report


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, target: str, module: nn.Module) -> fx.Node:
    """Put `module` at `target` and call it on the node's first input in place of the node."""
    if node.op == "call_module" and target == node.target:
        _set_submodule(gm, target, module)
    else:
        gm.add_submodule(target, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(target, args=(node.args[0],))
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def neurons(model: nn.Module) -> list[tuple[str, Converted]]:
    """The converted neurons of a model, in the order they run (graph order for a traced body)."""
    body = getattr(model, "body", model)
    if isinstance(body, fx.GraphModule):
        found = []
        for node in body.graph.nodes:
            if node.op == "call_module" and isinstance(body.get_submodule(str(node.target)), Converted):
                found.append((str(node.target), body.get_submodule(str(node.target))))
        return found
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Converted)]
