"""Logic-gated layers: ternary weights {-1, 0, +1} with one scale per layer, and no multiplications.

Training (`make_ternary`): each Linear/Conv2d becomes a `TernaryLinear`/`TernaryConv2d` that keeps its
float weight w but computes with s * t(w), where t(w) = sign(w) where |w| > 0.7 * mean|w| (else 0)
and s = mean |w| over the kept weights (ternary weight networks, Li & Liu 2016). The gradient
passes straight through to w (straight-through estimator).

Inference (`to_logic_gated`): each becomes a `LogicGatedLinear`/`LogicGatedConv2d` holding the codes
packed 2 bits each. Its synaptic path adds the inputs of +1 synapses and subtracts those of -1
synapses: a native kernel that only adds, subtracts and selects (`ternary_accumulate` in lif.c), or
`index_add_` in PyTorch ops where it is not built. The scale is folded out of the synapses: the layer emits
A + b/s, and the spiking neuron after it fires at threshold/s, so its spikes are those of s*A + b
at threshold; the last layer's scale multiplies the logits once, after the time average.

The ternary ANN twin (ReLU, no neurons) folds the same way, since ReLU and max pooling commute with a
positive scale: each layer's scale is carried forward, the layer emits A + b/S with S the product of
the scales so far, and S multiplies the logits once. It is multiplication-free too, apart from that
one readout scale, but its inputs to every layer are dense real numbers rather than spikes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from snnctl.artifact import Bundle, build_classifier, finish
from snnctl.contracts import bundle_loader
from snnctl.errors import UserError
from snnctl.nn.kernels import clib
from snnctl.nn.layers import SpikingActivation

if TYPE_CHECKING:
    from snnctl.manifest import Manifest

DELTA = 0.7  # threshold, as a fraction of mean |w|, below which a weight becomes 0
# layers a positive scale passes through unchanged (f(s*x) = s*f(x)), so the synapses' scale can be folded past them
SCALE_FREE = (nn.Flatten, nn.Dropout, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.ReLU)
PASS_THROUGH = (*SCALE_FREE, SpikingActivation)


def ternary_codes(w: Tensor) -> tuple[Tensor, Tensor]:
    """(codes in {-1, 0, 1} as int8, scale s > 0) for one layer's weight."""
    w = w.detach()
    delta = DELTA * w.abs().mean()
    codes = torch.where(w.abs() > delta, torch.sign(w), torch.zeros_like(w))
    kept = codes != 0
    scale = w.abs()[kept].mean() if bool(kept.any()) else torch.ones((), dtype=w.dtype, device=w.device)
    return codes.to(torch.int8), scale


def ste_ternary(w: Tensor) -> Tensor:
    """s * t(w) forward, identity gradient backward."""
    codes, scale = ternary_codes(w)
    return w + (codes.to(w.dtype) * scale - w).detach()


class TernaryLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, ste_ternary(self.weight), self.bias)


class TernaryConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, ste_ternary(self.weight), self.bias)


def pack2(codes: Tensor) -> Tensor:
    """int8 codes {-1, 0, 1} -> uint8, four per byte (0 -> 0b00, +1 -> 0b01, -1 -> 0b10)."""
    flat = codes.reshape(-1).to(torch.int16)
    bits = torch.where(flat < 0, 2, flat).to(torch.uint8)
    pad = (-bits.numel()) % 4
    bits = torch.cat([bits, bits.new_zeros(pad)]).view(-1, 4)
    return bits[:, 0] | (bits[:, 1] << 2) | (bits[:, 2] << 4) | (bits[:, 3] << 6)


def unpack2(packed: Tensor, count: int) -> Tensor:
    bits = torch.stack([(packed >> shift) & 3 for shift in (0, 2, 4, 6)], dim=1).reshape(-1)[:count]
    return torch.where(bits == 2, -1, bits.to(torch.int8)).to(torch.int8)


class _LogicGated(nn.Module):
    """Shared storage: packed codes, scale, bias already divided by the scale."""

    def __init__(self, weight_shape: tuple[int, ...], out_features: int, has_bias: bool) -> None:
        super().__init__()
        self.weight_shape = tuple(weight_shape)
        count = int(torch.tensor(weight_shape).prod())
        self.register_buffer("packed", torch.zeros((count + 3) // 4, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("bias_scaled", torch.zeros(out_features) if has_bias else None)
        self._index: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None

    def store(self, codes: Tensor, scale: Tensor, bias: Tensor | None) -> None:
        self.packed.copy_(pack2(codes))
        self.scale.copy_(scale)
        if bias is not None:
            self.bias_scaled.copy_(bias.detach() / scale)
        self._index = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._index = None

    def codes(self) -> Tensor:
        return unpack2(self.packed, int(torch.tensor(self.weight_shape).prod())).view(self.weight_shape)

    def index(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(input, output) index pairs of the +1 and of the -1 synapses over the flattened fan-in, and
        the codes as W^T [fan_in, out] int8 for the native kernel. Rebuilt after a load."""
        if self._index is None:
            codes = self.codes().reshape(self.weight_shape[0], -1)
            pos, neg = (codes == 1).nonzero(), (codes == -1).nonzero()
            self._index = (pos[:, 1], pos[:, 0], neg[:, 1], neg[:, 0], codes.t().contiguous())
        return self._index

    def accumulate(self, x: Tensor) -> Tensor:
        """[rows, fan_in] -> [rows, out]: sums of +1 inputs minus sums of -1 inputs, plus b/s."""
        lib = clib()
        if lib is not None and x.device.type == "cpu" and x.dtype == torch.float32:
            return self._accumulate_native(lib, x.contiguous())
        pos_in, pos_out, neg_in, neg_out, _ = self.index()
        out = x.new_zeros(x.shape[0], self.weight_shape[0])
        step = max(1, (1 << 22) // max(len(pos_in), len(neg_in), 1))  # bound the gathered copy
        for start in range(0, x.shape[0], step):
            rows, part = x[start : start + step], out[start : start + step]
            part.index_add_(1, pos_out, rows.index_select(1, pos_in))
            part.index_add_(1, neg_out, rows.index_select(1, neg_in), alpha=-1)
        if self.bias_scaled is not None:
            out += self.bias_scaled
        return out

    def _accumulate_native(self, lib: Any, x: Tensor) -> Tensor:
        codes_t = self.index()[4]
        out = torch.empty(x.shape[0], self.weight_shape[0])
        bias = self.bias_scaled
        lib.ternary_accumulate(
            x.data_ptr(), x.shape[0], x.shape[1], codes_t.data_ptr(), out.shape[1],
            bias.data_ptr() if bias is not None else None, out.data_ptr(),
        )
        return out

    @property
    def synapses(self) -> int:
        pos_in, _, neg_in, _, _ = self.index()
        return len(pos_in) + len(neg_in)


class LogicGatedLinear(_LogicGated):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__((out_features, in_features), out_features, bias)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return self.accumulate(x.reshape(-1, self.in_features)).view(*lead, self.out_features)


class LogicGatedConv2d(_LogicGated):
    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.groups != 1:
            raise ValueError("grouped convolutions are not supported")
        super().__init__(tuple(conv.weight.shape), conv.out_channels, conv.bias is not None)
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # [N, fan_in, L]
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        out = self.accumulate(rows)
        kh, kw = self.kernel_size
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return out.view(n, oh * ow, -1).transpose(1, 2).reshape(n, -1, oh, ow)


def check_convertible(body: nn.Module) -> None:
    """Every layer must be synaptic (made ternary) or pass-through; name the first that is neither."""
    if not isinstance(body, nn.Sequential):
        raise UserError(
            f"--logic-gated needs a plain layer sequence; this model is a {type(body).__name__} with branches",
            hint="use a sequential zoo model such as mlp, or cnn with pool='max' and no normalisation",
        )
    for name, module in body.named_children():
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise UserError(f"layer {name} (grouped Conv2d) cannot be made ternary", hint="use groups=1")
        if isinstance(module, nn.Linear | nn.Conv2d | TernaryLinear | TernaryConv2d | _LogicGated):
            continue
        if isinstance(module, PASS_THROUGH):
            continue
        if len(list(module.children())):
            raise UserError(
                f"layer {name} ({type(module).__name__}) is a nested block (residual branches or sub-layers)",
                hint="logic-gated models need a flat layer sequence such as the zoo's mlp",
            )
        raise UserError(
            f"layer {name} ({type(module).__name__}) cannot run without multiplications",
            hint="logic-gated models take Linear/Conv2d, spiking neurons, max pooling, flatten and dropout "
            "only (fold or remove normalisation, use max instead of average pooling)",
        )


def make_ternary(body: nn.Sequential) -> None:
    """Swap each Linear/Conv2d for its straight-through ternary twin, keeping the float weights."""
    check_convertible(body)
    for name, module in list(body.named_children()):
        if type(module) is nn.Linear:
            twin = TernaryLinear(module.in_features, module.out_features, bias=module.bias is not None)
        elif type(module) is nn.Conv2d:
            twin = TernaryConv2d(
                module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                module.dilation, bias=module.bias is not None,
            )
        else:
            continue
        twin.load_state_dict(module.state_dict())
        setattr(body, name, twin)


def logic_gated_shell(module: nn.Module) -> _LogicGated:
    if isinstance(module, nn.Linear):
        return LogicGatedLinear(module.in_features, module.out_features, module.bias is not None)
    assert isinstance(module, nn.Conv2d)
    return LogicGatedConv2d(module)


def prepare_logic_gated(body: nn.Sequential) -> None:
    """Give a freshly built body the inference layers' structure, ready for a saved state dict."""
    check_convertible(body)
    for name, module in list(body.named_children()):
        if isinstance(module, nn.Linear | nn.Conv2d):
            setattr(body, name, logic_gated_shell(module))


@bundle_loader("classify")
def load_logic_gated(path: Path, info: Manifest, map_location: str = "cpu") -> Bundle:
    """Loader of logic-gated SNN bundles (kind snn, `logic_gated: true`): the SNN with the inference
    layers' structure and the readout scale buffer, ready for the saved codes."""
    model = build_classifier(info)
    prepare_logic_gated(model.body)
    model.register_buffer("readout_scale", torch.ones(()))
    return finish(path, info, model, map_location)


def to_logic_gated(body: nn.Sequential) -> Tensor:
    """Replace the synaptic layers by logic-gated ones and fold the scales out: into each spiking
    neuron's threshold, or past ReLU and pooling to the next layer. Returns the scale still carried at
    the end, by which the readout must be multiplied."""
    check_convertible(body)
    carried = torch.ones(())
    for name, module in list(body.named_children()):
        if isinstance(module, nn.Linear | nn.Conv2d):
            codes, scale = ternary_codes(module.weight)
            carried = carried * scale
            gated = logic_gated_shell(module)
            gated.store(codes, carried, module.bias)
            setattr(body, name, gated)
        elif isinstance(module, SpikingActivation):
            neuron = module.neuron
            if neuron.threshold.numel() != 1:
                raise UserError(f"layer {name}: logic-gated folding needs one threshold per layer")
            neuron.threshold.div_(carried)
            carried = torch.ones(())
        elif not isinstance(module, SCALE_FREE):
            raise AssertionError(f"unchecked layer {name}")
    return carried


def logic_gated_layers(model: nn.Module) -> list[tuple[str, _LogicGated]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _LogicGated)]
