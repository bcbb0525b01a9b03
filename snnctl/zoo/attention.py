"""`spikeformer`: a spiking self-attention encoder for text, SNN and ANN twin from one definition.

Spikformer's softmax-free self-attention (Zhou et al. 2023), adapted to tokens: queries, keys and
values are spikes, and attention is `Q (K^T V)` with no softmax, so every product is an
accumulate of spike counts and the cost is linear in the number of tokens. The neurons run along the
tokens (one token per time step, `TokenSpikes`), so T = 1 in the recipe. `K^T V` sums over the real
tokens and is divided by their number (a per-sentence constant a chip folds into the threshold).
Every site normalises over the real tokens first (`TokenBatchNorm`, folded into the layer before it at
inference). A block:

    s = site(LN x);  q, k, v = site(W_q s), site(W_k s), site(W_v s)
    x = x + W_o site(Q (K^T V) / n)
    x = x + W_2 site(W_1 site(LN x))

In the ANN twin each site is the zoo activation (ReLU): linear attention over ReLU features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from snnctl.nn.layers import ActivationFactory
from snnctl.zoo.sequence import FeedForward, TokenClassifier, spiking, token_site

Tally = Callable[..., None]


class SpikingSelfAttention(nn.Module):
    def __init__(self, act: ActivationFactory, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise TypeError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.spiking = spiking(act)
        self.norm = nn.LayerNorm(d_model)
        self.site_in = token_site(act, d_model)
        self.q, self.k, self.v = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.site_q, self.site_k, self.site_v = (token_site(act, d_model) for _ in range(3))
        self.site_a = token_site(act, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def split(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # [B, h, L, dh]

    def forward(self, x: Tensor, keep: Tensor, tally: Tally) -> Tensor:
        s = self.site_in(self.norm(x), keep)
        q, k, v = self.site_q(self.q(s), keep), self.site_k(self.k(s), keep), self.site_v(self.v(s), keep)
        qh, kh, vh = self.split(q), self.split(k), self.split(v)
        kv = kh.transpose(-2, -1) @ vh  # [B, h, dh, dh]: counts of tokens where key i and value j fired
        n = keep.sum(1).clamp(min=1).to(x.dtype).view(-1, 1, 1, 1)
        mixed = (qh @ kv / n).transpose(1, 2).reshape(x.shape)
        self.tally_products(qh, kh, vh, keep, tally)
        return x + self.drop(self.out(self.site_a(mixed, keep)))

    def tally_products(self, qh: Tensor, kh: Tensor, vh: Tensor, keep: Tensor, tally: Tally) -> None:
        """The two attention products. With spikes, `K^T V` is one accumulate per (token, key spike,
        value spike) and `Q (K^T V)` adds a row of dh counts per query spike; the 1/n is one
        multiply per output. The ANN twin does them as dense MACs over the real tokens."""
        dh, tokens = qh.shape[-1], float(keep.sum())
        if self.spiking:
            kv_sops = float((kh.sum(-1) * vh.sum(-1)).sum().detach())
            tally(sops=kv_sops + float(qh.sum().detach()) * dh, macs=tokens * qh.shape[1] * dh,
                  spike_fed_macs=2 * tokens * qh.shape[1] * dh * dh)
        else:
            tally(macs=2 * tokens * qh.shape[1] * dh * dh + tokens * qh.shape[1] * dh)


class SpikformerClassifier(TokenClassifier):
    def __init__(self, act: ActivationFactory, vocab_size: int, length: int, d_model: int, n_layers: int,
                 heads: int, ff: int, num_classes: int, dropout: float) -> None:
        super().__init__(length, d_model, num_classes, dropout)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.position = nn.Embedding(length, d_model)
        self.attention = nn.ModuleList(SpikingSelfAttention(act, d_model, heads, dropout) for _ in range(n_layers))
        self.feed = nn.ModuleList(FeedForward(act, d_model, ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def encode(self, ids: Tensor, keep: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.embed(ids) + self.position(positions))
        for attend, feed in zip(self.attention, self.feed, strict=True):
            x = feed(attend(x, keep, self.count), keep)
        return self.norm(x)


def build(act: ActivationFactory, vocab_size: int = 16384, length: int = 64, d_model: int = 128, n_layers: int = 2,
          heads: int = 4, ff: int = 512, num_classes: int = 2, dropout: float = 0.1) -> nn.Module:
    return SpikformerClassifier(act, vocab_size, length, d_model, n_layers, heads, ff, num_classes, dropout)
