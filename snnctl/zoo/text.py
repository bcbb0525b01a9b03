"""A bag-of-embeddings text classifier: word ids -> masked mean embedding -> MLP -> logits.

Everything before the first activation depends on the token ids alone, so in a converted SNN it is
the input stage (computed from the unchanged input at each step) and the MLP is what spikes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from snnctl.nn.layers import ActivationFactory


class TextMLP(nn.Module):
    def __init__(self, act: ActivationFactory, vocab_size: int, embed_dim: int, hidden: Sequence[int],
                 num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        layers: list[nn.Module] = []
        width = embed_dim
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids: Tensor) -> Tensor:
        mask = (ids != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(ids) * mask).sum(1) / torch.clamp(mask.sum(1), min=1.0)
        return self.mlp(pooled)


def build(
    act: ActivationFactory, vocab_size: int = 16384, embed_dim: int = 64, hidden: Sequence[int] = (256,),
    num_classes: int = 2,
) -> nn.Module:
    return TextMLP(act, vocab_size, embed_dim, hidden, num_classes)
