"""What the token-sequence classifiers share: masked mean pooling, a linear head, the spiking (or
ANN) site each block puts its activation through, and a tally of the operations no `nn.Linear` does
(a state-space recurrence, attention products), which `snnctl.metrics.activity` reads.

Input is token ids `[B, L]`, 0 for padding (right padded). Ids beyond the model's `length` are a
misfit the model refuses (the dataset cuts sentences to that length when it encodes them).
"""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor, nn
from torch.nn import functional as F

from snnctl.nn.layers import ActivationFactory, SpikingActivation, TokenSpikes


class TokenActivation(nn.Module):
    """The ANN twin's site: the zoo activation (ReLU, QCFS), zero at padding as the spikes are."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, y: Tensor, keep: Tensor) -> Tensor:
        return self.act(y) * keep.unsqueeze(-1).to(y.dtype)


class TokenBatchNorm(nn.BatchNorm1d):
    """Batch normalisation over the real tokens of the batch (padding neither counts in the statistics
    nor gets an output). At inference it is a per-channel affine map, folded into the layer before it,
    so a spiking site stays spike-driven; it is what brings that layer's output to the neurons'
    threshold (Spikformer puts a BatchNorm after each linear layer for the same reason)."""

    def forward(self, y: Tensor, keep: Tensor) -> Tensor:  # type: ignore[override]
        real = y[keep]
        if self.training and real.shape[0] < 2:  # no batch statistics from one token: use the running ones
            normed = F.batch_norm(real, self.running_mean, self.running_var, self.weight, self.bias,
                                  training=False, eps=self.eps)
        else:
            normed = super().forward(real)
        out = y.new_zeros(y.shape)
        out[keep] = normed.to(y.dtype)
        return out


class TokenSite(nn.Module):
    """Normalise over real tokens, then the activation: the SNN twin's neuron run along the tokens,
    or the ANN twin's activation (one definition for both)."""

    def __init__(self, act: ActivationFactory, width: int) -> None:
        super().__init__()
        self.norm = TokenBatchNorm(width)
        made = act()
        self.act = TokenSpikes(made.neuron) if isinstance(made, SpikingActivation) else TokenActivation(made)

    def forward(self, y: Tensor, keep: Tensor) -> Tensor:
        return self.act(self.norm(y, keep), keep)


def token_site(act: ActivationFactory, width: int) -> nn.Module:
    return TokenSite(act, width)


def spiking(act: ActivationFactory) -> bool:
    return isinstance(act(), SpikingActivation)


class TokenClassifier(nn.Module):
    """Token ids -> `encode` -> mean over real tokens -> dropout -> linear head -> logits.

    `pads_tokens` tells the activity meter that rows of id 0 are padding, not work; `extra_ops`
    holds what `count` tallied during the last forward pass.
    """

    pads_tokens = True

    def __init__(self, length: int, d_model: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.length = length
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)
        self.extra_ops: dict[str, float] = {}

    @abstractmethod
    def encode(self, ids: Tensor, keep: Tensor) -> Tensor:
        """ids `[B, L]`, keep `[B, L]` -> hidden states `[B, L, d_model]`."""

    def count(self, **ops: float) -> None:
        """Add operations of this forward pass the meter cannot see (keys: macs, sops, neuron_steps, spikes,
        spike_fed_macs)."""
        for key, value in ops.items():
            self.extra_ops[key] = self.extra_ops.get(key, 0.0) + float(value)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.ndim != 2 or ids.is_floating_point():
            raise ValueError(f"expected token ids [B, L]; got {ids.dtype} of shape {tuple(ids.shape)}")
        if ids.shape[1] > self.length:
            raise ValueError(f"{ids.shape[1]} tokens is longer than the model's context of {self.length}")
        self.extra_ops = {}
        keep = ids != 0
        hidden = self.encode(ids, keep)
        mask = keep.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.drop(pooled))


class FeedForward(nn.Module):
    """The position-wise block both spiking encoders put after their token mixing: x + W2 site(W1 site(LN x))."""

    def __init__(self, act: ActivationFactory, d_model: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.site_in, self.site_hidden = token_site(act, d_model), token_site(act, ff)
        self.up, self.down = nn.Linear(d_model, ff), nn.Linear(ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        hidden = self.site_hidden(self.up(self.site_in(self.norm(x), keep)), keep)
        return x + self.drop(self.down(hidden))
