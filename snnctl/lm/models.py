"""Language models of the zoo: the spiking SSM, its non-spiking twin, and a GPT-2-style transformer.

All share one interface, which training, generation, `chat` and the benchmark rely on:
- `forward(ids [B, L]) -> logits [B, L, V]` (parallel, for training and scoring);
- `start(batch) -> state`, `step(ids [B], state) -> (logits [B, V], state)` (one token, O(1) state
  for the SSMs, a KV cache for the transformer); `prefill(ids [B, L], state)` feeds a prompt;
- `max_context`: the longest sequence accepted (for a KV cache, the whole conversation; for the
  recurrent SSM, one text at a time); `spiking`; `activity()`: spikes of the last call.

Builders take `(kind, **config)`; `kind='snn'` is the spiking model, `kind='ann'` its twin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnctl.contracts import builds, task_of
from snnctl.errors import UserError
from snnctl.lm.ssm import S4D
from snnctl.nn.kernels.lif import lif as fused_lif
from snnctl.nn.kernels.others import graded_lif
from snnctl.nn.surrogate import surrogate

State = Any


def lm_param_groups(model: nn.Module, weight_decay: float,
                    dynamics: tuple[nn.Parameter, ...] = ()) -> list[dict[str, Any]]:
    """Matrices with weight decay; norms, biases, thresholds and embeddings without; SSM dynamics (A,
    dt) in a group of their own ("ssm_dynamics", no decay) that the trainer gives its own rate."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    own = {id(p) for p in dynamics}
    decayed, plain, slow = [], [], []
    for p in model.parameters():
        if id(p) in own:
            slow.append(p)
        elif p.ndim == 2 and id(p) not in embeddings:
            decayed.append(p)
        else:
            plain.append(p)
    groups = [{"name": "decayed", "params": decayed, "weight_decay": weight_decay},
              {"name": "plain", "params": plain, "weight_decay": 0.0},
              {"name": "ssm_dynamics", "params": slow, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class SpikingSite(nn.Module):
    """The SSM output's 'soma': LIF over the token axis with reset to zero and a learnable per-channel
    threshold applied as input scaling (y / exp(theta), threshold 1), as in SpikingSSM. Spikes are
    binary. `bipolar` gives each channel a second LIF neuron driven by -y, and the layer after it
    adds the first one's spikes and subtracts the second's: signed information still travels as binary
    spikes, and the next layer still only adds and subtracts. The non-spiking twin uses GELU here."""

    def __init__(self, d_model: int, spiking: bool, decay: float, surrogate_width: float,
                 bipolar: bool = False, levels: int = 1) -> None:
        super().__init__()
        self.spiking = spiking
        self.bipolar = bipolar and spiking
        self.levels = levels
        self.decay = decay
        self.sg = surrogate("atan", surrogate_width)
        self.theta = nn.Parameter(torch.zeros(d_model)) if spiking else None
        self.spikes = 0.0  # of the last call, for activity()
        self.neuron_steps = 0

    @property
    def neurons(self) -> int:
        assert self.theta is not None
        return self.theta.numel() * (2 if self.bipolar else 1)

    def _drive(self, y: Tensor) -> Tensor:
        x = y * torch.exp(-self.theta)
        return torch.cat([x, -x], -1) if self.bipolar else x

    def _signed(self, s: Tensor) -> Tensor:
        if not self.bipolar:
            return s
        half = s.shape[-1] // 2
        return s[..., :half] - s[..., half:]

    def forward(self, y: Tensor) -> Tensor:
        """y [B, L, H] -> spikes [B, L, H]; the membrane starts at zero for every sequence."""
        if not self.spiking:
            return F.gelu(y)
        x = self._drive(y).transpose(0, 1).contiguous()  # tokens are the time steps
        decay, one = torch.tensor(self.decay), torch.tensor(1.0)
        if self.levels > 1:
            s, _ = graded_lif(x, torch.zeros_like(x[0]), decay=decay, threshold=one, levels=self.levels, sg=self.sg)
        else:
            s, _ = fused_lif(x, torch.zeros_like(x[0]), decay=decay, threshold=one, sg=self.sg, reset="zero")
        self._count(s)
        return self._signed(s.transpose(0, 1))

    def start(self, batch: int, device: torch.device) -> Tensor:
        return torch.zeros(batch, self.neurons if self.spiking else 0, device=device)

    def step(self, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if not self.spiking:
            return F.gelu(y), v
        h = self.decay * v + self._drive(y)
        if self.levels > 1:  # up to `levels` spikes in one step; the membrane keeps the remainder
            s = torch.floor(h).clamp(0, self.levels)
            v = h - s
        else:
            s = (h >= 1.0).to(h.dtype)
            v = h * (1 - s)
        self._count(s)
        self.row_spikes = s.detach().sum(-1)  # per sequence: a server steps many conversations at once
        return self._signed(s), v

    def _count(self, s: Tensor) -> None:
        self.spikes = float(s.detach().sum())
        self.neuron_steps = s.numel()


class SSMBlock(nn.Module):
    """Pre-norm residual block: x + GLU(W_mix s), s = spikes of the S4D output of LayerNorm(x)."""

    def __init__(self, d_model: int, d_state: int, spiking: bool, decay: float, surrogate_width: float,
                 dropout: float, bipolar: bool = False, levels: int = 1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.ssm = S4D(d_model, d_state)
        self.site = SpikingSite(d_model, spiking, decay, surrogate_width, bipolar, levels)
        self.mix = nn.Linear(d_model, 2 * d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        s = self.site(self.ssm(self.norm(x)))
        return x + self.drop(F.glu(self.mix(self.drop(s)), dim=-1))

    def start(self, batch: int, device: torch.device) -> State:
        return self.ssm.initial_state(batch, device), self.site.start(batch, device)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        xs, v = state
        y, xs = self.ssm.step(self.norm(x), xs)
        s, v = self.site.step(y, v)
        return x + F.glu(self.mix(s), dim=-1), (xs, v)

    def ops(self, spikes: float) -> tuple[float, float]:
        """(float MACs, accumulates) for one token: the SSM update and output (complex multiply-adds),
        D, LayerNorm, threshold scaling and GLU gate are float; the mixing layer takes 2H accumulates
        per spike in the SNN and 2H*H MACs in the twin."""
        H, modes = self.mix.in_features, self.ssm.log_A_real.shape[1]
        macs = 8 * H * modes + 2 * H + 5 * H + H
        if self.site.spiking:
            return macs, spikes * self.mix.out_features
        return macs + self.mix.out_features * H, 0.0


class SSMLanguageModel(nn.Module):
    """Embedding -> SSM blocks -> LayerNorm -> head tied to the embedding. Embedding, norms, residual
    stream and head stay real-valued; spikes are the input of each block's mixing layer."""

    def __init__(self, vocab_size: int, d_model: int = 256, n_layers: int = 6, d_state: int = 64,
                 spiking: bool = True, decay: float = 0.5, surrogate_width: float = 0.5, dropout: float = 0.0,
                 max_context: int = 16384, bipolar: bool = False, levels: int = 1) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.spiking = spiking
        self.max_context = max_context
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(
            SSMBlock(d_model, d_state, spiking, decay, surrogate_width, dropout, bipolar, levels)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: the S4D layers' A and dt apart (see `lm_param_groups`)."""
        dynamics = tuple(p for b in self.blocks for p in (b.ssm.log_dt, b.ssm.log_A_real, b.ssm.A_imag))
        return lm_param_groups(self, weight_decay, dynamics)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T

    def start(self, batch: int) -> State:
        return [b.start(batch, self.embed.weight.device) for b in self.blocks]

    def step(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.embed(ids)
        new_state = []
        for block, layer_state in zip(self.blocks, state, strict=True):
            x, layer_state = block.step(x, layer_state)
            new_state.append(layer_state)
        return self.norm(x) @ self.embed.weight.T, new_state

    def prefill(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        logits = None
        for t in range(ids.shape[1]):
            logits, state = self.step(ids[:, t], state)
        assert logits is not None, "prefill needs at least one token"
        return logits, state

    def activity(self) -> list[dict[str, float]]:
        """Spikes and neuron-steps of each spiking site in the last forward or step call."""
        return [{"spikes": b.site.spikes, "neuron_steps": b.site.neuron_steps} for b in self.blocks]

    def row_activity(self) -> Tensor | None:
        """Spikes of each sequence of the batch at each spiking site in the last `step`: [sites, B]."""
        return torch.stack([b.site.row_spikes for b in self.blocks]) if self.spiking else None

    def token_ops(self, site_spikes: list[float], context: int = 0) -> dict[str, float]:
        """Float MACs and spike-driven accumulates (SOPs) for one token, from each site's spikes; the
        recurrent state makes them independent of `context` (the transformer's grow with it)."""
        macs, sops = float(self.vocab_size * self.d_model), 0.0  # the head
        for block, spikes in zip(self.blocks, site_spikes, strict=True):
            m, a = block.ops(spikes)
            macs, sops = macs + m, sops + a
        return {"macs": macs, "sops": sops}


class GPT2LanguageModel(nn.Module):
    """transformers' GPT2LMHeadModel (built from a config, or loaded from a hub id / local folder)
    behind the zoo's LM interface; generation keeps its KV cache."""

    spiking = False
    state_grows = True  # the KV cache holds every token so far

    def __init__(self, vocab_size: int, n_layer: int = 4, n_embd: int = 128, n_head: int = 4,
                 n_positions: int = 1024, dropout: float = 0.0, pretrained: str | None = None) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        if pretrained:
            self.net = load_pretrained_gpt2(pretrained)
        else:
            config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                                bos_token_id=0, eos_token_id=0)
            self.net = GPT2LMHeadModel(config)
        self.vocab_size = self.net.config.vocab_size
        self.max_context = self.net.config.n_positions

    def arch(self) -> dict[str, Any]:
        c = self.net.config
        return {"vocab_size": c.vocab_size, "n_layer": c.n_layer, "n_embd": c.n_embd, "n_head": c.n_head,
                "n_positions": c.n_positions}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: decayed projection matrices, the rest (embeddings included) without decay."""
        return lm_param_groups(self, weight_decay)

    def forward(self, ids: Tensor) -> Tensor:
        return self.net(input_ids=ids, use_cache=False).logits

    def start(self, batch: int) -> State:
        from transformers import DynamicCache

        return DynamicCache()

    def step(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        out = self.net(input_ids=ids.unsqueeze(1), past_key_values=state, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def prefill(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        out = self.net(input_ids=ids, past_key_values=state, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def activity(self) -> list[dict[str, float]]:
        return []

    def token_ops(self, site_spikes: list[float], context: int = 0) -> dict[str, float]:
        c = self.net.config
        per_layer = 12 * c.n_embd * c.n_embd + 2 * context * c.n_embd  # projections + scores/values
        return {"macs": float(c.n_layer * per_layer + c.vocab_size * c.n_embd), "sops": 0.0}


def load_pretrained_gpt2(name_or_path: str) -> nn.Module:
    """A GPT-2 checkpoint from a local folder or a hub id (hub ids need the network)."""
    from transformers import GPT2LMHeadModel

    try:
        return GPT2LMHeadModel.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0]
        raise UserError(f"cannot load GPT-2 weights '{name_or_path}': {first}",
                        hint="give a folder written by save_pretrained, or a hub id with network access") from None


@builds("lm")
def build_ssm(kind: str, **config: Any) -> SSMLanguageModel:
    """`spiking-ssm`: kind 'snn' spikes at each SSM output; kind 'ann' is the same SSM with GELU."""
    if kind not in ("snn", "ann"):
        raise UserError(f"model kind '{kind}' is not one spiking-ssm has", hint="use snn or ann")
    return SSMLanguageModel(spiking=kind == "snn", **config)


@builds("lm")
def build_gpt2(kind: str, **config: Any) -> GPT2LanguageModel:
    """`gpt2`: the transformer baseline; there is no spiking twin."""
    if kind != "ann":
        raise UserError("gpt2 is an ANN baseline only", where="[model] kind", hint="set model.kind = 'ann'")
    return GPT2LanguageModel(**config)


def build_lm(name: str, kind: str, config: dict[str, Any]) -> nn.Module:
    """Build a zoo language model by name; a classifier's name or a bad key is a user error."""
    from snnctl import registry

    builder = registry.load("models", name)
    if task_of(builder) != "lm":
        raise UserError(f"model '{name}' is a classifier, not a language model",
                        hint="language-model recipes use spiking-ssm or gpt2")
    try:
        return builder(kind, **config)
    except TypeError as err:
        raise UserError(f"model '{name}': {err}", hint="check [model.config] in the recipe") from None
