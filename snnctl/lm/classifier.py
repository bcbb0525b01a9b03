"""`textssm`: the spiking SSM language model's blocks as a text classifier (SST-2), SNN and ANN twin.

Embedding -> blocks -> LayerNorm -> mean over real tokens -> linear head. A block is the LM's
SSMBlock layout (pre-norm residual: x + GLU(W_mix s), s = site(S4D(LayerNorm x))), with the S4D layer
the LM uses; its site is the recipe's neuron run over the tokens (`TokenSpikes`) in the SNN, the
zoo's activation in the ANN. The S4D is causal, so right padding never reaches a real token.
It lives here, not in the zoo, because the S4D layer lives in snnctl.lm (the zoo sits below it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnctl.lm.ssm import S4D
from snnctl.nn.layers import ActivationFactory
from snnctl.zoo.sequence import FeedForward, TokenClassifier, token_site


def reverse_real(x: Tensor, keep: Tensor) -> Tensor:
    """Each row's real tokens in reverse order, padding left where it is (its own inverse)."""
    positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
    real = keep.sum(1, keepdim=True)
    order = torch.where(positions < real, real - 1 - positions, positions)
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class EncoderBlock(nn.Module):
    def __init__(self, act: ActivationFactory, d_model: int, d_state: int, dropout: float,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.ssm = S4D(d_model, d_state)
        self.ssm_back = S4D(d_model, d_state) if bidirectional else None
        self.site = token_site(act, d_model)
        self.mix = nn.Linear(d_model, 2 * d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        u = self.norm(x)
        y = self.ssm(u)
        if self.ssm_back is not None:
            y = y + reverse_real(self.ssm_back(reverse_real(u, keep)), keep)
        s = self.site(y, keep)
        return x + self.drop(F.glu(self.mix(self.drop(s)), dim=-1))

    def float_macs(self, tokens: float) -> float:
        """Float MACs outside the linear layers, per channel and token: the S4D as a recurrence (how
        it runs token by token at inference: a complex state update and readout per mode, 8 real MACs)
        and its skip term D, the LayerNorm's scale and shift (2), and the GLU gate's multiply (1)."""
        H, modes = self.ssm.log_A_real.shape
        passes = 1 if self.ssm_back is None else 2  # and the two passes' sum
        return tokens * (passes * (8 * H * modes + H) + (passes - 1) * H + 2 * H + H)


class SSMClassifier(TokenClassifier):
    def __init__(self, act: ActivationFactory, vocab_size: int, length: int, d_model: int, n_layers: int,
                 d_state: int, num_classes: int, dropout: float, bidirectional: bool, ff: int) -> None:
        super().__init__(length, d_model, num_classes, dropout)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.blocks = nn.ModuleList(EncoderBlock(act, d_model, d_state, dropout, bidirectional)
                                    for _ in range(n_layers))
        self.feed = nn.ModuleList(FeedForward(act, d_model, ff, dropout) for _ in range(n_layers if ff else 0))
        self.norm = nn.LayerNorm(d_model)

    def encode(self, ids: Tensor, keep: Tensor) -> Tensor:
        x = self.drop(self.embed(ids))
        tokens = float(keep.sum())
        for i, block in enumerate(self.blocks):
            x = block(x, keep)
            self.count(macs=block.float_macs(tokens))
            if self.feed:
                x = self.feed[i](x, keep)
        self.count(macs=2 * tokens * x.shape[-1])  # the final LayerNorm's scale and shift
        return self.norm(x)


def build(act: ActivationFactory, vocab_size: int = 16384, length: int = 64, d_model: int = 128, n_layers: int = 2,
          d_state: int = 64, num_classes: int = 2, dropout: float = 0.1, bidirectional: bool = False,
          ff: int = 0) -> nn.Module:
    """`ff` > 0 puts a position-wise feed-forward block of that width after each SSM block (as
    Spikformer's), spiking in the SNN."""
    return SSMClassifier(act, vocab_size, length, d_model, n_layers, d_state, num_classes, dropout, bidirectional, ff)
