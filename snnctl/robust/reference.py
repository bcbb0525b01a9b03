"""A reference classifier for bit-flip noise: the Bayes rule under the noise model, with the training
set as the model of clean inputs.

A clean input is one of the class's training examples, each bit is flipped with probability p, and p
itself is unknown, uniform over a grid on [0, 0.5]. The class score is log P(x | c) =
log mean_p mean_{i in c} p^h_i (1 - p)^(D - h_i), with h_i the Hamming distance from x to example i.
No training, no parameters: it shows how much accuracy there is to get at each noise level. It is
not a bound: a trained model can model clean digits better than the training set alone (it does at
low noise), but the robustness benchmark shows where models stand against it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snnctl.data import Dataset

FLIP_GRID = 50  # p values in (0, 0.5) the score averages over


class BitflipReference(nn.Module):
    """Scores [N, classes] for binary inputs shaped like the dataset's, from the training split."""

    def __init__(self, ds: Dataset, grid: int = FLIP_GRID) -> None:
        super().__init__()
        self.num_classes = ds.num_classes
        self.register_buffer("examples", ds.x_train.reshape(len(ds.y_train), -1).float())
        self.register_buffer("labels", ds.y_train.clone())
        p = (torch.arange(grid, dtype=torch.float64) + 0.5) / (2 * grid)
        self.register_buffer("log_p", p.log())
        self.register_buffer("log_q", (1 - p).log())

    def table(self, dims: int) -> Tensor:
        """log mean_p p^h (1-p)^(D-h) for h = 0..D: the likelihood of a Hamming distance."""
        h = torch.arange(dims + 1, dtype=torch.float64)[:, None]
        ll = h * self.log_p + (dims - h) * self.log_q
        return torch.logsumexp(ll, dim=1) - math.log(len(self.log_p))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), -1).float()
        hamming = torch.cdist(x, self.examples, p=1).round().long()  # [N, M]; exact for 0/1 vectors
        per_example = self.table(x.shape[1])[hamming]
        scores = torch.full((len(x), self.num_classes), -math.inf, dtype=torch.float64)
        for c in range(self.num_classes):
            members = self.labels == c
            if bool(members.any()):
                scores[:, c] = torch.logsumexp(per_example[:, members], dim=1) - math.log(int(members.sum()))
        return scores.float()
